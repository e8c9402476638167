"""Side-by-side comparison of a job's MLflow runs (``xlab runs JOB``)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from xlab.errors import XlabError
from xlab.track.store import redact_uri, setup_tracking


def runs_table(
    experiment: str,
    tracking_uri: str | None = None,
    metrics: Sequence[str] | None = None,
    include_children: bool = False,
    max_metrics: int = 8,
    key_metrics: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per run: name, status, start time, the params that differ between runs, key metrics.

    ``metrics`` names the metric columns to show; by default the job's ``key_metrics`` that exist come
    first, then other metrics (sorted) up to ``max_metrics`` columns. Nested trial runs are left out
    unless ``include_children``.
    """
    import mlflow

    setup_tracking(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        raise XlabError(f"no MLflow experiment {experiment!r} in {redact_uri(mlflow.get_tracking_uri())}; run the job first")
    df = mlflow.search_runs(experiment_names=[experiment], order_by=["attributes.start_time DESC"])
    if df.empty:
        return df
    if not include_children and "tags.mlflow.parentRunId" in df:
        df = df[df["tags.mlflow.parentRunId"].isna()]
    df = df.dropna(axis=1, how="all")  # columns only nested runs had
    params = [c for c in df.columns if c.startswith("params.")]
    differing = [c for c in params if df[c].astype(str).nunique(dropna=False) > 1]
    metric_cols = [c for c in df.columns if c.startswith("metrics.")]
    if metrics:
        wanted = [f"metrics.{m}" for m in metrics]
        missing = [m for m, c in zip(metrics, wanted, strict=True) if c not in df]
        if missing:
            raise XlabError(f"no metric(s) {', '.join(missing)} in {experiment!r}; known: "
                            f"{', '.join(c[8:] for c in metric_cols)}")
        metric_cols = wanted
    else:
        keys = [f"metrics.{m}" for m in key_metrics if f"metrics.{m}" in df]
        metric_cols = (keys + [c for c in sorted(metric_cols) if c not in keys])[:max_metrics]
    out = df[["tags.mlflow.runName", "status", "start_time", *differing, *metric_cols]].copy()
    out.columns = ["run", "status", "start", *[c[7:] for c in differing], *[c[8:] for c in metric_cols]]
    out["start"] = pd.to_datetime(out["start"]).dt.strftime("%Y-%m-%d %H:%M")
    return out.reset_index(drop=True)
