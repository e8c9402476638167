"""MLflow runs for jobs and sweep trials.

``job_run`` opens the run of one job invocation: named ``{job}__{preset}__s{seed}__{time}``, with the
resolved config as params and ``config.json``, and git commit, package versions and host as tags.
``child_run`` opens a trial's run nested under a parent (from any process, e.g. a Ray Tune trial).
A run whose body raises ends FAILED (KILLED on Ctrl-C or SIGTERM, with its still-open nested trial
runs) with the error attached as tag and ``error.txt``; a tracking store that fails while this is
recorded prints a warning and never hides the error. ``Tracker`` logs only from rank 0 of a distributed run.

    with job_run("adopt_toy", cfg) as run:
        Tracker().log_metrics({"loss": 0.1}, step=10)
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform as _stdlib_platform
import socket
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from xlab import config as _config
from xlab.track.store import (
    get_or_create_experiment,
    redact,
    redact_uri,
    resolve_tracking_uri,
    setup_tracking,
)

_PACKAGES = ("xlab", "torch", "ray", "mlflow", "numpy", "transformers", "tensorflow", "tensorflow-datasets")


def run_name(job: str, preset: str, seed: int) -> str:
    """``{job}__{preset}__s{seed}__{YYYYmmdd-HHMMSS}``."""
    return f"{job}__{preset}__s{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment_tags() -> dict[str, str]:
    """Git commit, package versions and host, as MLflow tags."""
    tags = {"host": socket.gethostname(), "python": _stdlib_platform.python_version()}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no")))
    for pkg in _PACKAGES:
        try:
            tags[f"version.{pkg}"] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return tags


def _warn(what: str, e: BaseException) -> None:
    import sys

    print(f"[xlab] warning: {what}: {type(e).__name__}: {str(e).strip()[:300]}", file=sys.stderr, flush=True)


def _record_failure(run_id: str, status: str) -> None:
    """Attach the exception being handled to the run and end the run with ``status``.

    Never raises: a tracking store that fails now (server gone, disk full) must not replace the error
    that is being recorded, which the caller re-raises.
    """
    import sys

    import mlflow

    e = sys.exc_info()[1]
    try:
        client = mlflow.MlflowClient()
        client.set_tag(run_id, "xlab.error", f"{type(e).__name__}: {e}"[:4900])
        client.log_text(run_id, traceback.format_exc(), "error.txt")
    except Exception as record_error:
        _warn(f"could not attach the error to MLflow run {run_id}", record_error)
    _end(run_id, status)


def _end(run_id: str, status: str) -> None:
    """End the active run with ``status``; never raises (see :func:`_record_failure`)."""
    import mlflow

    try:
        mlflow.end_run(status=status)
    except Exception as end_error:
        _warn(f"could not end MLflow run {run_id} as {status}", end_error)


def end_open_children(run_id: str, status: str = "KILLED") -> int:
    """End the still-RUNNING runs nested under ``run_id`` (trials whose processes were stopped); never raises."""
    import mlflow

    try:
        client = mlflow.MlflowClient()
        exp = client.get_run(run_id).info.experiment_id
        open_children = client.search_runs(
            [exp], filter_string=f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'")
        for child in open_children:
            client.set_tag(child.info.run_id, "xlab.ended_by", "parent run ended")
            client.set_terminated(child.info.run_id, status=status)
        return len(open_children)
    except Exception as e:
        _warn(f"could not end the nested runs of {run_id}", e)
        return 0


@contextlib.contextmanager
def _ending(run_id: str, parent: bool = False) -> Iterator[None]:
    """End the active run with the right status; attach the error of a failing body.

    A failure ends it FAILED; Ctrl-C or SIGTERM (:class:`~xlab.errors.Terminated`) KILLED, and for a
    job's run (``parent``) its still-open nested trial runs KILLED too.
    """
    import mlflow

    try:
        yield
    except SystemExit as e:
        if e.code not in (0, None):
            _record_failure(run_id, "FAILED")
            raise
        # Ray Tune stops a function trial (e.g. an ASHA decision) by raising SystemExit(0) in it.
        try:
            mlflow.MlflowClient().set_tag(run_id, "xlab.early_stopped", "true")
        except Exception as tag_error:
            _warn(f"could not tag MLflow run {run_id}", tag_error)
        _end(run_id, "KILLED")
        raise
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM in a job session (xlab.errors.Terminated)
        if parent:
            end_open_children(run_id, "KILLED")
        _record_failure(run_id, "KILLED")
        raise
    except BaseException:
        if parent:
            end_open_children(run_id, "KILLED")  # the trials did not fail: their job stopped them
        _record_failure(run_id, "FAILED")
        raise
    else:
        mlflow.end_run()


@contextlib.contextmanager
def job_run(
    job: str, cfg: Any, tags: Mapping[str, str] | None = None, tracking_uri: str | None = None
) -> Iterator[Any]:
    """Open the MLflow run of one job invocation (see module docstring); yields the ActiveRun.

    ``tracking_uri``: a URI :func:`setup_tracking` already resolved and checked (skips a second check).
    """
    import mlflow

    uri = tracking_uri or setup_tracking(getattr(getattr(cfg, "tracking", None), "uri", None))
    experiment = getattr(getattr(cfg, "tracking", None), "experiment", None) or job
    exp_id = get_or_create_experiment(experiment, uri)
    preset = getattr(cfg, "preset", "custom")
    seed = getattr(cfg, "seed", 0)
    all_tags = {"xlab.job": job, "xlab.preset": preset, **environment_tags(), **(tags or {})}
    run = mlflow.start_run(experiment_id=exp_id, run_name=run_name(job, preset, seed), tags=all_tags)
    with _ending(run.info.run_id, parent=True):
        if cfg is not None:
            params = redact(_config.flatten(cfg))  # no credentials of a tracking URI in params or config.json
            mlflow.log_params({k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()})
            mlflow.log_dict(redact(_config.to_dict(cfg)), "config.json")
        print(f"[xlab] MLflow run {run.info.run_name} ({run.info.run_id}) in experiment {experiment!r} "
              f"at {redact_uri(uri)}")
        yield run


@contextlib.contextmanager
def child_run(
    parent_run_id: str,
    name: str,
    params: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """Open a run nested under ``parent_run_id`` (works from another process, e.g. a Tune trial)."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    parent = mlflow.MlflowClient().get_run(parent_run_id)
    # A Tune trial process may still have a run active from a previous trial it hosted.
    while mlflow.active_run() is not None:
        mlflow.end_run()
    run = mlflow.start_run(
        experiment_id=parent.info.experiment_id,
        run_name=name,
        parent_run_id=parent_run_id,
        tags={"xlab.job": parent.data.tags.get("xlab.job", ""), **(tags or {})},
    )
    with _ending(run.info.run_id):
        if params:
            mlflow.log_params({k: json.dumps(v) if isinstance(v, list | tuple) else v for k, v in redact(params).items()})
        yield run


