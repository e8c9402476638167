"""Submit jobs to a Ray cluster with the Job Submission SDK, and follow them.

What ships: the project directory as ``working_dir`` (``jobs/``, ``robots/``, ``platform/xlab`` with
all its subpackages and data files), minus the ``EXCLUDES`` below and ``.gitignore``'d files; the job
gets ``PYTHONPATH=platform`` (relative to its copy of the project), so **the code you submitted is
what runs**, even on a cluster where xlab is installed (the cluster's install only provides the
dependencies; see ``cluster.yaml``). Excludes are anchored (``/data``): Ray matches them, gitignore
style, against every path of the package, and a bare ``data`` would also drop any package directory
named ``data``.

The job server answers 5xx for a while after ``ray start`` ("No available agent to submit job"):
every call is retried with backoff for up to ``RETRY_S`` seconds, then a one-line error.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from xlab.cli.registry import parse_job_config, project_root
from xlab.errors import XlabError
from xlab.runtime import check_reachable, ensure_auth_mode, is_loopback

T = TypeVar("T")

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
RETRY_S = 60.0
# Never uploaded: local stores, caches and run outputs at the project root (Ray already skips .git, .venv
# and .gitignored files). Anchored with "/": unanchored names match at any depth.
EXCLUDES = [
    "/data",
    "/mlruns",
    "/mlflow.db",
    "/mlflow.db-journal",
    "/ray_results",
    "/outputs",
    "/logs",
    "__pycache__/",
    "*.pyc",
    ".pytest_cache/",
    ".ruff_cache/",
    # Secrets (also in .gitignore): a Ray token, API keys or TLS keys in the project never reach the cluster.
    "*.token",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
]
_TRANSIENT = ("status code 500", "status code 502", "status code 503", "status code 504", "No available agent",
              "try again", "Failed to connect", "Connection refused", "Connection reset", "Max retries exceeded")


def default_address() -> str:
    """``$RAY_ADDRESS`` when it is a job-server URL, else the local dashboard http://127.0.0.1:8265."""
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else "http://127.0.0.1:8265"


