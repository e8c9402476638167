"""One policy experiment trial: train with Ray Train, then measure success in simulation.

What a Tune trial of ``cross_embodiment`` (one mixture weight) and of ``policy_ablation`` (one
variant of the recipe) does: train a policy on the job's datasets
(:func:`~xlab.policies.training.fit_policy`, the ``train_policy`` loop), roll it out on
``eval_tasks`` in Ray tasks (:func:`~xlab.policies.rollout.evaluate_in_ray`: batched, no TensorFlow
in the rendering processes, outside the trial's placement group), log the policy to the trial's
MLflow run (``runs:/<trial run>/policy``, so ``eval_policy`` can re-evaluate it) and return the
success metrics::

    metrics = train_and_evaluate(cfg, tasks, episodes=10, eval_seed=123, job="cross_embodiment", label="w=0.5")
    metrics["success/mean"], metrics["success/sawyer"], metrics["success/sawyer-reach-v0"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xlab.policies.training import PolicyJobConfig


def train_and_evaluate(cfg: PolicyJobConfig, eval_tasks: Sequence[str], episodes: int, eval_seed: int,
                       execution: str = "ensemble", job: str = "trial", label: str = "") -> dict[str, float]:
    """Train the policy of job config ``cfg`` (its ``data``, ``policy``, ``optim``, ``train`` and ``seed``) and
    evaluate it: ``success/<task>``, ``success/<embodiment>``, ``success/mean``, training time and accuracy."""
    import mlflow

    import robots
    from xlab.policies import build_policy
    from xlab.policies.encoder import encoder_record
    from xlab.policies.mlflow_model import log_policy
    from xlab.policies.rollout import evaluate_in_ray
    from xlab.policies.training import build_dataset, check_dataset_dirs, dataset_names, fit_policy
    from xlab.track import Tracker
    from xlab.track.store import resolve_tracking_uri

    run = mlflow.active_run()
    policy = build_policy(cfg.policy.preset, **cfg.policy.overrides())
    pc = policy.config
    ds, used, _ = build_dataset(cfg.data, pc, seed=cfg.seed)
    out = fit_policy(cfg, ds, used, run_id=run.info.run_id if run else None,
                     tracking_uri=resolve_tracking_uri(cfg.tracking.uri))
    policy.load_state_dict(out["state"]["policy"])
    policy.instruction_encoder = encoder_record(cfg.data.embedding_backend)
    print(f"[{job}] {label + ': ' if label else ''}trained {out['state']['step']} steps in {out['seconds']:.0f}s; evaluating on "
          f"{len(eval_tasks)} tasks x {episodes} episodes", flush=True)
    results = evaluate_in_ray(pc.to_dict(), list(eval_tasks), episodes, seed=eval_seed, execution=execution,
                              state=policy.state_dict(), encoder=policy.instruction_encoder["name"])
    if run is not None:
        names = dataset_names(cfg.data.dataset_dirs)
        dirs = check_dataset_dirs(cfg.data.dataset_dirs)
        log_policy(policy, name="policy", stats_paths={n: d / "dataset_statistics.json"
                                                       for n, d in zip(names, dirs, strict=True)})
    metrics: dict[str, float] = {"train_seconds": out["seconds"],
                                 "train_token_acc": float(out["metrics"].get("train_token_acc", float("nan")))}
    per_embodiment: dict[str, list[float]] = {}
    for env_id, r in results.items():
        metrics[f"success/{env_id.split('/', 1)[1]}"] = r["success_rate"]
        per_embodiment.setdefault(robots.get_task(env_id).embodiment, []).append(r["success_rate"])
    for emb, rates in per_embodiment.items():
        metrics[f"success/{emb}"] = sum(rates) / len(rates)
    metrics["success/mean"] = sum(r["success_rate"] for r in results.values()) / len(results)
    Tracker().log_metrics(metrics)
    return metrics


def tune_keys(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metric names as Tune result columns (no ``/`` or ``-``)."""
    return {k.replace("/", "_").replace("-", "_"): v for k, v in metrics.items()}
