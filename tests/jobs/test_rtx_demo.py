"""`make demo` at the smallest size: the same three `xlab run` commands as the Makefile, through the CLI.

collect_demos (two embodiments) -> train_policy (2 Ray Train workers, registered in MLflow) ->
eval_policy (served by Ray Serve to simulator actors, loaded by alias), each a separate process with
its own local Ray cluster, sharing one MLflow store.
"""

from __future__ import annotations

import mlflow
import pytest

from conftest import run_cli


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_rtx_pipeline_end_to_end(mlflow_uri, tmp_path):
    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "XLAB_STORAGE_PATH": str(tmp_path / "ray_results")}
    rlds = tmp_path / "rlds"
    tasks = ["xlab/sawyer-drawer-close-v0", "xlab/fetch-reach-v0"]

    r = run_cli("run", "collect_demos", "--preset", "smoke", "--collect.output_dir", str(rlds),
                "--collect.tasks", *tasks, "--collect.episodes_per_task", "2", env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    dirs = [str(rlds / "xlab_sawyer" / "0.1.0"), str(rlds / "xlab_fetch" / "0.1.0")]

    r = run_cli("run", "train_policy", "--preset", "smoke", "--data.dataset_dirs", *dirs, "--train.steps", "40",
                "--train.checkpoint_every", "20", "--train.eval_every", "20", "--train.eval_tasks", *tasks,
                "--train.eval_episodes", "1", "--registry.model_name", "demo-test-policy", env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "models:/demo-test-policy@latest-train" in r.stdout
    # Evaluated in simulation during training (steps 20 and 40); the best one has its own alias.
    assert "success in simulation" in r.stdout and "models:/demo-test-policy@best-sim" in r.stdout
    # The console shows xlab's lines; the full output is in the run's log file.
    assert "oneDNN" not in r.stdout and "full log in logs/" in r.stdout
    train_run = mlflow.search_runs(experiment_names=["train_policy"], filter_string="status = 'FINISHED'",
                                   order_by=["start_time DESC"]).iloc[0]
    client = mlflow.MlflowClient(mlflow_uri)
    assert [m.step for m in client.get_metric_history(train_run.run_id, "sim/success")] == [20, 40]
    assert any(a.path.startswith("logs/") for a in client.list_artifacts(train_run.run_id, "logs"))

    r = run_cli("run", "eval_policy", "--preset", "smoke", "--policy", "models:/demo-test-policy@latest-train",
                "--eval.tasks", *tasks, "--eval.episodes", "2", "--eval.max_steps", "30", "--eval.num_simulators", "2",
                env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "success_rate" in r.stdout and "expert" in r.stdout

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["eval_policy"], filter_string="tags.`xlab.policy` = "
                              "'models:/demo-test-policy@latest-train'")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    assert runs.iloc[0]["metrics.episodes"] == 12 and runs.iloc[0]["metrics.episodes_failed"] == 0
    assert runs.iloc[0]["metrics.expert/success/fetch-reach-v0"] == 1.0
