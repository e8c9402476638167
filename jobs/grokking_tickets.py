"""Grokking tickets: magnitude-pruned, rewound subnetworks grok much faster than the dense net.

Stage 1 trains the dense network to full generalization (one Tune trial per seed). Stage 2 is one
Tune trial per seed x variant x pruning rate, each starting from that seed's dense run:

* ``ticket``: global magnitude mask of the generalized weights, applied to the exact initial weights;
* ``random``: a random mask of the same density; ``snip``/``grasp``/``synflow``: pruning at init;
* ``same_norm``: the dense init with every matrix scaled to the ticket's norm (no mask);
* ``no_wd``: the ticket retrained without weight decay;
* ``memorization``: a ticket from the dense weights at ``ticket.memorization_step``.

Every trial reports steps to test accuracy 0.95 and 0.99 ("steps to grok"); the parent run gets the
table, the comparison plot and ``speedup_0.95`` = dense steps / ticket steps. ``sweep.rates`` with
several values is the pruning-rate sweep (ASHA stops trials that are not generalizing).

    xlab run grokking_tickets --preset smoke               # MLP on a+b mod 67
    xlab run grokking_tickets --preset smoke-transformer   # 1-layer transformer
    xlab run grokking_tickets --preset smoke-digits        # image MLP on scikit-learn's digits
    xlab run grokking_tickets --preset rate-sweep-smoke    # pruning rates 0.2 .. 0.9 with ASHA
    xlab run grokking_tickets --preset paper               # all baselines, 3 seeds, 30k steps

Protocol vs paper (what matches, what differs and why): docs/studies/grokking_tickets.md.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

from xlab.config import JobConfig, check
from xlab.optim import OptimConfig
from xlab.prune.study import TicketConfig
from xlab.train import TrainConfig


@dataclasses.dataclass
class DataConfig:
    task: Literal["modular", "digits", "mnist"] = "modular"
    """modular: (a OP b) mod p on unordered pairs; digits: scikit-learn's bundled 8x8 digits (offline
    stand-in for MNIST); mnist: IDX files under data.mnist_path."""
    op: str = "add"
    p: int = 67
    train_frac: float = 0.4
    n_train: int = 1000
    """Training images (digits/mnist)."""
    mnist_path: str = ""


@dataclasses.dataclass
class ModelConfig:
    name: Literal["ticket-mlp", "ticket-transformer", "ticket-image-mlp"] = "ticket-mlp"


@dataclasses.dataclass
class SweepConfig:
    rates: tuple[float, ...] = ()
    """Pruning rates of the ticket variants (empty: ticket.rate)."""
    seeds: tuple[int, ...] = (0,)
    asha: bool = False
    cpus_per_trial: float = 1.0


@dataclasses.dataclass
class Config(JobConfig):
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(
        default_factory=lambda: OptimConfig(name="adamw", lr=1e-3, beta1=0.9, beta2=0.98, weight_decay=1.0)
    )
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(steps=30_000, eval_every=100, stop_after_grok=0)
    )
    ticket: TicketConfig = dataclasses.field(default_factory=TicketConfig)
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)


_SMOKE_TRAIN = TrainConfig(steps=20_000, eval_every=100, stop_after_grok=0)
PRESETS = {
    # Dense MLP groks a+b mod 67 in ~12k steps (~1.5 min on 2 cores); the ticket in ~500.
    "smoke": Config(train=_SMOKE_TRAIN,
                    ticket=TicketConfig(variants=("ticket", "random", "same_norm", "snip"), max_steps=3000,
                                        eval_every=20, periodicity_every=1000)),
    # The transformer's dense run reaches 0.95 at ~10k steps but may not hold 0.99: cap it at 12k.
    "smoke-transformer": Config(model=ModelConfig("ticket-transformer"),
                                train=TrainConfig(steps=12_000, eval_every=100, stop_after_grok=0),
                                ticket=TicketConfig(variants=("ticket", "random"), max_steps=6000)),
    "smoke-digits": Config(
        data=DataConfig(task="digits"), model=ModelConfig("ticket-image-mlp"),
        optim=OptimConfig(name="adamw", lr=1e-3, beta1=0.9, beta2=0.98, weight_decay=0.1),
        train=TrainConfig(steps=20_000, eval_every=100, stop_after_grok=0, grok_thresholds=(0.9, 0.95)),
        ticket=TicketConfig(variants=("ticket", "random"), max_steps=5000),
    ),
    "rate-sweep-smoke": Config(train=_SMOKE_TRAIN,
                               ticket=TicketConfig(variants=("ticket",), max_steps=3000),
                               sweep=SweepConfig(rates=(0.2, 0.4, 0.6, 0.8, 0.9), asha=True)),
    # The paper's set-up: every baseline, three seeds, 30k full-batch steps (GPU cluster or a long CPU run).
    "paper": Config(sweep=SweepConfig(seeds=(0, 1, 2)), train=TrainConfig(steps=30_000, eval_every=50,
                                                                          stop_after_grok=0, use_gpu=True),
                    ticket=TicketConfig(eval_every=10, periodicity_every=2000)),
    "paper-rate-sweep": Config(ticket=TicketConfig(variants=("ticket",)),
                               sweep=SweepConfig(rates=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                                                 seeds=(0, 1, 2), asha=True)),
    "paper-mnist": Config(
        data=DataConfig(task="mnist", mnist_path="data/mnist"), model=ModelConfig("ticket-image-mlp"),
        optim=OptimConfig(name="adamw", lr=1e-3, beta1=0.9, beta2=0.98, weight_decay=0.1),
        train=TrainConfig(steps=100_000, eval_every=200, stop_after_grok=0, grok_thresholds=(0.85, 0.9)),
        sweep=SweepConfig(seeds=(0, 1, 2)),
    ),
}
KEY_METRICS = ["speedup_0.95", "dense_steps_to_0.95", "ticket_steps_to_0.95"]


def build_task(cfg: Config):
    """The Task (data, model factory, loss) of the configured set-up."""
    from xlab.models import build_model
    from xlab.studydata import digits_task, mnist_task
    from xlab.studydata.modular import ticket_data
    from xlab.train import Task

    if cfg.data.task == "modular":
        d = ticket_data(cfg.data.op, cfg.data.p, cfg.data.train_frac, seed=cfg.seed)
        model_fn = functools.partial(build_model, cfg.model.name, d_vocab=d.vocab_size, n_out=d.p)
        return Task(f"{cfg.data.op}_mod_{cfg.data.p}", d.train.x, d.train.y, d.test.x, d.test.y, model_fn)
    img = digits_task(cfg.data.n_train, cfg.seed) if cfg.data.task == "digits" else \
        mnist_task(cfg.data.mnist_path, cfg.data.n_train, cfg.seed)
    model_fn = functools.partial(build_model, cfg.model.name, d_in=img.n_features, n_out=img.n_classes)
    return Task(img.name, img.x_train, img.y_train, img.x_test, img.y_test, model_fn, loss="mse",
                labels_train=img.labels_train, labels_test=img.labels_test)


def _variant_start(cfg: Config, task, dense: dict):
    """(init_state, masks, optim) of a stage-2 variant, from the dense run's states."""
    import torch

    from xlab.prune.study import variant_start
    from xlab.train import seed_everything

    seed_everything(cfg.seed)  # pruning at init scores the untrained net on the training batch
    loss_fn = torch.nn.functional.cross_entropy if task.loss == "ce" else torch.nn.functional.mse_loss
    init, masks, weight_decay = variant_start(cfg.ticket, dense, seed=cfg.seed, model_fn=task.model_fn,
                                              batch=(task.x_train, task.y_train), loss_fn=loss_fn)
    return init, masks, cfg.optim if weight_decay else dataclasses.replace(cfg.optim, weight_decay=0.0)


