"""Cross-embodiment transfer (the RT-X claim, small scale): one embodiment alone vs the mixture, in simulation.

Open X-Embodiment's claim is that a policy trained on a mixture of robots does at least as well on
each robot as one trained on that robot alone (positive transfer). This job trains one RT-1-X
policy per mixture weight ``w`` of the first dataset (the second gets ``1 - w``): ``w = 1`` is the
first embodiment alone, ``w = 0`` the second alone, values between are mixtures. The weights are a
Ray Tune grid; each trial is a Ray Train run (:func:`xlab.policies.training.fit_policy`, same loop
as ``train_policy``), then the trial's policy is rolled out in the simulators of BOTH embodiments
(:func:`xlab.policies.rollout.evaluate_in_ray`, batched, one Ray task per task, no TensorFlow in
the rendering processes) and its success rates go to the trial's nested MLflow run, with the policy
itself (``runs:/<trial run>/policy``, so ``eval_policy`` can re-evaluate it). The parent run gets
the side-by-side table and the comparison plot (success per embodiment vs mixture weight).

    xlab run collect_demos --preset demo               # first: data/rlds/xlab_{sawyer,fetch}/0.1.0
    xlab run cross_embodiment --preset smoke           # w in {1, 0.5, 0} x 3 seeds, the demo recipe
    xlab run cross_embodiment --preset paper           # 5 weights x 3 seeds, rt1x-small, GPU workers
    xlab run cross_embodiment --experiment.weights 1 0.75 0.5 0.25 0 --experiment.episodes 20
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from robots.tasks import DEMO_TASKS
from xlab.config import check
from xlab.optim import OptimConfig
from xlab.policies.training import DataConfig, PolicyConfig, PolicyJobConfig, PolicyTrainConfig


@dataclasses.dataclass
class ExperimentConfig:
    weights: tuple[float, ...] = (1.0, 0.5, 0.0)
    """Mixture weights of the first dataset (the second gets 1 - w); one trained policy each."""
    weight: float = 0.5
    """The weight of the current trial (set by the sweep from ``weights``)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds per weight (each weight x seed is one trial)."""
    eval_tasks: tuple[str, ...] = DEMO_TASKS
    """Env ids the policies are evaluated on (tasks of both embodiments; the demo's: its data has them)."""
    episodes: int = 10
    """Episodes per evaluation task."""
    eval_seed: int = 123
    """Seed of the evaluation episodes (the same for every trial: paired comparison)."""
    max_concurrent_trials: int = 1
    """Trials at once (0: as many as resources allow; keep 1 on a laptop, where Ray Data needs CPUs too)."""

    def __post_init__(self) -> None:
        check(len(self.weights) >= 1 and all(0.0 <= w <= 1.0 for w in self.weights), "experiment.weights",
              f"give one or more weights in [0, 1], got {self.weights}")
        check(0.0 <= self.weight <= 1.0, "experiment.weight", f"must be in [0, 1], got {self.weight}")
        check(len(self.eval_tasks) >= 1, "experiment.eval_tasks", "name at least one env id")
        check(self.episodes >= 1, "experiment.episodes", f"must be >= 1, got {self.episodes}")
        check(self.max_concurrent_trials >= 0, "experiment.max_concurrent_trials", "must be >= 0")


@dataclasses.dataclass
class Config(PolicyJobConfig):
    experiment: ExperimentConfig = dataclasses.field(default_factory=ExperimentConfig)

    def __post_init__(self) -> None:
        check(len(self.data.dataset_dirs) == 2, "data.dataset_dirs",
              f"the experiment compares two datasets (one per embodiment), got {len(self.data.dataset_dirs)}")


PRESETS = {
    # The demo recipe (train_policy --preset demo: rt1x-demo, chunks, augmentation, cosine) at 1,500 steps
    # per policy, on the demo data (collect_demos --preset demo), 3 weights x 3 seeds.
    "smoke": Config(
        data=DataConfig(shuffle_buffer=2048, cache=True),
        policy=PolicyConfig(preset="rt1x-demo"),
        optim=OptimConfig(name="adamw", lr=1e-3, eps=1e-7, weight_decay=0.01),
        # 0.45 CPU per worker: the Tune trial holds 0.1, and a Ray Data read task needs a whole CPU
        # of the two (with 0.5 each the read task never gets one: the run stalls).
        train=PolicyTrainConfig(steps=1500, batch_size=32, num_workers=2, cpus_per_worker=0.45, log_every=25,
                                checkpoint_every=500, lr_schedule="cosine", warmup_steps=100, augment_shift=4),
        experiment=ExperimentConfig(weights=(1.0, 0.5, 0.0), seeds=(0, 1, 2), episodes=10),
    ),
    # Five mixture weights x three seeds, rt1x-small, every task of both embodiments, on GPU workers.
    "paper": Config(
        policy=PolicyConfig(preset="rt1x-small"),
        optim=OptimConfig(name="adam", lr=1e-4, eps=1e-7),
        train=PolicyTrainConfig(steps=20_000, batch_size=128, num_workers=2, cpus_per_worker=4,
                                threads_per_worker=0, use_gpu=True, log_every=100, checkpoint_every=2000),
        experiment=ExperimentConfig(
            weights=(1.0, 0.75, 0.5, 0.25, 0.0), seeds=(0, 1, 2), episodes=50, max_concurrent_trials=0,
            eval_tasks=("xlab/sawyer-reach-v0", "xlab/sawyer-push-v0", "xlab/sawyer-pick-place-v0",
                        "xlab/sawyer-door-open-v0", "xlab/sawyer-drawer-open-v0", "xlab/sawyer-drawer-close-v0",
                        "xlab/sawyer-button-press-topdown-v0", "xlab/sawyer-window-open-v0",
                        "xlab/sawyer-window-close-v0", "xlab/fetch-reach-v0", "xlab/fetch-push-v0",
                        "xlab/fetch-pick-place-v0", "xlab/fetch-slide-v0"),
        ),
    ),
}
KEY_METRICS = ["success/mixture_gain_min", "success/mean"]


def embodiment_of(env_id: str) -> str:
    import robots

    return robots.get_task(env_id).embodiment


def variant_label(weight: float, names: Sequence[str]) -> str:
    if weight >= 1.0:
        return f"{names[0]} only"
    if weight <= 0.0:
        return f"{names[1]} only"
    return f"mix {weight:g}/{1 - weight:g}"


def trial(cfg: Config) -> dict[str, float]:
    """Train one policy on mixture weight ``experiment.weight`` and evaluate it on every eval task."""
    from xlab.policies.experiment import train_and_evaluate, tune_keys
    from xlab.policies.training import dataset_names
    from xlab.track import Tracker

    w = cfg.experiment.weight
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, weights=(w, 1.0 - w)))
    label = variant_label(w, dataset_names(cfg.data.dataset_dirs))
    Tracker().set_tags({"xlab.variant": label})
    metrics = train_and_evaluate(cfg, cfg.experiment.eval_tasks, cfg.experiment.episodes, cfg.experiment.eval_seed,
                                 job="cross_embodiment", label=label)
    Tracker().log_metrics({"weight": w})
    return tune_keys({"weight": w, **metrics})


