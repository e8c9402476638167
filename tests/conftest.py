"""Shared fixtures: an isolated MLflow store per test session, a real local Ray cluster.

Environment first: Ray 2.60 token auth is explicit, hub lookups are off (they hang ~50 s offline),
plots render headless.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.pop("RAY_ADDRESS", None)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """A fresh sqlite MLflow store for the whole session, exported so jobs and Ray workers use it."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(scope="session")
def ray_local(mlflow_uri, tmp_path_factory):
    """A real local Ray cluster (2 CPUs, no dashboard), shared by the tests that need one."""
    os.environ["XLAB_STORAGE_PATH"] = str(tmp_path_factory.mktemp("ray_results"))
    from xlab.runtime import init_ray, shutdown_ray

    init_ray(num_cpus=2, object_store_memory=256 * 1024**2, include_dashboard=False)
    yield
    shutdown_ray()


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None):
    """Run the installed ``xlab`` console script; returns the CompletedProcess."""
    import subprocess

    return subprocess.run(
        [str(BIN / "xlab"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
    )