def _log_result(result, tracker, title: str) -> None:
    from xlab.train.plots import curves_figure

    summary = result.summary()
    tracker.log_metrics({k: v for k, v in summary.items() if k != "step"}, step=int(summary["step"]))
    tracker.log_dict(result.history, "history.json")
    tracker.log_figure(curves_figure(result.history, title), "curves.png")


def _periodicity_steps(cfg: Config, steps: int) -> tuple[int, ...]:
    every = cfg.ticket.periodicity_every
    return tuple(range(every, steps, every)) if every and cfg.data.task == "modular" else ()


def _log_periodicity(cfg: Config, result, tracker, title: str) -> None:
    """Periodicity of the input map at the start, the snapshot steps and the end (modular tasks)."""
    from xlab.analysis.periodicity import periodicity_over_training, plot_spectra

    if cfg.data.task != "modular":
        return
    every = cfg.ticket.periodicity_every
    states = {0: result.init_state, **{s: st for s, st in result.snapshots.items() if every and s % every == 0}}
    states[int(result.summary()["step"])] = result.state
    by_step, spectra = periodicity_over_training(states, cfg.data.p)
    for step, metrics in by_step.items():
        tracker.log_metrics({f"periodicity/{k}": v for k, v in metrics.items()}, step=step)
    tracker.log_figure(plot_spectra(spectra, f"{title}: per-neuron spectra of W_in . W_E (final)"), "spectra.png")


