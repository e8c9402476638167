"""Which levers make the demo policy work: the recipe with one lever off at a time, trained and tested in simulation.

The demo recipe (``train_policy --preset demo``) turns on several things RT-1 does not do: action
chunks executed with temporal ensembling, random-shift augmentation, a position code on the image
features, a warm-up + cosine learning-rate schedule, and no training window on an episode's last
step. This job is a Ray Tune grid over variants x seeds: ``recipe`` (all on), one variant per lever
with that lever off, and ``with-state`` (proprioception added, which RT-1 does not use). Each trial
trains on the same datasets with the same seed (:func:`xlab.policies.experiment.train_and_evaluate`)
and is rolled out on the same evaluation episodes; each trial's nested MLflow run has its curves,
success per task and the policy; the parent run has the table (mean and range over seeds) and the
plot.

    xlab run collect_demos --preset demo               # first: data/rlds/xlab_{sawyer,fetch}/0.1.0
    xlab run policy_ablation --preset smoke            # 8 variants x 1 seed, 1,500 steps each
    xlab run policy_ablation --experiment.seeds 0 1 2 --experiment.variants recipe no-chunking
    # the README's grid: 8 variants x 3 seeds, 1 h 52 min on 2 quiet cores (one worker with 2 threads a trial)
    xlab run policy_ablation --preset smoke --experiment.seeds 0 1 2 \
        --train.num_workers 1 --train.threads_per_worker 2 --train.cpus_per_worker 0.9
"""

from __future__ import annotations

import dataclasses
from typing import Any

from robots.tasks import DEMO_TASKS
from xlab.config import check
from xlab.optim import OptimConfig
from xlab.policies.training import DataConfig, PolicyConfig, PolicyJobConfig, PolicyTrainConfig

#: Each variant: the config overrides (dotted names) and the chunk execution of its evaluation.
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "recipe": ({}, "ensemble"),
    "no-chunking": ({"policy.action_chunk": 1}, "first"),
    "open-loop-chunks": ({}, "open-loop"),
    "no-augmentation": ({"train.augment_shift": 0}, "ensemble"),
    "no-position-code": ({"policy.image_pos_embedding": "off"}, "ensemble"),
    "constant-lr": ({"train.lr_schedule": "constant", "train.warmup_steps": 0}, "ensemble"),
    "keep-last-step": ({"data.drop_last": False}, "ensemble"),
    "with-state": ({"policy.state_dim": 10}, "ensemble"),
}


@dataclasses.dataclass
class ExperimentConfig:
    variants: tuple[str, ...] = tuple(VARIANTS)
    """Variants to train (see VARIANTS): the recipe and the recipe with one lever changed."""
    variant: str = "recipe"
    """The variant of the current trial (set by the sweep)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds per variant (each variant x seed is one trial)."""
    eval_tasks: tuple[str, ...] = DEMO_TASKS
    episodes: int = 10
    """Episodes per evaluation task."""
    eval_seed: int = 123
    """Seed of the evaluation episodes (the same for every trial: a paired comparison)."""

    def __post_init__(self) -> None:
        unknown = [v for v in (*self.variants, self.variant) if v not in VARIANTS]
        check(not unknown, "experiment.variants", f"unknown {unknown}; choose from {', '.join(VARIANTS)}")
        check(self.episodes >= 1, "experiment.episodes", f"must be >= 1, got {self.episodes}")
        check(len(self.seeds) >= 1, "experiment.seeds", "give at least one seed")


def _recipe() -> tuple[DataConfig, PolicyConfig, OptimConfig, PolicyTrainConfig]:
    from jobs.train_policy import PRESETS

    demo = PRESETS["demo"]
    return demo.data, demo.policy, demo.optim, demo.train


@dataclasses.dataclass
class Config(PolicyJobConfig):
    data: DataConfig = dataclasses.field(default_factory=lambda: _recipe()[0])
    policy: PolicyConfig = dataclasses.field(default_factory=lambda: _recipe()[1])
    optim: OptimConfig = dataclasses.field(default_factory=lambda: _recipe()[2])
    train: PolicyTrainConfig = dataclasses.field(default_factory=lambda: _recipe()[3])
    experiment: ExperimentConfig = dataclasses.field(default_factory=ExperimentConfig)


