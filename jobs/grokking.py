"""Grokking on modular arithmetic with Fourier progress measures (FFS/FCR), one Tune trial per operation.

Trains the 1-layer transformer of the modular-polynomials study on ``a OP b mod p`` (full batch,
AdamW with weight decay 1.0, float64 cross-entropy) and logs, every ``train.eval_every`` steps, train
and test accuracy/loss and the Fourier Frequency Sparsity (FFS) and Fourier Coefficient Ratio (FCR) of
the embedding, the unembedding and the neuron-to-logit map. Each operation in ``sweep.ops`` is one Ray
Tune trial with its own nested MLflow run (curves, Fourier plots, final spectra, checkpoint); the
parent run gets the comparison plot and the steps-to-grok table. A ``+`` joins operations into one
mixture task (``add+sub``: loss summed over both). ``sweep.optim_names``/``sweep.lrs``/... add
optimizer hyperparameters to the grid (the ADOPT sweep presets).

    xlab run grokking --preset smoke                    # add and mul mod 61: both grok in a few minutes
    xlab run grokking --preset paper                    # p = 97, every operation and mixture, 100k steps
    xlab run grokking --preset adopt-smoke              # ADOPT vs AdamW grid on a+b
    xlab run grokking --sweep.ops sub x2_y2 --train.steps 20000
"""

from __future__ import annotations

import dataclasses
import functools

from xlab.config import JobConfig, check
from xlab.optim import OptimConfig
from xlab.train import TrainConfig


@dataclasses.dataclass
class DataConfig:
    op: str = "add"
    """Operation of one trial (see xlab.studydata.modular.OPERATIONS); 'add+sub' is a mixture."""
    p: int = 61
    """Prime modulus; primes = 1 mod 4 (53, 61, 97, 113) show the cosine bias of multiplication."""
    train_frac: float = 0.4


@dataclasses.dataclass
class ModelConfig:
    name: str = "grok-transformer"
    """Model preset from xlab.models.MODELS."""
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_layers: int = 1


@dataclasses.dataclass
class SweepConfig:
    """The Tune grid: operations x optimizer settings (empty tuple = keep the base value)."""

    ops: tuple[str, ...] = ("add",)
    optim_names: tuple[str, ...] = ()
    lrs: tuple[float, ...] = ()
    beta1s: tuple[float, ...] = ()
    beta2s: tuple[float, ...] = ()
    epss: tuple[float, ...] = ()
    weight_decays: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    asha: bool = False
    """Stop trials that are not generalizing early (ASHA on test accuracy)."""
    cpus_per_trial: float = 1.0
    fourier_eps: float = 0.5
    """FFS threshold: a frequency counts if its norm exceeds eps x the largest."""


@dataclasses.dataclass
class Config(JobConfig):
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(
        default_factory=lambda: OptimConfig(name="adamw", lr=1e-3, beta1=0.9, beta2=0.98, weight_decay=1.0)
    )
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(steps=10_000, eval_every=250, stop_after_grok=1000)
    )
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)

    def __post_init__(self) -> None:
        check(bool(self.sweep.ops), "sweep.ops", "name at least one operation")


PAPER_OPS = (
    "add", "sub", "mul", "mul_nonzero", "x2_y2", "x2_xy_y2", "x2_xy_y2_x", "x3_xy", "x3_xy2_y", "2x_y", "xy_y",
    "x2_y", "2x_3y", "x3_2y", "x2_2xy_y2", "x2_2xy_y2_x_y", "xy_x_y", "x_y_3", "x_y_4", "2x_m_y", "xy_m_y",
    "x2_m_y", "2x_m_3y", "x3_m_2y", "x2_m_y2", "x2_m_2xy_y2", "xy_x_m_y", "x_m_y_3", "x_m_y_4",
    "add+sub", "add+mul", "add+sub+mul",
)

