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

from xlab.runtime import init_ray
from xlab.track.run import job_run
from xlab.track.store import setup_tracking


@contextlib.contextmanager
def job_session(job: str, cfg: Any, use_ray: bool = True) -> Iterator[Any]:
    """Check tracking, init Ray (from ``cfg.ray``) unless ``use_ray`` is False, yield the job's MLflow run."""
    uri = setup_tracking(getattr(getattr(cfg, "tracking", None), "uri", None))
    if use_ray:
        ray_cfg = getattr(cfg, "ray", None)
        init_ray(getattr(ray_cfg, "address", None), getattr(ray_cfg, "num_cpus", None))
    with job_run(job, cfg, tracking_uri=uri) as run:
        yield run