def load_dense(run_id: str) -> dict:
    """The dense run's checkpoint (tensors only: a pickled object in the artifact is refused, never run)."""
    import mlflow

    from xlab.checkpoint import load_checkpoint

    return load_checkpoint(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoint/dense.pt"))


def trial(cfg: Config, dense_runs: dict[int, str] | None = None) -> None:
    """One trial: the dense run (stage 1) or one variant started from the dense run of its seed (stage 2)."""
    import tempfile

    from xlab.checkpoint import save_checkpoint
    from xlab.prune import mask_density
    from xlab.track import Tracker
    from xlab.train import fit

    task = build_task(cfg)
    tracker = Tracker()
    if cfg.ticket.variant == "dense":
        train_cfg = dataclasses.replace(cfg.train, snapshot_steps=(cfg.ticket.memorization_step,
                                                                   *_periodicity_steps(cfg, cfg.train.steps)))
        result = fit(task, train_cfg, cfg.optim, seed=cfg.seed, tracker=tracker, name=f"dense s{cfg.seed}")
        _log_result(result, tracker, f"dense, seed {cfg.seed}")
        _log_periodicity(cfg, result, tracker, f"dense, seed {cfg.seed}")
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint({"init": result.init_state, "final": result.state, "snapshots": result.snapshots},
                            f"{d}/dense.pt")
            tracker.log_artifact(f"{d}/dense.pt", "checkpoint")
        return
    check(dense_runs is not None and cfg.seed in dense_runs, "seed", f"no dense run for seed {cfg.seed}")
    dense = load_dense(dense_runs[cfg.seed])
    init_state, masks, optim = _variant_start(cfg, task, dense)
    if masks is not None:
        tracker.log_metrics({"density": mask_density(masks)})
    train_cfg = cfg.train
    if cfg.ticket.max_steps:
        train_cfg = dataclasses.replace(train_cfg, steps=min(cfg.ticket.max_steps, train_cfg.steps))
    train_cfg = dataclasses.replace(train_cfg, eval_every=cfg.ticket.eval_every or train_cfg.eval_every,
                                    snapshot_steps=_periodicity_steps(cfg, train_cfg.steps))
    result = fit(task, train_cfg, optim, seed=cfg.seed, tracker=tracker, init_state=init_state, masks=masks,
                 name=f"{cfg.ticket.variant} r{cfg.ticket.rate} s{cfg.seed}")
    _log_result(result, tracker, f"{cfg.ticket.variant}, rate {cfg.ticket.rate}, seed {cfg.seed}")
    _log_periodicity(cfg, result, tracker, f"{cfg.ticket.variant}, rate {cfg.ticket.rate}, seed {cfg.seed}")
    if result.masks is not None:
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint({"state": result.state, "masks": result.masks}, f"{d}/ticket.pt")
            tracker.log_artifact(f"{d}/ticket.pt", "checkpoint")


def main(cfg: Config) -> dict:
    import mlflow
    import pandas as pd
    from ray.tune.schedulers import ASHAScheduler

    from xlab.prune.study import (
        comparison_figure,
        rate_figure,
        speedup_metrics,
        steps_to_grok_rows,
        variant_label,
    )
    from xlab.session import job_session
    from xlab.track import Tracker, child_runs
    from xlab.tune import grid, raise_on_errors, run_sweep

    with job_session("grokking_tickets", cfg) as parent:
        pid = parent.info.run_id
        seeds = cfg.sweep.seeds or (cfg.seed,)
        # Stage 1: dense runs, one per seed.
        res1 = run_sweep(trial, cfg, grid({"ticket.variant": ["dense"], "seed": seeds}), parent_run_id=pid,
                         metric="test_acc", mode="max", cpus_per_trial=cfg.sweep.cpus_per_trial, train=cfg.train, name=f"dense-{pid[:8]}")
        raise_on_errors(res1)
        dense_runs = {int(r.data.params["seed"]): r.info.run_id for r in child_runs(pid)
                      if r.data.params.get("ticket.variant") == "dense" and r.info.status == "FINISHED"}
        # Stage 2: every variant x rate x seed, started from its seed's dense run.
        axes = {"ticket.variant": cfg.ticket.variants, "seed": seeds}
        if cfg.sweep.rates:
            axes["ticket.rate"] = cfg.sweep.rates
        max_t = cfg.ticket.max_steps or cfg.train.steps
        scheduler = ASHAScheduler(time_attr="step", max_t=max_t, grace_period=max(max_t // 4, cfg.train.eval_every),
                                  reduction_factor=2) if cfg.sweep.asha else None
        res2 = run_sweep(functools.partial(trial, dense_runs=dense_runs), cfg, grid(axes), parent_run_id=pid,
                         metric="test_acc", mode="max", scheduler=scheduler, cpus_per_trial=cfg.sweep.cpus_per_trial, train=cfg.train,
                         name=f"variants-{pid[:8]}")

        thresholds = cfg.train.grok_thresholds
        t0 = f"{thresholds[0]:g}"
        runs = child_runs(pid)
        table = pd.DataFrame(steps_to_grok_rows(runs, mlflow.MlflowClient(), thresholds))
        table = table.sort_values(["variant", "rate", "seed"]).reset_index(drop=True)
        curves = {variant_label(r.data.params["ticket.variant"], r.data.params.get("ticket.rate")):
                  mlflow.artifacts.load_dict(f"{r.info.artifact_uri}/history.json")
                  for r in runs if r.info.status == "FINISHED" and int(r.data.params["seed"]) == seeds[0]}
        tracker = Tracker()
        tracker.log_dict(table.to_dict(orient="records"), "summary.json")
        metrics = speedup_metrics(table, cfg.ticket.rate, thresholds[0])
        tracker.log_metrics(metrics)
        if curves:
            tracker.log_figure(comparison_figure(curves, f"grokking tickets: {cfg.data.task} {cfg.model.name}"),
                               "comparison.png")
        if cfg.sweep.rates:
            tracker.log_figure(rate_figure(table, f"steps_to_{t0}"), "rate_sweep.png")
        print(table.to_string(index=False))
        if f"speedup_{t0}" in metrics:
            print(f"speed-up dense/ticket (steps to test acc {t0}): {metrics[f'speedup_{t0}']:.1f}x")
        elif f"dense_steps_to_{t0}" in metrics:
            print(f"no speed-up to report: the ticket at rate {cfg.ticket.rate} did not reach test acc {t0}")
        raise_on_errors(res2)
        return {"table": table, "metrics": metrics, "run_id": pid}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("grokking_tickets")
