"""MLflow tracking for xlab jobs: stores, job runs, nested trial runs, rank-0 logging, comparisons."""

from xlab.track.run import Tracker, child_run, child_runs, environment_tags, is_rank_zero, job_run, run_name
from xlab.track.store import (
    check_server,
    default_tracking_uri,
    get_or_create_experiment,
    resolve_tracking_uri,
    setup_tracking,
)

__all__ = [
    "Tracker",
    "check_server",
    "child_run",
    "child_runs",
    "default_tracking_uri",
    "environment_tags",
    "get_or_create_experiment",
    "is_rank_zero",
    "job_run",
    "resolve_tracking_uri",
    "run_name",
    "setup_tracking",
]