PRESETS = {
    # 2 cores, a few minutes: addition and multiplication mod 61 grok (test acc chance -> > 0.95 long
    # after train acc hits 1.0); FFS of the embedding falls for add, stays high for mul.
    "smoke": Config(sweep=SweepConfig(ops=("add", "mul")),
                    train=TrainConfig(steps=6000, eval_every=250, stop_after_grok=500)),
    # The spec's tiny CPU protocol: add, sub, mul, x^2+y^2 for 10k steps (about 15 minutes on 2 cores).
    "cpu": Config(sweep=SweepConfig(ops=("add", "sub", "mul", "x2_y2")),
                  train=TrainConfig(steps=10_000, eval_every=250)),
    # The published set-up (GPU cluster): p = 97, train fraction 0.3, up to 100k steps, every operation.
    "paper": Config(data=DataConfig(p=97, train_frac=0.3), sweep=SweepConfig(ops=PAPER_OPS),
                    train=TrainConfig(steps=100_000, eval_every=500, use_gpu=True)),
    # ADOPT vs AdamW on a+b mod 61: a small grid of lr x beta2 x weight decay.
    "adopt-smoke": Config(
        sweep=SweepConfig(optim_names=("adamw", "adopt"), lrs=(1e-3,), beta2s=(0.98, 0.999), weight_decays=(1.0,)),
        train=TrainConfig(steps=6000, eval_every=250, stop_after_grok=250),
    ),
    "adopt-paper": Config(
        data=DataConfig(p=97, train_frac=0.3),
        sweep=SweepConfig(optim_names=("adamw", "adopt"), lrs=(3e-4, 1e-3, 3e-3), beta1s=(0.9, 0.95),
                          beta2s=(0.98, 0.999, 0.9999), epss=(1e-8, 1e-6), weight_decays=(0.1, 1.0), seeds=(0, 1, 2),
                          asha=True),
        train=TrainConfig(steps=50_000, eval_every=500, stop_after_grok=1000, use_gpu=True),
    ),
}
KEY_METRICS = ["steps_to_0.95", "test/acc"]


def build_task(cfg: Config):
    """The Task of one trial: data split, model factory, Fourier hooks."""
    from xlab.analysis.fourier import fourier_metrics
    from xlab.models import build_model
    from xlab.studydata.modular import make_modular_data
    from xlab.train import Task

    ops = cfg.data.op.split("+")
    data = make_modular_data(ops, cfg.data.p, cfg.data.train_frac, seed=cfg.seed)
    model_fn = functools.partial(
        build_model, cfg.model.name, d_vocab=data.vocab_size, n_out=data.p, d_model=cfg.model.d_model,
        n_heads=cfg.model.n_heads, d_head=cfg.model.d_model // cfg.model.n_heads, d_mlp=cfg.model.d_mlp,
        n_layers=cfg.model.n_layers, n_ctx=data.seq_len,
    )
    return Task(
        name=cfg.data.op, x_train=data.train.x, y_train=data.train.y, x_test=data.test.x, y_test=data.test.y,
        model_fn=model_fn, groups_test=data.test.task if len(ops) > 1 else None,
        group_names=data.ops if len(ops) > 1 else (),
        eval_hooks=(functools.partial(fourier_metrics, p=data.p, eps=cfg.sweep.fourier_eps),),
    ), data


def grokking_delay(history: list[dict], threshold: float = 0.95) -> dict[str, float]:
    """Steps to train acc 1.0, to test acc >= threshold, and the gap between them (the grokking delay)."""
    total = history[-1]["step"] if history else 0
    train_fit = next((r["step"] for r in history if r["train/acc"] >= 1.0), None)
    test_fit = next((r["step"] for r in history if r["test/acc"] >= threshold), None)
    return {
        "steps_to_train_1.0": float(train_fit if train_fit is not None else total + 1),
        "grok_delay": float(test_fit - train_fit) if test_fit is not None and train_fit is not None else float("nan"),
        "test_acc_at_train_fit": float(next((r["test/acc"] for r in history if r["step"] == train_fit), float("nan"))),
    }


