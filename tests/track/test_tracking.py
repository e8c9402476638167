"""MLflow tracking: job runs, nested runs, failures, comparisons (real sqlite store)."""

import dataclasses
import json

import mlflow
import pytest

from xlab.config import JobConfig
from xlab.errors import XlabError
from xlab.track import child_run, job_run, resolve_tracking_uri
from xlab.track.compare import runs_table
from xlab.track.store import artifact_root, check_server


@dataclasses.dataclass
class Cfg(JobConfig):
    lr: float = 0.1


def _runs(experiment: str):
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_job_run_logs_config_tags_and_name(mlflow_uri):
    with job_run("t_track", Cfg(preset="smoke", seed=7)) as run:
        mlflow.log_metric("loss", 1.5, step=3)
    got = mlflow.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name.startswith("t_track__smoke__s7__")
    assert got.data.params["lr"] == "0.1" and got.data.params["seed"] == "7"
    assert got.data.tags["xlab.job"] == "t_track" and "version.torch" in got.data.tags and "host" in got.data.tags
    assert "mlflow.source.git.commit" in got.data.tags or "git.dirty" not in got.data.tags
    cfg = mlflow.artifacts.load_dict(f"{got.info.artifact_uri}/config.json")
    assert cfg["lr"] == 0.1 and cfg["tracking"]["uri"] is None
    assert got.info.artifact_uri.startswith("file://") and "t_track" in got.info.artifact_uri


def test_failing_run_ends_failed_with_error(mlflow_uri):
    with pytest.raises(ZeroDivisionError), job_run("t_track_fail", Cfg()):
        1 / 0  # noqa: B018
    (run,) = _runs("t_track_fail")
    assert run.info.status == "FAILED"
    assert "ZeroDivisionError" in run.data.tags["xlab.error"]
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/error.txt")
    assert "Traceback" in text and "1 / 0" in text


def test_child_runs_nest_under_parent(mlflow_uri):
    with job_run("t_track_nest", Cfg()) as parent:
        parent_id = parent.info.run_id
    for i in range(2):
        with child_run(parent_id, f"trial{i}", params={"x": i, "ys": [1, 2]}):
            mlflow.log_metric("m", i)
    kids = mlflow.search_runs(
        experiment_names=["t_track_nest"], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        output_format="list",
    )
    assert sorted(k.info.run_name for k in kids) == ["trial0", "trial1"]
    assert json.loads(kids[0].data.params["ys"]) == [1, 2]


def test_runs_table_shows_differing_params(mlflow_uri):
    for lr in (0.1, 0.2):
        with job_run("t_track_cmp", Cfg(lr=lr)):
            mlflow.log_metric("acc", lr * 2)
    df = runs_table("t_track_cmp")
    assert list(df.columns[:3]) == ["run", "status", "start"]
    assert "lr" in df.columns and "seed" not in df.columns  # only params that differ
    assert sorted(df["acc"]) == [0.2, 0.4]
    with pytest.raises(XlabError, match="no MLflow experiment"):
        runs_table("does_not_exist")


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path}/rel.db"
    assert artifact_root(f"sqlite:///{tmp_path}/mlflow.db", "job") == (tmp_path / "mlruns" / "job").as_uri()
    with pytest.raises(XlabError, match="not a URI"):
        resolve_tracking_uri("just-a-name")


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(XlabError, match=r"cannot reach the MLflow server at http://127\.0\.0\.1:9"):
        check_server("http://127.0.0.1:9", timeout=2)
