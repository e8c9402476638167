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
from xlab.train import TrainConfig

Variant = Literal["dense", "ticket", "random", "snip", "grasp", "synflow", "same_norm", "no_wd", "memorization"]


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
class TicketConfig:
    variant: Variant = "ticket"
    """What one stage-2 trial trains (set by the sweep)."""
    rate: float = 0.6
    """Fraction of weights pruned (the authors' `sparsity` 0.4 = fraction kept = rate 0.6)."""
    scope: Literal["global", "layer"] = "global"
    variants: tuple[Variant, ...] = ("ticket", "random", "same_norm", "snip", "grasp", "synflow", "no_wd",
                                     "memorization")
    max_steps: int = 0
    """Step cap of stage-2 trials (0 = train.steps); baselines that never grok run to this cap."""
    memorization_step: int = 2000
    """Dense step whose weights give the 'memorization' ticket."""
    eval_every: int = 0
    """Evaluation interval of the stage-2 trials (0 = train.eval_every). Tickets grok within a few
    hundred steps, so a 100-step grid would quantize their steps-to-grok by about +-20%."""
    periodicity_every: int = 0
    """Measure the neurons' periodicity (xlab.analysis.periodicity: spectrum of W_in . W_E, Shannon
    entropy over frequencies) every this many steps as well (0: at the start and the end only).
    Modular tasks only."""

    def __post_init__(self) -> None:
        check(0.0 <= self.rate < 1.0, "ticket.rate", f"must be in [0, 1), got {self.rate}")
        check(self.eval_every >= 0 and self.periodicity_every >= 0, "ticket.eval_every/periodicity_every",
              "must be >= 0")


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
    from xlab.data import digits_task, mnist_task
    from xlab.data.modular import ticket_data
    from xlab.models import build_model
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

    from xlab.prune import make_ticket, pai_masks, random_masks, rewind_state, same_norm_state
    from xlab.train import seed_everything

    v, rate, init = cfg.ticket.variant, cfg.ticket.rate, dense["init"]
    optim = cfg.optim
    if v in ("ticket", "no_wd", "same_norm"):
        init_masked, masks = make_ticket(dense["final"], init, rate, cfg.ticket.scope)
        if v == "no_wd":
            optim = dataclasses.replace(optim, weight_decay=0.0)
        if v == "same_norm":
            state, _ = same_norm_state(init, masks)
            return state, None, optim
        return init_masked, masks, optim
    if v == "memorization":
        snap = dense["snapshots"].get(cfg.ticket.memorization_step)
        check(snap is not None, "ticket.memorization_step",
              f"the dense run has no snapshot at step {cfg.ticket.memorization_step}")
        init_masked, masks = make_ticket(snap, init, rate, cfg.ticket.scope)
        return init_masked, masks, optim
    if v == "random":
        masks = random_masks(init, rate, seed=cfg.seed + 1, scope=cfg.ticket.scope)
        return rewind_state(init, masks), masks, optim
    # Pruning at initialization scores the untrained net on the training batch.
    seed_everything(cfg.seed)
    model = task.model_fn()
    model.load_state_dict(init)
    loss_fn = torch.nn.functional.cross_entropy if task.loss == "ce" else torch.nn.functional.mse_loss
    masks = pai_masks(v, model, rate, (task.x_train, task.y_train), loss_fn=loss_fn, scope=cfg.ticket.scope)
    return rewind_state(init, masks), masks, optim


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
    from xlab.analysis.periodicity import input_map, neuron_spectra, periodicity_metrics, plot_spectra

    if cfg.data.task != "modular":
        return
    p = cfg.data.p
    every = cfg.ticket.periodicity_every
    states = {0: result.init_state, **{s: st for s, st in result.snapshots.items() if every and s % every == 0}}
    states[int(result.summary()["step"])] = result.state
    for step in sorted(states):
        spec = neuron_spectra(input_map(states[step], p))
        tracker.log_metrics({f"periodicity/{k}": v for k, v in periodicity_metrics(spec, p).items()}, step=step)
    tracker.log_figure(plot_spectra(spec, f"{title}: per-neuron spectra of W_in . W_E (final)"), "spectra.png")


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