def trial(cfg: Config) -> None:
    """One Tune trial: train one operation (or mixture), log curves, spectra and the checkpoint."""
    import tempfile

    from xlab.analysis.fourier import model_spectra, plot_spectrum
    from xlab.checkpoint import save_checkpoint
    from xlab.track import Tracker
    from xlab.train import fit, run_key
    from xlab.train.plots import curves_figure

    task, data = build_task(cfg)
    tracker = Tracker()
    result = fit(task, cfg.train, cfg.optim, seed=cfg.seed, tracker=tracker, name=cfg.data.op, key=run_key(cfg))
    summary = {**result.summary(), **grokking_delay(result.history, cfg.train.grok_thresholds[0])}
    tracker.log_metrics({k: v for k, v in summary.items() if k != "step"}, step=int(summary["step"]))
    tracker.log_dict(result.history, "history.json")
    tracker.log_figure(curves_figure(result.history, f"{cfg.data.op} mod {cfg.data.p}"), "curves.png")
    model = task.model_fn()
    model.load_state_dict(result.state)
    spectra = model_spectra(model, data.p)
    tracker.log_dict({k: {n: v.tolist() for n, v in zip("csn", s, strict=True)} for k, s in spectra.items()},
                     "fourier_spectra.json")
    for part, (c, s, _) in spectra.items():
        tracker.log_figure(plot_spectrum(c, s, f"{cfg.data.op}: {part} Fourier spectrum (final)"),
                           f"spectrum_{part}.png")
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint({"model": result.state, "init": result.init_state, "config": dataclasses.asdict(cfg)},
                        f"{d}/model.pt")
        tracker.log_artifact(f"{d}/model.pt", "checkpoint")


def _grid(cfg: Config) -> dict[str, tuple]:
    s = cfg.sweep
    axes = {"data.op": s.ops, "optim.name": s.optim_names, "optim.lr": s.lrs, "optim.beta1": s.beta1s,
            "optim.beta2": s.beta2s, "optim.eps": s.epss, "optim.weight_decay": s.weight_decays, "seed": s.seeds}
    return {k: v for k, v in axes.items() if v}


def comparison_figure(rows: list[tuple[str, list[dict]]]):
    """Test accuracy and embedding FFS vs step, one line per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, hist in rows:
        steps = [r["step"] for r in hist]
        axes[0].plot(steps, [r["test/acc"] for r in hist], label=label)
        if "fourier/embed_ffs" in hist[0]:
            axes[1].plot(steps, [r["fourier/embed_ffs"] for r in hist], label=label)
    axes[0].set_title("test accuracy")
    axes[1].set_title("FFS of the embedding")
    for ax in axes:
        ax.set_xlabel("step")
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

    with job_session("grokking", cfg) as parent:
        axes = _grid(cfg)
        scheduler = None
        if cfg.sweep.asha:
            scheduler = ASHAScheduler(time_attr="step", max_t=cfg.train.steps,
                                      grace_period=max(cfg.train.steps // 4, cfg.train.eval_every), reduction_factor=2)
        results = run_sweep(trial, cfg, grid(axes), parent_run_id=parent.info.run_id, metric="test_acc", mode="max",
                            scheduler=scheduler, cpus_per_trial=cfg.sweep.cpus_per_trial, train=cfg.train)
        rows, curves = [], []
        for run in child_runs(parent.info.run_id):
            label = ",".join(f"{k.split('.')[-1]}={run.data.params.get(k)}" for k in axes)
            m = run.data.metrics
            rows.append({"trial": label, "status": run.info.status, "steps_to_0.95": m.get("steps_to_0.95"),
                         "steps_to_0.99": m.get("steps_to_0.99"), "steps_to_train_1.0": m.get("steps_to_train_1.0"),
                         "test_acc": m.get("test/acc"), "embed_ffs": m.get("fourier/embed_ffs"),
                         "embed_fcr": m.get("fourier/embed_fcr")})
            if run.info.status == "FINISHED":
                curves.append((label, mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/history.json")))
        table = pd.DataFrame(rows).sort_values("trial").reset_index(drop=True)
        tracker = Tracker()
        tracker.log_dict(table.to_dict(orient="records"), "summary.json")
        if curves:
            tracker.log_figure(comparison_figure(sorted(curves)), "comparison.png")
        finished = table[table.status == "FINISHED"]
        if not finished.empty:
            tracker.log_metrics({"trials_grokked": float((finished["steps_to_0.95"] <= cfg.train.steps).sum()),
                                 "best_steps_to_0.95": float(finished["steps_to_0.95"].min())})
        print(table.to_string(index=False))
        raise_on_errors(results)
        return {"table": table, "run_id": parent.info.run_id}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("grokking")
