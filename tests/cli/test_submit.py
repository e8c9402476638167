"""`xlab submit` against a real `ray start --head` cluster on 127.0.0.1 with token auth on."""

import os
import subprocess
import tempfile

import mlflow
import pytest
from procs import free_port, stop_tree, wait_http

from conftest import BIN, run_cli


@pytest.fixture
def ray_head():
    """A Ray head started with `ray start --head --block` in its own temp dir; stopped by its own pids."""
    port, dash = free_port(), free_port()
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="xr", dir="/tmp")
    # The head's job drivers run `python`: make it this venv's, as an activated venv would.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=2", f"--temp-dir={temp_dir}",
         "--object-store-memory=200000000", "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{dash}"
    try:
        wait_http(f"{url}/api/version", timeout=90, proc=proc)
        yield url
    finally:
        stop_tree(proc)


@pytest.mark.slow
def test_submit_runs_the_study_on_a_token_auth_head(ray_head, tmp_path):
    env = {"RAY_AUTH_MODE": "token", "MLFLOW_TRACKING_URI": ""}
    out = run_cli("submit", "adopt_toy", "--address", ray_head, "--wait", "--preset", "smoke",
                  "--toy.steps", "20000", "--toy.log_every", "5000", "--sweep.optimizers", "adam", "adopt",
                  "--sweep.beta2", "0.1", env=env, cwd=tmp_path, timeout=600)
    submission_id = out.stdout.strip().splitlines()[0]
    if out.returncode != 0:
        logs = run_cli("logs", submission_id, "--address", ray_head, env=env).stdout
        pytest.fail(f"submission failed:\n{out.stderr[-3000:]}\njob logs:\n{logs[-5000:]}")
    assert submission_id.startswith("raysubmit_")
    status = run_cli("status", submission_id, "--address", ray_head, env=env)
    assert status.stdout.strip() == "SUCCEEDED"
    logs = run_cli("logs", submission_id, "--address", ray_head, env=env)
    assert "MLflow run adopt_toy__smoke__s0__" in logs.stdout
    # A loopback head shares this disk: the run lands in the submitting directory's store.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("adopt_toy").experiment_id])
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    # Without the token the job server refuses the client.
    denied = run_cli("status", submission_id, "--address", ray_head, env={"RAY_AUTH_MODE": "disabled"})
    assert denied.returncode != 0
