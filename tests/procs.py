"""Start and stop real servers for tests (Ray heads, MLflow servers) by the processes they started.

``ray stop`` ends every Ray process on the machine, so tests never call it: they record the process
tree they started and terminate exactly that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

import psutil

from xlab.runtime import free_port  # noqa: F401 - the tests' import path for it


def agent_port_args() -> list[str]:
    """``ray start`` flags giving a node's agents free ports: their fixed defaults (52365, ...) collide with any
    other Ray cluster on the machine, and a job agent that cannot bind leaves the job server answering
    "No available agent to submit job"."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers (any HTTP status); fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answered (e.g. 401 without a token): it is up
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop_tree(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate ``proc`` and every process it started (recorded before signalling), then kill leftovers."""
    try:
        parent = psutil.Process(proc.pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    # Ray daemons re-parent to init when `ray start` exits: collect the whole tree first.
    for p in tree:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
