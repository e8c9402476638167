"""Run :func:`xlab.train.loop.train` here or on a Ray Train worker group, with the same code.

* :func:`fit` trains in this process (``num_workers == 1``) or delegates to :func:`fit_ray`.
* :func:`fit_ray` builds a ``TorchTrainer`` (DDP; gloo on CPU, NCCL on GPU) whose workers each run
  ``train``; rank 0 logs to MLflow; checkpoints go through ``ray.train.report`` so a restarted worker
  group (``FailureConfig``) resumes from the last one. Inside a Ray Tune trial it forwards the
  workers' metrics to Tune (the Train V2 pattern).

Metrics are logged under ``prefix`` (e.g. ``"ticket/"``) so several fits can share one MLflow run.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xlab.checkpoint import load_checkpoint, save_checkpoint
from xlab.optim import OptimConfig
from xlab.track.run import Tracker
from xlab.train.loop import FitResult, Task, TrainConfig, train

CHECKPOINT_FILE = "state.pt"


def _log_line(name: str, step: int, total: int, metrics: Mapping[str, float]) -> str:
    keys = ("train/loss", "train/acc", "test/acc")
    shown = "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)
    return f"[{name}] step {step}/{total}  {shown}"


class LocalReporter:
    """Logs rows to MLflow (rank 0), prints progress, keeps the latest checkpoint in ``checkpoint_dir``."""

    def __init__(
        self,
        name: str,
        total_steps: int,
        tracker: Tracker | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        prefix: str = "",
        resume: bool = True,
        print_every_s: float = 10.0,
    ) -> None:
        self.name, self.total, self.tracker, self.prefix = name, total_steps, tracker, prefix
        self.dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.resume = resume
        self.print_every_s = print_every_s
        self._last_print = 0.0
        self.to_tune = _in_tune_trial()

    def report(self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        if self.tracker is not None:
            self.tracker.log_metrics({f"{self.prefix}{k}": v for k, v in metrics.items() if k != "step"}, step)
        if self.to_tune:
            from ray import tune

            # Tune flattens nested results with "/": use "_" so "test/acc" stays one key.
            tune.report({f"{self.prefix}{k}".replace("/", "_"): v for k, v in metrics.items()})
        now = time.monotonic()
        if now - self._last_print >= self.print_every_s or step == self.total:
            self._last_print = now
            print(_log_line(self.name, step, self.total, metrics), flush=True)
        if checkpoint is not None and self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".{CHECKPOINT_FILE}.tmp"
            save_checkpoint(checkpoint, tmp)
            tmp.replace(self.dir / CHECKPOINT_FILE)  # atomic: a crash never leaves half a checkpoint

    def latest_checkpoint(self) -> dict[str, Any] | None:
        if not self.resume or self.dir is None or not (self.dir / CHECKPOINT_FILE).exists():
            return None
        return load_checkpoint(self.dir / CHECKPOINT_FILE)


def fit(
    task: Task,
    cfg: TrainConfig,
    optim: OptimConfig,
    *,
    seed: int = 0,
    tracker: Tracker | None = None,
    prefix: str = "",
    checkpoint_dir: str | os.PathLike | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    name: str | None = None,
) -> FitResult:
    """Train ``task`` here, or on ``cfg.num_workers`` Ray Train workers when that is > 1."""
    if cfg.num_workers > 1:
        return fit_ray(task, cfg, optim, seed=seed, tracker=tracker, prefix=prefix, init_state=init_state,
                       masks=masks, name=name)
    reporter = LocalReporter(name or task.name, cfg.steps, tracker, checkpoint_dir, prefix)
    device = "cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu"
    return train(task, cfg, optim, seed=seed, reporter=reporter, init_state=init_state, masks=masks, device=device)


class RayTrainReporter:
    """Reporter inside a Ray Train worker: every rank reports (a barrier), rank 0 logs and writes checkpoints."""

    def __init__(self, name: str, total: int, run_id: str | None, tracking_uri: str, prefix: str) -> None:
        import mlflow
        import ray.train

        self.rank = ray.train.get_context().get_world_rank()
        _quiet_ray_train_reports()
        mlflow.set_tracking_uri(tracking_uri)
        self.local = LocalReporter(name, total, Tracker(run_id, enabled=self.rank == 0) if run_id else None,
                                   prefix=prefix, print_every_s=30.0)
        self.local.to_tune = False  # inside Train, metrics reach Tune through TuneReportCallback

    def report(self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        import ray.train

        if self.rank == 0:
            self.local.report(step, metrics, None)
        # Same keys as LocalReporter gives Tune ("test/acc" -> "test_acc"): TuneReportCallback forwards these.
        metrics = {k.replace("/", "_"): v for k, v in metrics.items()}
        if checkpoint is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            if self.rank == 0:
                save_checkpoint(checkpoint, Path(d) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
            else:
                ray.train.report(metrics, checkpoint=None)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return load_checkpoint(Path(d) / CHECKPOINT_FILE)


def _quiet_ray_train_reports() -> None:
    """Ray Train logs every report call at INFO from every rank; our progress lines say enough."""
    import logging

    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:  # internal module moved: keep the noise rather than fail
        pass


def _ray_worker(config: dict[str, Any]) -> None:
    import ray.train.torch

    ctx = ray.train.get_context()
    reporter = RayTrainReporter(config["name"], config["cfg"].steps, config["run_id"], config["tracking_uri"],
                                config["prefix"])
    train(
        config["task"],
        config["cfg"],
        config["optim"],
        seed=config["seed"],
        reporter=reporter,
        init_state=config["init_state"],
        masks=config["masks"],
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=ray.train.torch.get_device(),
        wrap=ray.train.torch.prepare_model,
    )


def _in_tune_trial() -> bool:
    """True inside a Ray Tune function trial (where metrics should also go to Tune)."""
    import warnings

    try:
        from ray import tune

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # outside Tune, get_trial_id() warns and returns None
            return tune.get_context().get_trial_id() is not None
    except Exception:
        return False


def fit_ray(
    task: Task,
    cfg: TrainConfig,
    optim: OptimConfig,
    *,
    seed: int = 0,
    tracker: Tracker | None = None,
    prefix: str = "",
    init_state: Mapping[str, torch.Tensor] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    name: str | None = None,
) -> FitResult:
    """Train ``task`` data-parallel on ``cfg.num_workers`` Ray Train workers (see module docstring)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    from xlab.track.store import resolve_tracking_uri
    from xlab.train.ray_failures import XlabTorchTrainer as TorchTrainer
    from xlab.tune.sweep import storage_path

    callbacks = []
    if _in_tune_trial():
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    run_name = f"{name or task.name}-{uuid.uuid4().hex[:8]}"  # a reused name would resume an old run
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={
            "task": task, "cfg": cfg, "optim": optim, "seed": seed, "init_state": init_state, "masks": masks,
            "run_id": tracker.run_id if tracker is not None and tracker.enabled else None,
            "tracking_uri": resolve_tracking_uri(None), "prefix": prefix, "name": name or task.name,
        },
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path(),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
        ),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        state = load_checkpoint(Path(d) / CHECKPOINT_FILE)
    return FitResult(
        history=state["history"],
        steps_to=state["steps_to"],
        state=state["model"],
        init_state=state["init_state"],
        masks=state["masks"],
        seconds=time.perf_counter() - t0,
        snapshots=state.get("snapshots", {}),
    )
