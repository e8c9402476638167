"""Ray Tune sweeps whose search space is a set of dotted config overrides.

A sweep runs ``trial_fn(cfg)`` once per point of the search space, where ``cfg`` is the job's base
config with that point's overrides applied (the same dotted names as the CLI: ``{"optim.lr": ...}``).
Each trial logs to its own MLflow run nested under the job's parent run (tagged with the trial id and the
node that ran it: ``ray.trial_id``, ``ray.node_id``, ``ray.node_ip``); ``trial_fn`` reports
metrics with ``ray.tune.report`` as it goes (so schedulers such as ASHA can stop it early).

    with job_run("grokking", cfg) as parent:
        results = run_sweep(train_one, cfg, grid({"optim.name": ["adamw", "adopt"]}),
                            parent_run_id=parent.info.run_id, metric="test_acc", mode="max")

A trial may itself build a multi-worker Ray Train ``TorchTrainer`` (the Train V2 pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from xlab.config import JobConfig, apply_overrides, flatten
from xlab.errors import XlabError
from xlab.track.run import child_run
from xlab.track.store import resolve_tracking_uri
from xlab.train.storage import check_shared, storage_path

__all__ = ["grid", "raise_on_errors", "run_sweep", "storage_path"]

C = TypeVar("C", bound=JobConfig)


def grid(values: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """``{"optim.lr": [1e-3, 3e-4]}`` -> a Tune grid over those dotted names."""
    from ray import tune

    return {k: tune.grid_search(list(v)) for k, v in values.items()}


def _trial_name(overrides: Mapping[str, Any]) -> str:
    return ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in overrides.items()) or "trial"


def _trainable(
    config: dict[str, Any],
    *,
    trial_fn: Callable[[C], Mapping[str, Any] | None],
    base_cfg: C,
    parent_run_id: str,
    tracking_uri: str,
) -> None:
    import ray
    from ray import tune

    cfg = apply_overrides(base_cfg, config)
    trial_id = tune.get_context().get_trial_id()
    params = {**flatten(cfg), **{f"trial.{k}": v for k, v in config.items()}}
    # Which node ran the trial: on a cluster, where to look for its logs and what a node loss took with it.
    node = ray.get_runtime_context().get_node_id()
    ip = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node), "")  # the address Ray uses
    where = {"ray.node_id": node, "ray.node_ip": ip}
    with child_run(
        parent_run_id,
        f"{_trial_name(config)}__{trial_id}",
        params=params,
        tracking_uri=tracking_uri,
        tags={"ray.trial_id": trial_id, **where},
    ):
        final = trial_fn(cfg)
        if final:
            tune.report(dict(final))


def run_sweep(
    trial_fn: Callable[[C], Mapping[str, Any] | None],
    base_cfg: C,
    param_space: Mapping[str, Any],
    *,
    parent_run_id: str,
    metric: str,
    mode: str,
    name: str | None = None,
    num_samples: int = 1,
    scheduler: Any = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent_trials: int | None = None,
    verbose: int = 0,
    train: Any = None,
):
    """Run ``trial_fn`` over ``param_space`` with Ray Tune; returns the ``ResultGrid``.

    ``param_space`` maps dotted config names to values or Tune search spaces (see :func:`grid`).
    Trials stopped early by ``scheduler`` have their MLflow runs ended as KILLED with the tag
    ``xlab.early_stopped``; failed trials end FAILED with their error (also a trial whose process died
    before it could record it), and are also in the ResultGrid.
    ``train`` (the trials' ``TrainConfig``) sets trial resources: a trial that builds a multi-worker
    ``TorchTrainer`` holds only 0.1 CPU itself (its workers reserve theirs, so a 2-core machine can
    still run it); a single-worker GPU trial holds one GPU.
    """
    import mlflow
    from ray import tune

    tracking_uri = resolve_tracking_uri(None)
    storage = storage_path()
    check_shared(storage)
    trainable = tune.with_parameters(
        _trainable, trial_fn=trial_fn, base_cfg=base_cfg, parent_run_id=parent_run_id, tracking_uri=tracking_uri
    )
    if train is not None and train.num_workers > 1:
        cpus_per_trial, gpus_per_trial = 0.1, 0.0
    elif train is not None and train.use_gpu:
        gpus_per_trial = max(gpus_per_trial, 1.0)
    resources = {"CPU": cpus_per_trial, **({"GPU": gpus_per_trial} if gpus_per_trial else {})}
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space=dict(param_space),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=num_samples,
            scheduler=scheduler,
            max_concurrent_trials=max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name=name or f"sweep-{parent_run_id[:12]}",
            storage_path=storage,
            verbose=verbose,
        ),
    )
    results = tuner.fit()
    _close_open_children(parent_run_id, results)
    mlflow.set_tracking_uri(tracking_uri)
    return results


def _close_open_children(parent_run_id: str, results: Any) -> None:
    """End the trial runs still RUNNING after the sweep: FAILED with the error when the trial failed (its process
    died before recording it: killed, out of memory, node lost), else KILLED as stopped early by the scheduler."""
    import mlflow

    failed = {}  # trial directory name -> error
    for result in results:
        if result.error is not None and result.path:
            failed[str(result.path).rstrip("/").rsplit("/", 1)[-1]] = result.error
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )
    for child in children:
        trial_id = child.data.tags.get("ray.trial_id", "")
        error = next((e for d, e in failed.items() if trial_id and trial_id in d), None)
        if error is not None:
            text = str(error).strip()
            client.set_tag(child.info.run_id, "xlab.error", f"{type(error).__name__}: {text}"[:4900])
            client.log_text(child.info.run_id, text, "error.txt")
            client.set_terminated(child.info.run_id, status="FAILED")
        else:
            client.set_tag(child.info.run_id, "xlab.early_stopped", "true")
            client.set_terminated(child.info.run_id, status="KILLED")


def raise_on_errors(results: Any) -> None:
    """Raise an XlabError summarising failed trials (after the job has logged what did finish)."""
    errors = list(results.errors)
    if errors:
        first = str(errors[0]).strip().splitlines()[-1] if str(errors[0]).strip() else repr(errors[0])
        raise XlabError(
            f"{len(errors)} of {len(results)} trials failed; first error: {first} "
            "(each failed trial's MLflow run has the full traceback in error.txt)"
        )
