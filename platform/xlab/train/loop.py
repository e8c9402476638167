"""The training loop shared by the studies: one code path, single-process or under Ray Train.

A :class:`Task` bundles tensors, a model factory and a loss; :func:`train` runs it with any optimizer
from :mod:`xlab.optim`, optional pruning masks that stay applied, evaluation every ``eval_every``
steps (accuracy, loss, and the task's evaluation hooks such as Fourier progress measures), logging
through a reporter, checkpoints every ``checkpoint_every`` steps, and resume from a checkpoint.
:func:`xlab.train.fit` runs it here; :func:`xlab.train.fit_ray` runs the same function in every
worker of the Ray Train harness (:mod:`xlab.train.distributed`; data parallel: each worker holds a
shard of every batch).

    task = Task("add", x_tr, y_tr, x_te, y_te, model_fn=partial(build_model, "grok-transformer"))
    result = fit(task, TrainConfig(steps=5000), OptimConfig(name="adamw", weight_decay=1.0), seed=0)
    result.steps_to[0.95]     # first evaluated step with test accuracy >= 0.95 (None if never)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from xlab.config import check
from xlab.errors import check_finite_loss
from xlab.optim import OptimConfig, build_optimizer
from xlab.prune.masks import apply_masks
from xlab.train.scale import ScaleConfig


@dataclasses.dataclass
class TrainConfig(ScaleConfig):
    """How long and how to train and evaluate; how to scale and checkpoint (:class:`ScaleConfig`)."""

    steps: int = 10_000
    """Optimizer steps."""
    batch_size: int = 0
    """Examples per step across all workers; 0 = full batch (the grokking set-up)."""
    eval_every: int = 100
    """Steps between evaluations (metrics are logged at each)."""
    checkpoint_every: int = 0
    """Steps between checkpoints (at evaluation steps); 0 = only at the end."""
    grok_thresholds: tuple[float, ...] = (0.95, 0.99)
    """Test accuracies whose first crossing step is reported as steps_to_<t>."""
    stop_after_grok: int = -1
    """Stop this many steps after test accuracy first reaches max(grok_thresholds); -1 = never stop early."""
    snapshot_steps: tuple[int, ...] = ()
    """Steps whose weights are kept in FitResult.snapshots (e.g. tickets from the memorization phase)."""
    loss_dtype: Literal["float32", "float64"] = "float64"
    """Cross-entropy in float64: float32 log-softmax underflows near convergence (loss spikes)."""
    grad_clip: float = 0.0
    """Clip the gradient norm to this (0 = off)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.steps > 0, "train.steps", f"must be > 0, got {self.steps}")
        check(self.eval_every > 0, "train.eval_every", f"must be > 0, got {self.eval_every}")
        check(self.batch_size >= 0, "train.batch_size", f"must be >= 0 (0 = full batch), got {self.batch_size}")
        check(self.parallel_strategy == "ddp", "train.parallel_strategy",
              "this loop trains small models with ddp; fsdp is for the policy and LM trainers")
        check(all(0 < t <= 1 for t in self.grok_thresholds), "train.grok_thresholds", "must be in (0, 1]")


@dataclasses.dataclass(eq=False)
class Task:
    """What to train: data, a model factory, the loss, and evaluation hooks.

    ``y_*`` are class indices for ``loss="ce"`` and targets (e.g. one-hot) for ``loss="mse"``;
    accuracy compares the argmax of the output with ``labels_*`` (default: ``y_*`` for ce, its
    argmax for mse). ``groups_test``/``group_names`` add per-group test accuracy (task mixtures).
    ``eval_hooks`` map the (unwrapped) model to extra metrics; they run on rank 0 only.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    model_fn: Callable[[], nn.Module]
    loss: Literal["ce", "mse"] = "ce"
    labels_train: torch.Tensor | None = None
    labels_test: torch.Tensor | None = None
    groups_test: torch.Tensor | None = None
    group_names: Sequence[str] = ()
    eval_hooks: Sequence[Callable[[nn.Module], Mapping[str, float]]] = ()

    def labels(self, split: str) -> torch.Tensor:
        given = getattr(self, f"labels_{split}")
        if given is not None:
            return given
        y = getattr(self, f"y_{split}")
        return y if self.loss == "ce" else y.argmax(-1)


@dataclasses.dataclass
class FitResult:
    """What a training run produced."""

    history: list[dict[str, float]]
    """One row per evaluation: step, train/loss, train/acc, test/loss, test/acc, hook metrics."""
    steps_to: dict[float, int | None]
    """First evaluated step where test accuracy >= threshold (None: never)."""
    state: dict[str, torch.Tensor]
    """Final weights (CPU)."""
    init_state: dict[str, torch.Tensor]
    """The exact initial weights (CPU), for rewinding."""
    masks: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    snapshots: dict[int, dict[str, torch.Tensor]] = dataclasses.field(default_factory=dict)
    """Weights at ``TrainConfig.snapshot_steps`` (CPU)."""

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}

    def summary(self) -> dict[str, float]:
        """Final metrics plus steps_to_<t> (``steps`` + 1 when never reached, so it sorts last)."""
        out = dict(self.final)
        total = int(self.final.get("step", 0))
        for t, s in self.steps_to.items():
            out[f"steps_to_{t:g}"] = float(s if s is not None else total + 1)
            out[f"reached_{t:g}"] = float(s is not None)
        return out


class Reporter(Protocol):
    """Where evaluation rows and checkpoints go (single-process and Ray Train reporters differ)."""

    def report(self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        """Record one evaluation row; save ``checkpoint`` when it is given."""

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, if any."""


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _loss(task: Task, out: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if task.loss == "ce":
        return F.cross_entropy(out.to(dtype), y)
    return F.mse_loss(out.to(dtype), y.to(dtype))


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, device: torch.device, dtype: torch.dtype, rank_zero: bool = True):
    """Loss and accuracy on the full train and test sets, per-group test accuracy, and hooks (rank 0)."""
    was_training = model.training
    model.eval()
    row: dict[str, float] = {}
    for split in ("train", "test"):
        x = getattr(task, f"x_{split}").to(device)
        y = getattr(task, f"y_{split}").to(device)
        out = model(x)
        row[f"{split}/loss"] = float(_loss(task, out, y, dtype))
        correct = out.argmax(-1) == task.labels(split).to(device)
        row[f"{split}/acc"] = float(correct.float().mean())
        if split == "test" and task.groups_test is not None:
            groups = task.groups_test.to(device)
            for g, name in enumerate(task.group_names):
                sel = groups == g
                if sel.any():
                    row[f"test/acc/{name}"] = float(correct[sel].float().mean())
    if rank_zero:
        for hook in task.eval_hooks:
            row.update({k: float(v) for k, v in hook(model).items()})
    model.train(was_training)
    return row


