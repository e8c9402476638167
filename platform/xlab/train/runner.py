"""Run :func:`xlab.train.loop.train` here or on a Ray Train worker group, with the same code.

* :func:`fit` trains in this process (``num_workers == 1``) or delegates to :func:`fit_ray`.
* :func:`fit_ray` runs ``train`` in every worker of the one Ray Train harness
  (:func:`xlab.train.distributed.launch`: DDP, checkpoints, restarts, ``--train.resume auto``, metrics
  forwarded to Tune inside a trial); rank 0 logs to MLflow.

Metrics are logged under ``prefix`` (e.g. ``"ticket/"``) so several fits can share one MLflow run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xlab.checkpoint import load_checkpoint, save_checkpoint
from xlab.optim import OptimConfig
from xlab.track.run import Tracker
from xlab.train.distributed import CHECKPOINT_FILE, WorkerContext, in_tune_trial, launch
from xlab.train.loop import FitResult, Task, TrainConfig, train
from xlab.train.scale import run_key


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
        self.to_tune = in_tune_trial()

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
    key: str | None = None,
) -> FitResult:
    """Train ``task`` here, or on ``cfg.num_workers`` Ray Train workers when that is > 1 (``key``: see fit_ray)."""
    if cfg.num_workers > 1:
        return fit_ray(task, cfg, optim, seed=seed, tracker=tracker, prefix=prefix, init_state=init_state,
                       masks=masks, name=name, key=key)
    reporter = LocalReporter(name or task.name, cfg.steps, tracker, checkpoint_dir, prefix)
    device = "cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu"
    return train(task, cfg, optim, seed=seed, reporter=reporter, init_state=init_state, masks=masks, device=device)


class RayTrainReporter:
    """Reporter inside a Ray Train worker: every rank reports (a barrier), rank 0 logs and writes checkpoints."""

    def __init__(self, ctx: WorkerContext, total: int, prefix: str) -> None:
        self.ctx = ctx
        self.local = LocalReporter(ctx.name, total, ctx.tracker, prefix=prefix, print_every_s=30.0)
        self.local.to_tune = False  # inside Train, metrics reach Tune through TuneReportCallback

    def report(self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        if self.ctx.rank == 0:
            self.local.report(step, metrics, None)
        # Same keys as LocalReporter gives Tune ("test/acc" -> "test_acc"): TuneReportCallback forwards these.
        if checkpoint is None:
            self.ctx.report(metrics)
        else:
            self.ctx.save(checkpoint, metrics)
        self.ctx.maybe_fail(step)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        return self.ctx.restored


def _ray_worker(ctx: WorkerContext, config: dict[str, Any]) -> None:
    train(
        config["task"],
        config["cfg"],
        config["optim"],
        seed=config["seed"],
        reporter=RayTrainReporter(ctx, config["cfg"].steps, config["prefix"]),
        init_state=config["init_state"],
        masks=config["masks"],
        rank=ctx.rank,
        world_size=ctx.world_size,
        device=ctx.device,
        wrap=ctx.wrap,
    )


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
    key: str | None = None,
) -> FitResult:
    """Train ``task`` data-parallel on ``cfg.num_workers`` Ray Train workers (see module docstring).

    ``key`` names the run's config for ``--train.resume auto`` (default: the task name, shapes, train and
    optimizer settings and seed)."""
    name = name or task.name
    if key is None:
        key = run_key(cfg, optim, {"task": task.name, "seed": seed, "x": list(task.x_train.shape), "prefix": prefix})
    out = launch(
        _ray_worker,
        {"task": task, "cfg": cfg, "optim": optim, "seed": seed, "init_state": init_state, "masks": masks,
         "prefix": prefix},
        cfg, name=name, key=key,
        run_id=tracker.run_id if tracker is not None and tracker.enabled else None,
    )
    state = out.state
    return FitResult(
        history=state["history"],
        steps_to=state["steps_to"],
        state=state["model"],
        init_state=state["init_state"],
        masks=state["masks"],
        seconds=out.seconds,
        snapshots=state.get("snapshots", {}),
    )
