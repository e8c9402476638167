"""A job pointed at a real `mlflow server` on 127.0.0.1 records its runs there."""

import os
import subprocess

import mlflow
import pytest
from procs import free_port, stop_tree, wait_http

from conftest import BIN, run_cli


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    # One worker and no job execution: starts in ~15 s instead of 30-50 s.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/server.db", "--artifacts-destination", str(root / "artifacts")],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=120, proc=proc)
        yield url
    finally:
        stop_tree(proc)


@pytest.mark.timeout(400)
def test_job_records_into_the_server(mlflow_server, tmp_path):
    out = run_cli("run", "adopt_toy", "--toy.steps", "4000", "--toy.log_every", "1000", "--sweep.optimizers",
                  "adopt", "--sweep.beta2", "0.5", "--tracking.uri", mlflow_server, "--ray.num_cpus", "1",
                  cwd=tmp_path, timeout=360)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("adopt_toy")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"theta_vs_step.png", "config.json"}


@pytest.mark.timeout(200)
def test_xlab_ui_serves_the_local_store(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "xlab"), "ui", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=150, proc=proc)
        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        assert client.search_experiments()  # the Default experiment, served from the sqlite store
    finally:
        stop_tree(proc)
