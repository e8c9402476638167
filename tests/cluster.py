"""A real two-node Ray cluster on this machine, as faithful to two hosts as one machine allows.

* The head: ``ray start --head`` on 127.0.0.1 with its own temp dir ``T``, job server on 127.0.0.1.
* The second node: ``ray start --address`` on 127.0.0.2 (its own address on the loopback network),
  with the **same temp-dir path** ``T`` but its own content: as root it runs in a private mount
  namespace (``unshare -m``) where another directory is bind-mounted over ``T``, as a second host
  has its own ``/tmp/ray``. Without root (no ``unshare``) it gets a separate ``--temp-dir`` instead
  (``two_node_isolation`` says which).

As root, both nodes also run **with the dependencies only**: in their mount namespaces the project's own
install in this venv (xlab, jobs, robots, or an editable install's import hook) is hidden behind empty
files, as on a cluster where only the dependencies were installed. Their processes import xlab only
from what reaches them: a submission's package (``xlab submit``) or a driver's ``PYTHONPATH``.

The trap this reproduces: with one temp dir shared by both nodes, the second node's runtime-env agent
unpacks a job's working directory into the same per-session path, under the running driver
(``FileNotFoundError`` from ``Path.cwd()``); and a storage path inside one node's private files (the
job's working directory, ``./ray_results``) is seen by that node only.

Both are started by pid and stopped by their process trees (never ``ray stop``, which would end every
Ray process on the machine); :meth:`TwoNodeCluster.kill_worker_node` SIGKILLs the second node's raylet
and workers mid-run, as a lost host.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from procs import agent_port_args, free_port, stop_tree, wait_http

BIN = Path(sys.executable).parent
WORKER_IP = "127.0.0.2"


def _private_mounts_work() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return (
        subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True).returncode
        == 0
    )


def project_install() -> list[Path]:
    """Where this venv installed the project itself (package dirs, or an editable install's ``.pth`` and finder)."""
    import sysconfig
    from importlib import metadata

    # Only the venv's own site-packages: with the repository root on sys.path (pytest's rootdir, a driver's cwd)
    # `metadata.distribution` can find the build's `xlab.egg-info` in the checkout first, and hiding what that
    # lists would hide the source tree itself, the very code a driver's PYTHONPATH ships.
    site = Path(sysconfig.get_paths()["purelib"])
    dist = next(iter(metadata.distributions(name="xlab", path=[str(site)])), None)
    if dist is None:
        return []
    tops = {f.parts[0] for f in dist.files or []}
    skip = ("..", "__pycache__")  # the console script outside site-packages; compiled caches
    paths = [
        Path(dist.locate_file(t)) for t in sorted(tops) if t not in skip and not t.endswith(".dist-info")
    ]
    return [p for p in paths if p.exists() and p.resolve().is_relative_to(site.resolve())]


class TwoNodeCluster:
    """A head and a worker node (see module docstring); ``address`` is the GCS, ``dashboard`` the job server."""

    def __init__(self, cpus_per_node: int = 2, object_store_bytes: int = 200_000_000) -> None:
        self.cpus, self.store = cpus_per_node, object_store_bytes
        # Short paths: Ray's unix socket paths must stay under ~107 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="x2h", dir="/tmp")
        self.private_dir = tempfile.mkdtemp(prefix="x2w", dir="/tmp")
        self.isolation = "mount-namespace" if _private_mounts_work() else "separate-temp-dir"
        self.empty_dir = tempfile.mkdtemp(prefix="x2e", dir="/tmp")  # mounted over installed package dirs
        self.hidden = project_install() if self.isolation == "mount-namespace" else []
        self.port, self.dash_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dash_port}"
        self.head: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="x2log"))  # node logs, for error messages
        # The nodes' job drivers run `python`: make it this venv's, as an activated venv would. No
        # PYTHONPATH: the cluster runs its installed xlab unless a submission ships its own.
        # Nor the test session's XLAB_STORAGE_PATH (a directory both "nodes" see): a node has only what its
        # own environment sets.
        drop = ("PYTHONPATH", "MLFLOW_TRACKING_URI", "XLAB_STORAGE_PATH")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env.update({"RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"})

    # ------------------------------------------------------------------------------------- start/stop

    def start(self) -> TwoNodeCluster:
        for attempt in range(3):  # Ray gives a starting node 30 s to register: too short on a loaded machine
            self.port, self.dash_port = free_port(), free_port()
            self.address = f"127.0.0.1:{self.port}"
            self.dashboard = f"http://127.0.0.1:{self.dash_port}"
            self.head = self._popen("head", self._namespaced([], [
                str(BIN / "ray"), "start", "--head", "--block", f"--port={self.port}",
                "--node-ip-address=127.0.0.1", f"--dashboard-port={self.dash_port}", "--dashboard-host=127.0.0.1",
                "--include-dashboard=true", f"--num-cpus={self.cpus}", f"--temp-dir={self.temp_dir}",
                f"--object-store-memory={self.store}", "--disable-usage-stats", '--resources={"head_node": 1}',
                *agent_port_args(),
            ]))  # fmt: skip
            try:
                wait_http(f"{self.dashboard}/api/version", timeout=120, proc=self.head)
                break
            except RuntimeError:
                stop_tree(self.head)
                if attempt == 2:
                    raise RuntimeError(f"the head node did not start: {self.log('head')[-2000:]}") from None
        self.start_worker_node()
        return self

    def start_worker_node(self) -> None:
        ray_start = [
            str(BIN / "ray"),
            "start",
            "--block",
            f"--address={self.address}",
            f"--node-ip-address={WORKER_IP}",
            f"--num-cpus={self.cpus}",
            f"--object-store-memory={self.store}",
            "--disable-usage-stats",
            '--resources={"worker_node": 1}',
            *agent_port_args(),
        ]
        if self.isolation == "mount-namespace":
            mounts = [(self.private_dir, self.temp_dir)]  # its own /tmp/ray at the head's path
            cmd = self._namespaced(mounts, [*ray_start, f"--temp-dir={self.temp_dir}"])
        else:
            cmd = [*ray_start, f"--temp-dir={self.private_dir}"]
        for attempt in range(3):
            self.worker = self._popen("worker", cmd)
            try:
                self.wait_nodes(2)
                return
            except RuntimeError:  # Ray gives a raylet 30 s to register: too short on a loaded machine
                stop_tree(self.worker)
                if attempt == 2:
                    raise

    def _namespaced(self, mounts: list[tuple[str, str]], cmd: list[str]) -> list[str]:
        """``cmd`` in a private mount namespace with ``(source, target)`` bind mounts and the project's install
        hidden (:func:`project_install`); ``cmd`` itself without a namespace (no root)."""
        if self.isolation != "mount-namespace":
            return cmd
        mounts = [*mounts, *((os.devnull if p.is_file() else self.empty_dir, str(p)) for p in self.hidden)]
        binds = "".join(f"mount --bind {shlex.quote(a)} {shlex.quote(b)} && " for a, b in mounts)
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{binds}exec {shlex.join(cmd)}"]

    def _popen(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the process's life)
        return subprocess.Popen(
            cmd, env=self.env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )

    def alive_nodes(self) -> list[dict]:
        """The nodes the head reports alive (through `ray list nodes`, so this test process needs no Ray driver)."""
        out = subprocess.run(
            [
                str(BIN / "ray"),
                "list",
                "nodes",
                "--address",
                self.address,
                "--format",
                "json",
                "--filter",
                "state=ALIVE",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            return []
        try:
            return json.loads(out.stdout)
        except json.JSONDecodeError:
            return []

    def wait_nodes(self, n: int, timeout: float = 120.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = self.alive_nodes()
            if len(nodes) == n:
                return nodes
            for proc, name in ((self.head, "head"), (self.worker, "worker")):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"the {name} node exited ({proc.returncode}): {self.log(name)[-2000:]}"
                    )
            time.sleep(2)
        raise TimeoutError(f"{n} alive nodes not reached in {timeout:.0f} s: {self.alive_nodes()}")

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_worker_node(self) -> int:
        """SIGKILL the second node's raylet, object store and workers at once, as a host lost; returns how many."""
        assert self.worker is not None
        try:
            root = psutil.Process(self.worker.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(tree, timeout=30)
        self.worker.wait(timeout=30)
        return len(tree)

    def stop(self) -> None:
        try:
            if self.worker is not None:
                stop_tree(self.worker)
        finally:
            if self.head is not None:
                stop_tree(self.head)
            for d in (self.temp_dir, self.private_dir, self.empty_dir, self.log_dir):
                shutil.rmtree(d, ignore_errors=True)

    def driver_env(self, **extra: str) -> dict[str, str]:
        """Environment of a driver process on this machine that joins the cluster (RAY_ADDRESS set)."""
        return {**os.environ, "RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token", **extra}
