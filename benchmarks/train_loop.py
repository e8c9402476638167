"""Overhead of the xlab training loop vs a bare PyTorch loop on the grokking transformer.

Same model, data (a+b mod 61, full batch) and optimizer (AdamW) in the same process; the bare loop
is forward, float64 cross-entropy, backward, step. The xlab loop adds its bookkeeping (evaluation
every ``--eval-every`` steps, masks when given, checkpoint at the end, optionally MLflow logging).
Runs alternate (bare, xlab, bare, xlab, ...) so machine noise hits both; the ratio of medians is
printed. Goal: xlab/bare <= 1.10.

    python benchmarks/train_loop.py [--steps 300] [--repeats 3] [--eval-every 500] [--mlflow]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import torch
from torch.nn import functional as F

from xlab.models import build_model
from xlab.optim import OptimConfig, build_optimizer
from xlab.studydata.modular import make_modular_data
from xlab.train import Task, TrainConfig, train
from xlab.train.runner import LocalReporter


def bare_loop(task: Task, steps: int, optim: OptimConfig, seed: int) -> float:
    torch.manual_seed(seed)
    model = task.model_fn()
    opt = build_optimizer(optim, model.parameters())
    x, y = task.x_train, task.y_train
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x).to(torch.float64), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def xlab_loop(task: Task, steps: int, optim: OptimConfig, seed: int, eval_every: int, reporter) -> float:
    cfg = TrainConfig(steps=steps, eval_every=eval_every)
    t0 = time.perf_counter()
    train(task, cfg, optim, seed=seed, reporter=reporter)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eval-every", type=int, default=500, help="xlab evaluation interval (bare loop: none)")
    ap.add_argument("--mlflow", action="store_true", help="also log every evaluation to a temporary MLflow store")
    args = ap.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    d = make_modular_data("add", 61, 0.4, seed=0)
    task = Task("add", d.train.x, d.train.y, d.test.x, d.test.y,
                functools.partial(build_model, "grok-transformer", d_vocab=d.vocab_size, n_out=61))
    optim = OptimConfig(name="adamw", lr=1e-3, beta2=0.98, weight_decay=1.0)

    tracker = None
    if args.mlflow:
        import mlflow

        from xlab.track import Tracker

        mlflow.set_tracking_uri(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
        mlflow.start_run()
        tracker = Tracker()
    with tempfile.TemporaryDirectory() as ckpt:
        # resume=False: every repeat trains from scratch (the checkpoint is still written at the end).
        reporter = LocalReporter("bench", args.steps, tracker, checkpoint_dir=ckpt, resume=False, print_every_s=1e9)
        # Warm-up both (allocator, kernels).
        bare_loop(task, 20, optim, 0)
        xlab_loop(task, 20, optim, 0, args.eval_every, None)
        bare, xlab = [], []
        for r in range(args.repeats):
            bare.append(bare_loop(task, args.steps, optim, r))
            xlab.append(xlab_loop(task, args.steps, optim, r, args.eval_every, reporter))
    b, x = statistics.median(bare), statistics.median(xlab)
    print(f"grokking transformer, {len(d.train)} examples full batch, {args.steps} steps x {args.repeats} repeats, "
          f"torch threads {torch.get_num_threads()}")
    print(f"  bare PyTorch loop : {args.steps / b:8.1f} steps/s  ({b / args.steps * 1e3:.2f} ms/step)")
    print(f"  xlab train()      : {args.steps / x:8.1f} steps/s  ({x / args.steps * 1e3:.2f} ms/step)"
          f"  [eval every {args.eval_every}{', MLflow logging' if args.mlflow else ''}, checkpoint at end]")
    print(f"  overhead ratio xlab/bare = {x / b:.3f}  (goal <= 1.10)")


if __name__ == "__main__":
    main()