def client(address: str):
    """A JobSubmissionClient for ``address``, after checking the job server answers."""
    ensure_auth_mode()
    if not address.startswith(("http://", "https://")):
        raise XlabError(f"job server address {address!r} must be a URL like http://HOST:8265")
    check_reachable(
        address,
        "the Ray job server",
        "check the address (the dashboard port, 8265 by default) and that the cluster is up (`ray status`)",
    )
    from ray.job_submission import JobSubmissionClient

    try:
        return retrying(lambda: JobSubmissionClient(address), address)
    except XlabError:
        raise
    except Exception as e:  # the SDK wraps auth and version errors in several exception types
        raise XlabError(f"cannot connect to the Ray job server at {address}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def is_transient(e: BaseException) -> bool:
    """A job-server error that goes away by itself (server starting, agent not yet up, connection hiccup)."""
    return isinstance(e, ConnectionError | TimeoutError) or any(t in str(e) for t in _TRANSIENT)


def retrying(call: Callable[[], T], address: str, budget_s: float = RETRY_S, first_delay_s: float = 0.5) -> T:
    """``call()``, retried with exponential backoff while it fails with a transient error, for up to ``budget_s``;
    then a one-line :class:`XlabError`. Other errors are raised as they are."""
    start, delay, told = time.monotonic(), first_delay_s, False
    while True:
        try:
            return call()
        except Exception as e:
            if not is_transient(e):
                raise
            waited = time.monotonic() - start
            if waited + delay > budget_s:
                raise XlabError(f"the Ray job server at {address} kept failing for {waited:.0f} s: {_first_line(e)}; "
                                "check the cluster with `ray status` and its dashboard log") from None
            if not told:
                print(f"[xlab] the job server is not ready ({_first_line(e)[:120]}); retrying for up to "
                      f"{budget_s:.0f} s", file=sys.stderr, flush=True)
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def _job_call(call: Callable[[], T], submission_id: str, address: str) -> T:
    """A job-server call about one job: retried while transient; an unknown id is a one-line error."""
    try:
        return retrying(call, address)
    except RuntimeError as e:
        if "404" in str(e) or "does not exist" in str(e) or "not found" in str(e).lower():
            raise XlabError(f"no job {submission_id!r} on {address} (list them with "
                            f"`RAY_AUTH_MODE=token ray job list --address {address}`)") from None
        raise XlabError(f"the Ray job server at {address} refused the request for {submission_id}: "
                        f"{_first_line(e)}") from None


def job_env(address: str) -> dict[str, str]:
    """Environment passed to the submitted job: auth mode, tracking URI, storage path."""
    from xlab.track.store import default_tracking_uri

    env = {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"], "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    elif is_loopback(urlparse(address).hostname or ""):
        # Maybe the same machine: then record into this directory's store so `xlab runs` / `xlab ui` here
        # show the run. Under another name, so a tunnelled cluster's own MLFLOW_TRACKING_URI still wins.
        env["XLAB_FALLBACK_TRACKING_URI"] = default_tracking_uri()
    else:
        print(
            "[xlab] warning: MLFLOW_TRACKING_URI is not set, so the job records into a sqlite file in its "
            "working directory on the cluster; set it to your MLflow server to keep the runs",
            file=sys.stderr,
        )
    if os.environ.get("XLAB_STORAGE_PATH"):
        env["XLAB_STORAGE_PATH"] = os.environ["XLAB_STORAGE_PATH"]
    return env


def runtime_env(root: Path, address: str) -> dict[str, Any]:
    """The runtime env of a submission: the project as working_dir (minus ``EXCLUDES``), ``platform/`` first on the path."""
    return {
        "working_dir": str(root),
        "excludes": list(EXCLUDES),
        # Relative to the job's copy of the project (Ray starts every process there): the submitted
        # platform/xlab is imported before any xlab installed on the cluster.
        "env_vars": {**job_env(address), "PYTHONPATH": "platform", "XLAB_SUBMITTED": "1"},
    }


def submit(job: str, argv: list[str], address: str, wait: bool = False, wait_timeout: float = 24 * 3600.0) -> str:
    """Submit ``python -m jobs.JOB ARGV`` to the cluster at ``address``; returns the submission id.

    ``wait``: block until the job ends, at most ``wait_timeout`` seconds (then a one-line XlabError; the job
    keeps running), and print its final status."""
    if wait and not wait_timeout > 0:
        raise XlabError(f"--wait-timeout must be > 0 seconds, got {wait_timeout}")
    parse_job_config(job, argv)  # reject a bad job, preset or override here, not minutes later on the cluster
    c = client(address)
    entrypoint = " ".join(["python", "-m", f"jobs.{job}", *map(shlex.quote, argv)])
    env = runtime_env(project_root(), address)
    try:
        submission_id = retrying(
            lambda: c.submit_job(entrypoint=entrypoint, runtime_env=env, metadata={"xlab.job": job}), address)
    except (RuntimeError, ValueError) as e:  # e.g. the package is over Ray's upload limit
        raise XlabError(f"the Ray job server at {address} refused the job: {_first_line(e)}") from None
    print(submission_id, flush=True)
    print(
        f"[xlab] submitted {job} to {address}; follow it with `xlab status {submission_id}`, "
        f"`xlab logs {submission_id} --follow`, stop it with `xlab stop {submission_id}`",
        file=sys.stderr,
    )
    if wait:
        final = wait_for(submission_id, address, timeout=wait_timeout)
        if final != "SUCCEEDED":
            raise XlabError(f"job {submission_id} ended {final}; see `xlab logs {submission_id}`")
        print(final, flush=True)
    return submission_id


def status(submission_id: str, address: str) -> str:
    c = client(address)
    return str(_job_call(lambda: c.get_job_status(submission_id), submission_id, address).value)


def logs(submission_id: str, address: str, follow: bool = False) -> None:
    c = client(address)
    if not follow:
        print(_job_call(lambda: c.get_job_logs(submission_id), submission_id, address), end="")
        return
    _job_call(lambda: c.get_job_status(submission_id), submission_id, address)  # an unknown id: one line
    import asyncio

    async def tail() -> None:
        async for chunk in c.tail_job_logs(submission_id):
            print(chunk, end="", flush=True)

    asyncio.run(tail())


def stop(submission_id: str, address: str) -> bool:
    c = client(address)
    _job_call(lambda: c.get_job_status(submission_id), submission_id, address)  # an unknown id: one line
    return bool(_job_call(lambda: c.stop_job(submission_id), submission_id, address))


def wait_for(submission_id: str, address: str, timeout: float | None = None, poll: float = 2.0) -> str:
    """Poll until the job ends; returns its final status."""
    c = client(address)
    start = time.monotonic()
    while True:
        state = str(_job_call(lambda: c.get_job_status(submission_id), submission_id, address).value)
        if state in TERMINAL:
            return state
        if timeout is not None and time.monotonic() - start > timeout:
            raise XlabError(f"job {submission_id} still {state} after {timeout:.0f} s of waiting (--wait-timeout); it "
                            f"keeps running: `xlab logs {submission_id} --follow`, `xlab stop {submission_id}`")
        time.sleep(poll)
