"""Submit jobs to a Ray cluster with the Job Submission SDK, and follow them.

The project directory is shipped as ``working_dir`` and the ``xlab`` package as a ``py_modules``
entry, so a cluster without the project installed can run ``python -m jobs.NAME`` (it still needs the
dependencies: see ``cluster.yaml``'s setup commands).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from xlab.cli.registry import parse_job_config, project_root
from xlab.errors import XlabError
from xlab.runtime import check_reachable, ensure_auth_mode

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# Never uploaded: local stores, caches and run outputs (Ray already skips .git, .venv and .gitignored files).
EXCLUDES = [
    "mlruns",
    "mlflow.db",
    "mlflow.db-journal",
    "ray_results",
    "outputs",
    "data",
    "**/__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    # Secrets (also in .gitignore): a Ray token, API keys or TLS keys in the project never reach the cluster.
    "*.token",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
]


def default_address() -> str:
    """``$RAY_ADDRESS`` when it is a job-server URL, else the local dashboard http://127.0.0.1:8265."""
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else "http://127.0.0.1:8265"


def _is_loopback(address: str) -> bool:
    host = urlparse(address).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


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
        return JobSubmissionClient(address)
    except Exception as e:  # the SDK wraps auth and version errors in several exception types
        raise XlabError(f"cannot connect to the Ray job server at {address}: {e}") from None


def job_env(address: str) -> dict[str, str]:
    """Environment passed to the submitted job: auth mode, tracking URI, storage path."""
    from xlab.track.store import default_tracking_uri

    env = {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"], "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    elif _is_loopback(address):
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


def submit(job: str, argv: list[str], address: str, wait: bool = False, wait_timeout: float = 24 * 3600.0) -> str:
    """Submit ``python -m jobs.JOB ARGV`` to the cluster at ``address``; returns the submission id.

    ``wait``: block until the job ends, at most ``wait_timeout`` seconds (then a one-line XlabError; the job
    keeps running)."""
    if wait and not wait_timeout > 0:
        raise XlabError(f"--wait-timeout must be > 0 seconds, got {wait_timeout}")
    parse_job_config(job, argv)  # reject a bad job, preset or override here, not minutes later on the cluster
    c = client(address)
    root = project_root()
    entrypoint = " ".join(["python", "-m", f"jobs.{job}", *map(shlex.quote, argv)])
    runtime_env = {
        "working_dir": str(root),
        "py_modules": [str(Path(root, "platform", "xlab"))],
        "excludes": EXCLUDES,
        "env_vars": job_env(address),
    }
    submission_id = c.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata={"xlab.job": job})
    print(submission_id)
    print(
        f"[xlab] submitted {job} to {address}; follow it with `xlab status {submission_id}`, "
        f"`xlab logs {submission_id} --follow`, stop it with `xlab stop {submission_id}`",
        file=sys.stderr,
    )
    if wait:
        status = wait_for(submission_id, address, timeout=wait_timeout)
        if status != "SUCCEEDED":
            raise XlabError(f"job {submission_id} ended {status}; see `xlab logs {submission_id}`")
    return submission_id


def status(submission_id: str, address: str) -> str:
    c = client(address)
    try:
        return str(c.get_job_status(submission_id).value)
    except RuntimeError as e:
        raise XlabError(f"no job {submission_id!r} on {address}: {e}") from None


def logs(submission_id: str, address: str, follow: bool = False) -> None:
    c = client(address)
    if not follow:
        print(c.get_job_logs(submission_id), end="")
        return
    import asyncio

    async def tail() -> None:
        async for chunk in c.tail_job_logs(submission_id):
            print(chunk, end="", flush=True)

    asyncio.run(tail())


def stop(submission_id: str, address: str) -> bool:
    return bool(client(address).stop_job(submission_id))


def wait_for(submission_id: str, address: str, timeout: float | None = None, poll: float = 2.0) -> str:
    """Poll until the job ends; returns its final status."""
    c = client(address)
    start = time.monotonic()
    while True:
        state = str(c.get_job_status(submission_id).value)
        if state in TERMINAL:
            return state
        if timeout is not None and time.monotonic() - start > timeout:
            raise XlabError(f"job {submission_id} still {state} after {timeout:.0f} s of waiting (--wait-timeout); it "
                            f"keeps running: `xlab logs {submission_id} --follow`, `xlab stop {submission_id}`")
        time.sleep(poll)
