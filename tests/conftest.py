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


def pytest_configure(config) -> None:
    # One intra-op thread in the test process: the tiny models here gain nothing from more, and on a
    # 2-core machine shared with Ray workers extra threads only contend (a tiny GPT-2 forward took
    # 0.57 s with 2 threads vs 0.02 s with 1 under load). Ray workers and CLI subprocesses are unaffected.
    import torch

    torch.set_num_threads(1)
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


def write_fake_rlds(root: str, names: tuple[str, ...] = ("fake_arm", "fake_mobile"), episodes: int = 8,
                    image: int = 32) -> list[str]:
    """Small synthetic RLDS datasets (one per name) written by a Ray task with the TensorFlow runtime
    env (the pytest process never imports TensorFlow); returns their builder dirs. Actions depend on
    the image colour, so a policy has something to learn."""
    import ray

    from xlab.rlds import TF_WORKER_ENV

    # Defined here so cloudpickle ships it by value (test modules are not importable in workers).
    def write_all(root: str) -> list[str]:
        import numpy as np

        from xlab.rlds import Episode, write_rlds

        rng = np.random.default_rng(0)
        out = []
        for d, name in enumerate(names):
            eps = []
            for i in range(episodes):
                t = 10
                colour = rng.integers(0, 2, t)  # per step: red or blue scene
                images = np.zeros((t, image, image, 3), np.uint8)
                images[colour == 0, :, :, 0] = 200
                images[colour == 1, :, :, 2] = 200
                sign = np.where(colour == 0, 1.0, -1.0)[:, None]
                eps.append(Episode(
                    images=images,
                    states=rng.normal(size=(t, 3)).astype(np.float32),
                    actions={
                        "world_vector": np.repeat(sign * (0.5 + 0.5 * d), 3, axis=1),
                        "rotation_delta": np.repeat(-sign * 0.3, 3, axis=1),
                        "gripper_closedness_action": sign,
                    },
                    instruction=f"{name} task", episode_id=str(i), embodiment=name,
                ))
            out.append(str(write_rlds(root, eps, name=name, max_episodes_per_shard=4,
                                      embedding_backend="hash-fallback")))
        return out

    task = ray.remote(write_all).options(runtime_env={"env_vars": TF_WORKER_ENV}, num_cpus=1)
    return ray.get(task.remote(root))