def comparison_figure(curves: dict[str, list[dict]], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for label, hist in sorted(curves.items()):
        ax.plot([r["step"] for r in hist], [r["test/acc"] for r in hist], label=label,
                lw=2.2 if label.startswith(("dense", "ticket")) else 1.2)
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(cfg: Config) -> dict:
    import mlflow
    import pandas as pd
    from ray.tune.schedulers import ASHAScheduler

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

        t0, t1 = f"{cfg.train.grok_thresholds[0]:g}", f"{cfg.train.grok_thresholds[-1]:g}"
        client = mlflow.MlflowClient()
        rows, curves = [], {}
        for run in child_runs(pid):
            p, m = run.data.params, run.data.metrics
            label = f"{p['ticket.variant']}" + ("" if p["ticket.variant"] == "dense" else f" r{p['ticket.rate']}")
            # From the logged curve, so trials that ASHA stopped early still get their numbers.
            acc = [(h.step, h.value) for h in client.get_metric_history(run.info.run_id, "test/acc")]
            first = {t: next((s for s, v in sorted(acc) if v >= t), None) for t in cfg.train.grok_thresholds}
            cap = max((s for s, _ in acc), default=0) + 1
            rows.append({"variant": p["ticket.variant"], "rate": float(p["ticket.rate"]) if label != "dense" else 0.0,
                         "seed": int(p["seed"]), "status": run.info.status,
                         f"steps_to_{t0}": first[cfg.train.grok_thresholds[0]] or cap,
                         f"steps_to_{t1}": first[cfg.train.grok_thresholds[-1]] or cap,
                         "reached": float(first[cfg.train.grok_thresholds[0]] is not None),
                         "final_test_acc": m.get("test/acc"), "density": m.get("density", 1.0),
                         "freq_entropy": m.get("periodicity/entropy"),
                         "freq_entropy_ref": m.get("periodicity/entropy_ref")})
            if run.info.status == "FINISHED" and int(p["seed"]) == seeds[0]:
                curves[label] = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/history.json")
        table = pd.DataFrame(rows).sort_values(["variant", "rate", "seed"]).reset_index(drop=True)
        tracker = Tracker()
        tracker.log_dict(table.to_dict(orient="records"), "summary.json")
        metrics = {}
        dense = table[table.variant == "dense"]
        ticket = table[(table.variant == "ticket") & (table.rate == cfg.ticket.rate) & (table.reached == 1.0)]
        if not dense.empty:
            metrics[f"dense_steps_to_{t0}"] = float(dense[f"steps_to_{t0}"].mean())
        if not ticket.empty:
            metrics[f"ticket_steps_to_{t0}"] = float(ticket[f"steps_to_{t0}"].mean())
        if len(metrics) == 2:
            metrics[f"speedup_{t0}"] = metrics[f"dense_steps_to_{t0}"] / metrics[f"ticket_steps_to_{t0}"]
        tracker.log_metrics(metrics)
        if curves:
            tracker.log_figure(comparison_figure(curves, f"grokking tickets: {cfg.data.task} {cfg.model.name}"),
                               "comparison.png")
        if cfg.sweep.rates:
            _log_rate_plot(tracker, table, f"steps_to_{t0}")
        print(table.to_string(index=False))
        if f"speedup_{t0}" in metrics:
            print(f"speed-up dense/ticket (steps to test acc {t0}): {metrics[f'speedup_{t0}']:.1f}x")
        elif not dense.empty:
            print(f"no speed-up to report: the ticket at rate {cfg.ticket.rate} did not reach test acc {t0}")
        raise_on_errors(res2)
        return {"table": table, "metrics": metrics, "run_id": pid}


def _log_rate_plot(tracker, table, column: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table[table.variant == "ticket"].groupby("rate", as_index=False)[column].mean()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(t["rate"], t[column], "o-")
    dense = table[table.variant == "dense"][column].mean()
    ax.axhline(dense, color="k", ls=":", label="dense")
    ax.set_xlabel("pruning rate (fraction pruned)")
    ax.set_ylabel(column.replace("_", " ") + " (not reached: cap + 1)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    tracker.log_figure(fig, "rate_sweep.png")


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("grokking_tickets")