def comparison_table(rows: Sequence[dict[str, Any]], eval_tasks: Sequence[str], names: Sequence[str]) -> Any:
    """Success per variant (mean over seeds): one row per weight, columns per embodiment and task."""
    import pandas as pd

    df = pd.DataFrame(rows)
    cols = [c for c in df.columns if c.startswith("success_")]
    table = df.groupby("weight", as_index=False)[cols + ["train_token_acc"]].mean()
    table["seeds"] = df.groupby("weight")["weight"].count().to_numpy()
    table.insert(0, "variant", [variant_label(w, names) for w in table["weight"]])
    return table.sort_values("weight", ascending=False).reset_index(drop=True)


def comparison_plot(table: Any, embodiments: Sequence[str], eval_tasks: Sequence[str]) -> Any:
    """Left: success per embodiment for each variant (grouped bars). Right: per task vs mixture weight."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(table))
    width = 0.8 / max(len(embodiments), 1)
    for i, emb in enumerate(embodiments):
        col = f"success_{emb}"
        if col in table:
            ax1.bar(x + (i - (len(embodiments) - 1) / 2) * width, table[col], width, label=f"on {emb} tasks")
    ax1.set_xticks(x, table["variant"], rotation=15)
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("success rate")
    ax1.set_title("Trained on (x) -> evaluated on (colour)")
    ax1.legend()
    for env_id in eval_tasks:
        col = "success_" + env_id.split("/", 1)[1].replace("-", "_")
        if col in table:
            ax2.plot(table["weight"], table[col], marker="o", label=env_id.split("/", 1)[1])
    ax2.set_xlabel("mixture weight of the first dataset (1 = first alone, 0 = second alone)")
    ax2.set_ylabel("success rate")
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_title("Per task vs mixture weight")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def transfer_gains(table: Any, names: Sequence[str], embodiments: Sequence[str]) -> dict[str, float]:
    """Mixture minus single-embodiment success, per embodiment (positive = positive transfer)."""
    out: dict[str, float] = {}
    mixes = table[(table.weight > 0) & (table.weight < 1)]
    for emb, single_w in ((embodiments[0], 1.0), (embodiments[-1], 0.0)):
        col = f"success_{emb}"
        single = table[table.weight == single_w]
        if mixes.empty or single.empty or col not in table:
            continue
        out[f"success/mixture_gain/{emb}"] = float(mixes[col].max() - single[col].iloc[0])
    if out:
        out["success/mixture_gain_min"] = min(out.values())
    return out


def main(cfg: Config) -> dict:
    from rich import print as rprint

    from xlab.policies.training import check_dataset_dirs, dataset_names
    from xlab.session import job_session
    from xlab.track import Tracker
    from xlab.tune import grid, raise_on_errors, run_sweep

    # Before Ray starts (a one-line error), and absolute: Tune trials run in their own working dirs.
    dirs = tuple(str(d) for d in check_dataset_dirs(cfg.data.dataset_dirs))
    names = dataset_names(cfg.data.dataset_dirs)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset_dirs=dirs))
    exp = cfg.experiment
    embodiments = list(dict.fromkeys(embodiment_of(e) for e in exp.eval_tasks))
    with job_session("cross_embodiment", cfg) as parent:
        space = grid({"experiment.weight": list(exp.weights), "seed": list(exp.seeds)})
        results = run_sweep(trial, cfg, space, parent_run_id=parent.info.run_id, metric="success_mean", mode="max",
                            train=cfg.train, max_concurrent_trials=exp.max_concurrent_trials or None)
        rows = [dict(r.metrics) for r in results if r.metrics and "weight" in r.metrics]
        tracker = Tracker()
        out: dict[str, Any] = {"run_id": parent.info.run_id, "table": None}
        if rows:
            table = comparison_table(rows, exp.eval_tasks, names)
            tracker.log_figure(comparison_plot(table, embodiments, exp.eval_tasks), "cross_embodiment.png")
            tracker.log_table(table, "cross_embodiment.json")
            gains = transfer_gains(table, names, embodiments)
            tracker.log_metrics(gains)
            shown = table[["variant"] + [c for c in table.columns if c.startswith("success_")]]
            shown = shown.rename(columns=lambda c: c.removeprefix("success_"))  # success rates, 0..1
            print(shown.round(2).to_string(index=False, line_width=250))
            for k, v in gains.items():
                rprint(f"{k}: {v:+.2f}")
            out.update(table=table, gains=gains)
        raise_on_errors(results)
        return out


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("cross_embodiment")
