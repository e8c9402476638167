"""ADOPT vs Adam/AMSGrad on the online convex counterexample, swept over beta2 with Ray Tune.

The problem (ADOPT paper, section 5): theta in [-1, 1], stochastic gradient k^2 with probability
1/k, else -k, so E[g] = 1 and the optimum is theta* = -1. Adam with a small beta2 drifts to the
wrong end (+1); ADOPT converges to -1 for any beta2. Each Tune trial runs one optimizer x beta2 x k
x seed, with ``toy.runs`` independent runs vectorised as the elements of one parameter tensor (all
four optimizers are elementwise, so each element is its own run), and logs the median and quartiles
of theta to its nested MLflow run. The parent run gets the summary plot (theta vs step per optimizer
and beta2, like the paper's figure) and the final-theta table.

    xlab run adopt_toy --preset smoke
    xlab run adopt_toy --preset paper            # k in {10, 50}, 2e6 steps, 5 beta2 values, 3 seeds
    xlab run adopt_toy --sweep.beta2 0.1 0.9 --toy.steps 20000
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import torch

from xlab.config import JobConfig, check
from xlab.optim import make_optimizer

Optimizer = Literal["adam", "amsgrad", "adopt", "adopt_clip"]


@dataclasses.dataclass
class ToyConfig:
    """One trial: one optimizer on the counterexample, many vectorised runs."""

    optimizer: Optimizer = "adopt"
    """adam, amsgrad, adopt (original, no clipping) or adopt_clip (default clip step**0.25)."""
    beta2: float = 0.1
    k: int = 10
    """Gradient k^2 with probability 1/k, else -k."""
    steps: int = 100_000
    runs: int = 64
    """Independent runs per trial (vectorised)."""
    lr: float = 0.01
    """Base learning rate alpha; lr_t = alpha / sqrt(1 + 0.01 t)."""
    beta1: float = 0.9
    log_every: int = 1000
    """Steps between recorded theta quantiles."""

    def __post_init__(self) -> None:
        check(0.0 <= self.beta2 < 1.0, "toy.beta2", f"must be in [0, 1), got {self.beta2}")
        check(0.0 <= self.beta1 < 1.0, "toy.beta1", f"must be in [0, 1), got {self.beta1}")
        check(self.k >= 2, "toy.k", f"must be >= 2, got {self.k}")
        check(self.steps > 0 and self.runs > 0, "toy.steps/toy.runs", "must be positive")
        check(0 < self.log_every <= self.steps, "toy.log_every", f"must be in [1, toy.steps], got {self.log_every}")


@dataclasses.dataclass
class SweepConfig:
    """The Tune grid: one trial per optimizer x beta2 x k x seed."""

    optimizers: tuple[Optimizer, ...] = ("adam", "amsgrad", "adopt", "adopt_clip")
    beta2: tuple[float, ...] = (0.1, 0.5, 0.999)
    k: tuple[int, ...] = (10,)
    seeds: tuple[int, ...] = (0,)
    cpus_per_trial: float = 1.0


@dataclasses.dataclass
class Config(JobConfig):
    toy: ToyConfig = dataclasses.field(default_factory=ToyConfig)
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)


PRESETS = {
    # Minutes on 2 cores: shows Adam at the wrong end for beta2 <= 0.5 and ADOPT at -1 for all beta2.
    "smoke": Config(toy=ToyConfig(steps=100_000, runs=64, log_every=1000)),
    # The paper's figure: k in {10, 50}, 2e6 steps, a wider beta2 grid, three seeds.
    "paper": Config(
        toy=ToyConfig(steps=2_000_000, runs=64, log_every=10_000),
        sweep=SweepConfig(beta2=(0.1, 0.5, 0.9, 0.99, 0.999), k=(10, 50), seeds=(0, 1, 2)),
    ),
}
KEY_METRICS = ["adam_small_beta2_final_theta_min", "adopt_final_theta_max"]


def build_optimizer(cfg: ToyConfig, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer in ("adam", "amsgrad"):
        return make_optimizer(cfg.optimizer, params, lr=cfg.lr, betas=betas)
    clip = {} if cfg.optimizer == "adopt_clip" else {"clip_lambda": None}
    return make_optimizer("adopt", params, lr=cfg.lr, betas=betas, **clip)


def simulate(cfg: ToyConfig, seed: int, on_log=None) -> dict[str, np.ndarray]:
    """Run the counterexample; returns steps and the median/quartiles of theta at each log point."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.zeros(cfg.runs, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(cfg, [theta])
    group = opt.param_groups[0]
    big, small, p_big = float(cfg.k**2), float(-cfg.k), 1.0 / cfg.k
    chunk = 1000
    steps, q25, q50, q75 = [], [], [], []
    for start in range(0, cfg.steps, chunk):
        # Draw a chunk of gradients at once: per-step sampling would dominate the step time.
        draws = torch.rand(min(chunk, cfg.steps - start), cfg.runs, generator=gen, dtype=torch.float64)
        grads = torch.full_like(draws, small).masked_fill_(draws < p_big, big)
        for i in range(grads.shape[0]):
            t = start + i
            group["lr"] = cfg.lr / math.sqrt(1.0 + 0.01 * t)
            theta.grad = grads[i].clone()
            opt.step()
            with torch.no_grad():
                theta.clamp_(-1.0, 1.0)  # projection onto the feasible set
            if (t + 1) % cfg.log_every == 0:
                qs = torch.quantile(theta.detach(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
                steps.append(t + 1)
                q25.append(qs[0].item())
                q50.append(qs[1].item())
                q75.append(qs[2].item())
                if on_log is not None:
                    on_log(t + 1, q25[-1], q50[-1], q75[-1])
    return {"step": np.array(steps), "q25": np.array(q25), "median": np.array(q50), "q75": np.array(q75)}


def trial(cfg: Config) -> None:
    """One Tune trial: simulate, log theta quantiles to the trial's MLflow run and to Tune."""
    import mlflow
    from ray import tune

    def on_log(step: int, q25: float, med: float, q75: float) -> None:
        mlflow.log_metrics({"theta_q25": q25, "theta_median": med, "theta_q75": q75}, step=step)
        tune.report({"step": step, "theta_median": med})

    traj = simulate(cfg.toy, cfg.seed, on_log)
    mlflow.log_dict({k: v.tolist() for k, v in traj.items()}, "trajectory.json")


def _load_trajectories(parent_run_id: str) -> list[dict]:
    """The trajectory of every finished trial under ``parent_run_id``."""
    import mlflow

    from xlab.track import child_runs

    out = []
    for run in child_runs(parent_run_id, finished_only=True):
        p = run.data.params
        traj = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/trajectory.json")
        out.append({"optimizer": p["toy.optimizer"], "beta2": float(p["toy.beta2"]), "k": int(p["toy.k"]),
                    "seed": int(p["seed"]), **{k: np.array(v) for k, v in traj.items()}})
    return out


def summary_plot(trajs: list[dict], sweep: SweepConfig):
    """Median theta vs step (quartiles shaded), one panel per (k, beta2), one line per optimizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks, betas = sorted({t["k"] for t in trajs}), sorted({t["beta2"] for t in trajs})
    fig, axes = plt.subplots(len(ks), len(betas), figsize=(3.6 * len(betas), 2.8 * len(ks)), squeeze=False,
                             sharex=True, sharey=True)
    colors = dict(zip(sweep.optimizers, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for r, k in enumerate(ks):
        for c, b2 in enumerate(betas):
            ax = axes[r][c]
            for opt in sweep.optimizers:
                runs = [t for t in trajs if t["k"] == k and t["beta2"] == b2 and t["optimizer"] == opt]
                if not runs:
                    continue
                step = runs[0]["step"]
                # Across seeds: average the per-seed quantile curves.
                med = np.mean([t["median"] for t in runs], axis=0)
                lo, hi = np.mean([t["q25"] for t in runs], axis=0), np.mean([t["q75"] for t in runs], axis=0)
                ax.plot(step, med, label=opt, color=colors.get(opt))
                ax.fill_between(step, lo, hi, alpha=0.2, color=colors.get(opt))
            ax.axhline(-1.0, color="k", lw=0.6, ls=":")
            ax.set_title(f"k={k}, beta2={b2}")
            ax.set_ylim(-1.05, 1.05)
            if r == len(ks) - 1:
                ax.set_xlabel("step")
            if c == 0:
                ax.set_ylabel("theta (median, IQR)")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Online convex counterexample: theta* = -1")
    fig.tight_layout()
    return fig


def main(cfg: Config) -> dict:
    import pandas as pd
    from rich import print as rprint

    from xlab.session import job_session
    from xlab.track import Tracker
    from xlab.tune import grid, raise_on_errors, run_sweep

    with job_session("adopt_toy", cfg) as parent:
        space = grid({"toy.optimizer": cfg.sweep.optimizers, "toy.beta2": cfg.sweep.beta2,
                      "toy.k": cfg.sweep.k, "seed": cfg.sweep.seeds})
        results = run_sweep(trial, cfg, space, parent_run_id=parent.info.run_id, metric="theta_median",
                            mode="min", cpus_per_trial=cfg.sweep.cpus_per_trial)
        trajs = _load_trajectories(parent.info.run_id)
        tracker = Tracker()
        table = (
            pd.DataFrame([{"optimizer": t["optimizer"], "k": t["k"], "beta2": t["beta2"], "seed": t["seed"],
                           "final_theta_median": t["median"][-1]} for t in trajs])
            .groupby(["optimizer", "k", "beta2"], as_index=False)["final_theta_median"].mean()
        )
        if not table.empty:
            tracker.log_figure(summary_plot(trajs, cfg.sweep), "theta_vs_step.png")
            tracker.log_dict(table.to_dict(orient="records"), "final_theta.json")
            metrics = {f"final_theta/{r.optimizer}/k{r.k}/beta2_{r.beta2}": r.final_theta_median
                       for r in table.itertuples()}
            adam = table[(table.optimizer == "adam") & (table.beta2 <= 0.5)]
            adopt = table[table.optimizer == "adopt"]
            if not adam.empty:
                # The effect in two numbers: Adam ends near +1 for small beta2, ADOPT near -1 for all.
                metrics["adam_small_beta2_final_theta_min"] = float(adam.final_theta_median.min())
            if not adopt.empty:
                metrics["adopt_final_theta_max"] = float(adopt.final_theta_median.max())
            tracker.log_metrics(metrics)
            rprint(table.pivot_table(index=["optimizer", "k"], columns="beta2", values="final_theta_median")
                   .round(3).to_string())
        raise_on_errors(results)
        return {"table": table, "run_id": parent.info.run_id}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("adopt_toy")
