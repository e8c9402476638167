"""The one optimizer loop for language models: in-process fine-tuning and Ray Train pretraining.

:func:`train_steps` runs optimizer steps over an iterator of micro-batches (``input_ids``,
``labels`` with -100 on ignored positions, optionally ``attention_mask``): gradient accumulation
(``no_sync`` on DDP between micro-batches), bf16 autocast on GPU, gradient clipping, warm-up +
cosine (or constant) learning rate, and every ``log_every`` steps a metrics row (loss averaged over
the interval and all workers, lr, grad norm, tokens/s, MFU when the peak FLOP rate is known).
:mod:`xlab.lm.finetune` calls it in this process; :mod:`xlab.lm.pretrain` calls it in every Ray Train
worker, with a ``reduce`` that all-reduces across workers and an ``on_step`` hook that evaluates and
checkpoints. Resuming is the caller's: restore model/optimizer/scheduler, position the batch
iterator, and pass ``start_step`` and the history so far.

    cfg = LMTrainConfig(steps=200, batch_size=16, lr=1e-3, warmup_steps=20)
    opt, sched = build_optimizer_and_schedule(model, cfg)
    history = train_steps(model, batches, cfg, optimizer=opt, scheduler=sched)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import torch

from xlab.config import check
from xlab.errors import XlabError, check_finite_loss

MetricsFn = Callable[[int, dict[str, float]], None]


@dataclasses.dataclass
class LMTrainConfig:
    """Optimization of a causal LM: steps, batch, optimizer, schedule, precision, logging."""

    steps: int = 200
    """Optimizer steps."""
    batch_size: int = 8
    """Sequences per optimizer step, over all workers and accumulation micro-steps."""
    lr: float = 3e-4
    """Peak learning rate (reached at the end of warm-up)."""
    weight_decay: float = 0.01
    """Decoupled weight decay on matrices (not on biases, norms or embeddings' positions)."""
    warmup_steps: int = 0
    """Linear warm-up from 0 over this many steps."""
    warmup_fraction: float = 0.0
    """Warm-up as a fraction of ``steps`` (used instead of warmup_steps when > 0; the paper: 0.1)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """After warm-up: cosine decay to min_lr, or constant."""
    min_lr: float = 0.0
    """Learning rate at the end of the cosine decay."""
    optimizer: str = "adamw"
    """adamw, adopt (or any name of xlab.optim.available_optimizers())."""
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    block_size: int = 128
    """Tokens per training sequence (at most the model's context)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (the micro-batch is batch_size / (workers x grad_accum))."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 autocast on GPU, fp32 on CPU."""
    log_every: int = 10
    """Steps between metric rows (and log_fn calls)."""
    seed: int = 0
    """Seed of the batch order (and of dropout)."""

    def _check_steps(self) -> None:
        check(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")

    def __post_init__(self) -> None:
        self._check_steps()
        check(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        check(0 <= self.warmup_fraction < 1, "train.warmup_fraction", f"must be in [0, 1), got {self.warmup_fraction}")
        check(self.schedule in ("cosine", "constant"), "train.schedule",
              f"must be cosine or constant, got {self.schedule!r}")
        check(0 <= self.min_lr <= self.lr, "train.min_lr", f"must be in [0, lr={self.lr}], got {self.min_lr}")
        check(self.block_size >= 2, "train.block_size", f"must be >= 2, got {self.block_size}")
        check(self.grad_clip >= 0, "train.grad_clip", f"must be >= 0 (0 = off), got {self.grad_clip}")
        check(self.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {self.grad_accum}")
        check(self.precision in ("auto", "fp32", "bf16"), "train.precision",
              f"must be auto, fp32 or bf16, got {self.precision!r}")
        check(self.log_every >= 1, "train.log_every", f"must be >= 1, got {self.log_every}")
        from xlab.optim import available_optimizers

        check(self.optimizer in available_optimizers(), "train.optimizer",
              f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(available_optimizers())}")

    @property
    def warmup(self) -> int:
        """Warm-up steps in effect."""
        return int(round(self.warmup_fraction * self.steps)) if self.warmup_fraction > 0 else self.warmup_steps

    def micro_batch(self, world_size: int = 1) -> int:
        """Sequences per worker per micro-step; an XlabError if the batch does not split evenly."""
        parts = world_size * self.grad_accum
        check(self.batch_size % parts == 0, "train.batch_size",
              f"{self.batch_size} does not split into {world_size} workers x {self.grad_accum} accumulation steps; "
              f"use a multiple of {parts}")
        return self.batch_size // parts


def lr_factor(step: int, cfg: LMTrainConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based): linear warm-up, then cosine to min_lr."""
    warm = cfg.warmup
    if warm and step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    span = max(cfg.steps - warm, 1)
    progress = min(max(step - warm, 0) / span, 1.0)
    floor = cfg.min_lr / cfg.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases, norm gains and 1-d parameters are not decayed."""
    decay, no_decay, seen = [], [], set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer_and_schedule(model: torch.nn.Module, cfg: LMTrainConfig) -> tuple[Any, Any]:
    """The optimizer (from :mod:`xlab.optim`) over ``model``'s parameters and its LambdaLR schedule."""
    from xlab.optim import OptimConfig, build_optimizer

    ocfg = OptimConfig(name=cfg.optimizer, lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps,
                       weight_decay=cfg.weight_decay)
    opt = build_optimizer(ocfg, parameter_groups(model, cfg.weight_decay))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    return opt, sched


def use_bf16(cfg: LMTrainConfig, device: torch.device | str) -> bool:
    """Whether the forward pass runs under bf16 autocast."""
    dev = torch.device(device)
    return cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda")


def _clip(net: Any, model: torch.nn.Module, max_norm: float) -> float:
    limit = max_norm if max_norm > 0 else float("inf")
    if hasattr(net, "clip_grad_norm_"):  # FSDP: the norm over every shard
        return float(net.clip_grad_norm_(limit))
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), limit))


def train_steps(
    model: torch.nn.Module,
    batches: Iterator[Mapping[str, torch.Tensor]],
    cfg: LMTrainConfig,
    *,
    optimizer: Any,
    scheduler: Any,
    net: torch.nn.Module | None = None,
    device: torch.device | str = "cpu",
    start_step: int = 0,
    history: list[dict[str, float]] | None = None,
    log_fn: MetricsFn | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_step: Callable[[int, dict[str, float] | None], bool | None] | None = None,
    flops_per_token: float | None = None,
    peak_flops: float | None = None,
) -> list[dict[str, float]]:
    """Optimizer steps ``start_step + 1 .. cfg.steps`` (see module docstring); returns the metric history.

    ``net`` is the wrapped model (DDP/FSDP) the forward pass goes through (default ``model``);
    ``reduce`` sums a tensor over workers; ``on_step(step, row_or_None)`` runs after every step
    (on every worker: collectives are allowed) and stops training by returning True;
    ``peak_flops`` is the per-worker peak FLOP/s for MFU.
    """
    device = torch.device(device)
    net = net if net is not None else model
    history = history if history is not None else []  # appended in place: checkpoints see every row
    bf16 = use_bf16(cfg, device)
    # Interval sums: loss x micro-batches, micro-batches, input tokens, target tokens.
    acc = torch.zeros(4, dtype=torch.float64)
    total_tokens = float(history[-1].get("train/tokens", 0.0)) if history else 0.0
    t_last = time.perf_counter()
    net.train()
    for step in range(start_step + 1, cfg.steps + 1):
        for micro in range(cfg.grad_accum):
            try:
                batch = next(batches)
            except StopIteration:
                raise XlabError(f"the training data ran out at step {step}: give more data or fewer train.steps") from None
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            sync = micro == cfg.grad_accum - 1 or not hasattr(net, "no_sync")
            with contextlib.nullcontext() if sync else net.no_sync():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = net(**batch).loss
                (loss / cfg.grad_accum).backward()
            value = float(loss.detach())
            check_finite_loss(value, step, "language-model training", "lower optim.lr or set train.grad_clip")
            acc[0] += value
            acc[1] += 1
            acc[2] += batch["input_ids"].numel()
            acc[3] += float((batch["labels"][:, 1:] != -100).sum())
        grad_norm = _clip(net, model, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        row = None
        if step % cfg.log_every == 0 or step == cfg.steps:
            sums = reduce(acc.clone()) if reduce is not None else acc.clone()
            now = time.perf_counter()
            seconds = max(now - t_last, 1e-9)
            total_tokens += float(sums[2])
            row = {
                "step": float(step),
                "train/loss": float(sums[0] / max(float(sums[1]), 1.0)),
                "train/lr": float(scheduler.get_last_lr()[0]),
                "train/grad_norm": grad_norm,
                "train/tokens": total_tokens,
                "train/tokens_per_s": float(sums[2]) / seconds,
            }
            if flops_per_token and peak_flops:
                workers = float(sums[1]) / max(float(acc[1]), 1.0)  # micro-batches over all workers / ours
                row["train/mfu"] = row["train/tokens_per_s"] * flops_per_token / (peak_flops * workers)
            history.append(row)
            acc.zero_()
            t_last = now
            if log_fn is not None:
                log_fn(step, {k: v for k, v in row.items() if k != "step"})
        if on_step is not None:
            t_hook = time.perf_counter()
            stop = on_step(step, row)
            t_last += time.perf_counter() - t_hook  # evaluation and checkpoint time is not training time
            if stop:
                break
    return history