def train(
    task: Task,
    cfg: TrainConfig,
    optim: OptimConfig,
    *,
    seed: int = 0,
    reporter: Reporter | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> FitResult:
    """Train ``task`` (see module docstring). ``wrap`` is DDP under Ray Train; ``rank``/``world_size`` shard batches.

    If the reporter has a checkpoint (a restarted worker group or a resumed run), training continues
    from it: same weights, optimizer state, masks, history and step.
    """
    device = torch.device(device)
    dtype = torch.float64 if cfg.loss_dtype == "float64" else torch.float32
    seed_everything(seed)
    model = task.model_fn()
    if init_state is not None:
        model.load_state_dict(init_state)
    init = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    model.to(device)
    opt = build_optimizer(optim, model.parameters())
    if masks:
        apply_masks(model, masks, opt)
    history: list[dict[str, float]] = []
    start = 0
    ckpt = reporter.latest_checkpoint() if reporter is not None else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("masks"):
            apply_masks(model, ckpt["masks"], opt)
        init, history, start = ckpt["init_state"], list(ckpt["history"]), int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"])
    net = wrap(model) if wrap is not None else model

    # Each worker trains on its shard of the examples; DDP averages gradients, so with equal shards a
    # full-batch step on N workers equals the single-process full-batch step.
    x_all = task.x_train[rank::world_size].to(device)
    y_all = task.y_train[rank::world_size].to(device)
    n_local = x_all.shape[0]
    local_batch = math.ceil(cfg.batch_size / world_size) if cfg.batch_size else n_local
    gen = torch.Generator().manual_seed(seed * 1000 + rank)
    for _ in range(start):  # keep minibatch order identical after a resume
        if local_batch < n_local:
            torch.randint(n_local, (local_batch,), generator=gen)

    t0 = time.perf_counter()
    first_cross: dict[float, int | None] = {t: None for t in cfg.grok_thresholds}
    for row in history:
        for t in first_cross:
            if first_cross[t] is None and row["test/acc"] >= t:
                first_cross[t] = int(row["step"])
    if start == 0:
        # Step 0: the untrained model, so curves start at chance.
        row = {"step": 0.0, **evaluate(model, task, device, dtype, rank_zero=rank == 0)}
        history.append(row)
        if reporter is not None:
            reporter.report(0, row, None)
    stop_at = cfg.steps
    snapshots: dict[int, dict[str, torch.Tensor]] = dict(ckpt.get("snapshots", {})) if ckpt else {}
    net.train()
    for step in range(start + 1, cfg.steps + 1):
        if local_batch < n_local:
            idx = torch.randint(n_local, (local_batch,), generator=gen)
            x, y = x_all[idx.to(device)], y_all[idx.to(device)]
        else:
            x, y = x_all, y_all
        loss = _loss(task, net(x), y, dtype)
        if not torch.isfinite(loss):
            check_finite_loss(float(loss.detach()), step, f"training {task.name}", "lower optim.lr or set train.grad_clip")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if step in cfg.snapshot_steps:
            snapshots[step] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

        last = step == stop_at or step == cfg.steps
        if step % cfg.eval_every == 0 or last:
            # Every rank evaluates the full (small) sets on identical weights, so the early-stop
            # decision below is the same everywhere without a collective.
            row = {"step": float(step), **evaluate(model, task, device, dtype, rank_zero=rank == 0)}
            history.append(row)
            for t in first_cross:
                if first_cross[t] is None and row["test/acc"] >= t:
                    first_cross[t] = step
            main_t = max(cfg.grok_thresholds) if cfg.grok_thresholds else None
            if cfg.stop_after_grok >= 0 and main_t is not None and first_cross[main_t] is not None:
                stop_at = min(stop_at, first_cross[main_t] + cfg.stop_after_grok)
            last = last or step >= stop_at
            due = last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
            state = None
            if due:
                state = {
                    "step": step,
                    "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                    "optimizer": opt.state_dict(),
                    "masks": _current_masks(model),
                    "init_state": init,
                    "history": history,
                    "rng": torch.get_rng_state(),
                    "steps_to": dict(first_cross),
                    "snapshots": snapshots,
                }
            if reporter is not None:
                reporter.report(step, row, state)
            if last:
                break
    return FitResult(
        history=history,
        steps_to=first_cross,
        state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        init_state=init,
        masks=_current_masks(model),
        seconds=time.perf_counter() - t0,
        snapshots=snapshots,
    )


def _current_masks(model: nn.Module) -> dict[str, torch.Tensor] | None:
    from xlab.prune.masks import get_masks

    masked = get_masks(model)
    return masked.state_dict() if masked is not None else None