def child_runs(parent_run_id: str, finished_only: bool = False) -> list:
    """The runs nested under ``parent_run_id`` (e.g. a sweep's trials), optionally only FINISHED ones."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_run(parent_run_id).info.experiment_id
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'"
    if finished_only:
        query += " and attributes.status = 'FINISHED'"
    return client.search_runs([exp], filter_string=query, max_results=10_000)


def is_rank_zero() -> bool:
    """True unless this process is a non-zero rank of a Ray Train or torch.distributed run."""
    for var in ("RANK", "WORLD_RANK"):
        if os.environ.get(var, "0") != "0":
            return False
    try:
        import ray.train

        return ray.train.get_context().get_world_rank() == 0
    except Exception:
        # Not inside a Ray Train worker.
        return True


class Tracker:
    """Log to an MLflow run from rank 0 only; every method is a no-op on other ranks.

    ``run_id`` defaults to the active run; pass it explicitly from processes that did not start the
    run (Ray Train workers, Tune trials logging into a run the driver opened).
    """

    def __init__(self, run_id: str | None = None, enabled: bool | None = None) -> None:
        self.enabled = is_rank_zero() if enabled is None else enabled
        self._run_id = run_id

    @property
    def run_id(self) -> str:
        import mlflow

        if self._run_id is not None:
            return self._run_id
        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("Tracker has no run: pass run_id or start an MLflow run first")
        return run.info.run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.enabled or not metrics:
            return
        import mlflow
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        mlflow.MlflowClient().log_batch(self.run_id, metrics=batch)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.enabled:
            import mlflow
            from mlflow.entities import Param

            mlflow.MlflowClient().log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.enabled and tags:
            import mlflow
            from mlflow.entities import RunTag

            mlflow.MlflowClient().log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_table(self, table: Any, path: str) -> None:
        """Log a pandas DataFrame as an MLflow table artifact (shown as a table in the UI; JSON on disk)."""
        if self.enabled:
            import mlflow

            mlflow.MlflowClient().log_table(self.run_id, data=table, artifact_file=path)

    def log_figure(self, fig: Any, path: str) -> None:
        """Log a matplotlib figure as a PNG artifact and close it."""
        import matplotlib.pyplot as plt

        if self.enabled:
            import mlflow

            mlflow.MlflowClient().log_figure(self.run_id, fig, path)
        plt.close(fig)

    def log_dict(self, data: Any, path: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.MlflowClient().log_dict(self.run_id, data, path)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled:
            import mlflow

            client = mlflow.MlflowClient()
            if Path(local_path).is_dir():
                client.log_artifacts(self.run_id, str(local_path), artifact_path)
            else:
                client.log_artifact(self.run_id, str(local_path), artifact_path)
