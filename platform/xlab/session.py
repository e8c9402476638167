"""The start of every job: check the tracking store, start or join Ray, open the MLflow run; and its clean end.

Checks come first so that an unreachable MLflow server or Ray cluster is a one-line error before
anything starts (and leaves no half-made run behind). A job ended by SIGTERM (``xlab stop``,
``ray job stop``, a preempted node, the OOM killer's polite first signal) or Ctrl-C stops its Ray work
(the driver disconnects, so its trials and workers end), ends its MLflow run and the still-open
nested trial runs KILLED, and exits ``128 + signal`` (:func:`xlab.cli.main`).

    with job_session("grokking", cfg) as run:
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from xlab.config import JobConfig
from xlab.errors import Terminated
from xlab.runtime import init_ray, shutdown_ray
from xlab.track.run import job_run
from xlab.track.store import setup_tracking


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn the first SIGTERM into :class:`~xlab.errors.Terminated` raised in the main thread (a no-op elsewhere).

    Ray Tune and Ray Train install SIGINT handlers of their own that end a run *gracefully*, as if it
    had finished; xlab turns them off (``TUNE_DISABLE_SIGINT_HANDLER``, :class:`XlabTorchTrainer`) so
    Ctrl-C is a KeyboardInterrupt like SIGTERM is a Terminated.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    fired = []

    def handler(signum: int, frame: Any) -> None:
        if fired:  # already stopping: let the clean-up finish (SIGKILL still ends it)
            return
        fired.append(signum)
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def job_session(job: str, cfg: JobConfig) -> Iterator[Any]:
    """Check tracking (``cfg.tracking``), start or join Ray (``cfg.ray``), yield the job's MLflow run."""
    uri = setup_tracking(cfg.tracking.uri)
    init_ray(cfg.ray.address, cfg.ray.num_cpus)
    # After ray.init, which sets a SIGTERM handler of its own (sys.exit, a FAILED run).
    with terminate_on_sigterm():
        with job_run(job, cfg, tracking_uri=uri) as run:
            try:
                yield run
            except KeyboardInterrupt as e:
                # Stop the Ray work first (trials, workers, Serve replicas of this driver), then the runs end KILLED.
                print(f"[xlab] {job}: {str(e) or 'interrupted'}; stopping its Ray work", flush=True)
                shutdown_ray()
                raise
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
