"""The start of every job: check the tracking store, start or join Ray, open the MLflow run.

Checks come first so that an unreachable MLflow server or Ray cluster is a one-line error before
anything starts (and leaves no half-made run behind).

    with job_session("grokking", cfg) as run:
        ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from xlab.config import JobConfig
from xlab.runtime import init_ray
from xlab.track.run import job_run
from xlab.track.store import setup_tracking


@contextlib.contextmanager
def job_session(job: str, cfg: JobConfig) -> Iterator[Any]:
    """Check tracking (``cfg.tracking``), start or join Ray (``cfg.ray``), yield the job's MLflow run."""
    uri = setup_tracking(cfg.tracking.uri)
    init_ray(cfg.ray.address, cfg.ray.num_cpus)
    with job_run(job, cfg, tracking_uri=uri) as run:
        try:
            yield run
        finally:
            _log_console(run.info.run_id)


def _log_console(run_id: str) -> None:
    """Attach the job's full console log (:mod:`xlab.console`), as written so far, to its MLflow run."""
    import sys

    from xlab.console import active_log

    path = active_log()
    if path is None or not path.exists():
        return
    import mlflow

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        mlflow.MlflowClient().log_artifact(run_id, str(path), "logs")
    except Exception as e:  # the run's result must not be lost over its log
        print(f"[xlab] could not attach the console log to the run: {e}")