PRESETS = {
    # Every variant once, 1,500 steps (the demo trains 3,000), no evaluation during training: 5.5-16 min a trial
    # on 2 cores at load 15-35 (2026-12-03; see docs/serving.md).
    "smoke": Config(
        # 0.45 CPU per worker: the Tune trial holds 0.1 and a Ray Data read task a whole CPU (cross_embodiment).
        train=dataclasses.replace(_recipe()[3], steps=1500, eval_every=0, cpus_per_worker=0.45),
        experiment=ExperimentConfig(episodes=10),
    ),
    # The demo's full length, three seeds, 20 episodes per task.
    "paper": Config(experiment=ExperimentConfig(seeds=(0, 1, 2), episodes=20),
                    train=dataclasses.replace(_recipe()[3], eval_every=0, cpus_per_worker=0.45)),
}
KEY_METRICS = ["success/mean"]


def trial(cfg: Config) -> dict[str, float]:
    """Train and evaluate the variant ``experiment.variant`` of the recipe."""
    from xlab.config import apply_overrides
    from xlab.policies.experiment import train_and_evaluate, tune_keys
    from xlab.track import Tracker

    variant = cfg.experiment.variant
    overrides, execution = VARIANTS[variant]
    cfg = apply_overrides(cfg, overrides)
    Tracker().set_tags({"xlab.variant": variant})
    metrics = train_and_evaluate(cfg, cfg.experiment.eval_tasks, cfg.experiment.episodes, cfg.experiment.eval_seed,
                                 execution=execution, job="policy_ablation", label=variant)
    return {"variant": variant, **tune_keys(metrics)}


def ablation_table(rows: list[dict[str, Any]], order: tuple[str, ...]) -> Any:
    """Success per variant: mean over seeds, with min and max of the mean success, in ``order``."""
    import pandas as pd

    df = pd.DataFrame(rows)
    cols = [c for c in df.columns if c.startswith("success_")]
    table = df.groupby("variant")[cols].mean()
    table["mean_min"] = df.groupby("variant")["success_mean"].min()
    table["mean_max"] = df.groupby("variant")["success_mean"].max()
    table["seeds"] = df.groupby("variant")["success_mean"].count()
    table = table.reindex([v for v in order if v in table.index]).reset_index()
    return table.rename(columns=lambda c: c.removeprefix("success_"))


def ablation_plot(table: Any) -> Any:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(table))
    mean = table["mean"].to_numpy()
    ax.bar(x, mean, yerr=[mean - table["mean_min"], table["mean_max"] - mean], capsize=3)
    ax.set_xticks(x, table["variant"], rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (mean over tasks; bars: seed range)")
    fig.tight_layout()
    return fig


def main(cfg: Config) -> dict:
    from xlab.policies.training import check_dataset_dirs
    from xlab.session import job_session
    from xlab.track import Tracker
    from xlab.tune import grid, raise_on_errors, run_sweep

    # Before Ray starts (a one-line error), and absolute: Tune trials run in their own working dirs.
    dirs = tuple(str(d) for d in check_dataset_dirs(cfg.data.dataset_dirs))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset_dirs=dirs))
    exp = cfg.experiment
    with job_session("policy_ablation", cfg) as parent:
        space = grid({"experiment.variant": list(exp.variants), "seed": list(exp.seeds)})
        results = run_sweep(trial, cfg, space, parent_run_id=parent.info.run_id, metric="success_mean", mode="max",
                            train=cfg.train, max_concurrent_trials=1)
        rows = [dict(r.metrics) for r in results if r.metrics and "variant" in r.metrics]
        out: dict[str, Any] = {"run_id": parent.info.run_id, "table": None}
        if rows:
            table = ablation_table(rows, exp.variants)
            tracker = Tracker()
            tracker.log_table(table, "ablation.json")
            tracker.log_figure(ablation_plot(table), "ablation.png")
            tracker.log_metrics({f"success/{v}": m for v, m in zip(table["variant"], table["mean"], strict=True)})
            print(table.round(2).to_string(index=False, line_width=250))
            out["table"] = table
        raise_on_errors(results)
        return out


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("policy_ablation")
