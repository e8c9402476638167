"""What one simulated evaluation reports: the tasks it runs, its metrics, plot, image strips and console table.

    tasks = select_tasks((), ("sawyer", "fetch"))                 # every registered task of the embodiments
    metrics = eval_metrics(summarize(results), results, stats, server_stats, main_controller="policy")
    log_evaluation(run_id, rows, results, stats, server_stats, metrics, strips_per_task=1)
    print(console_summary(rows, stats, server_stats, n_tasks=len(tasks)))

Used by ``jobs/eval_policy.py``; success rates and Wilson intervals come from
:func:`xlab.serve.evaluate.summarize`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xlab.config import check

if TYPE_CHECKING:
    from xlab.serve.evaluate import RunStats
    from xlab.serve.simulator import EpisodeResult


def select_tasks(tasks: Sequence[str], embodiments: Sequence[str], field: str = "eval.embodiments") -> list[str]:
    """``tasks`` checked against the registry, or (when empty) every registered task of ``embodiments``."""
    import robots

    if tasks:
        for t in tasks:
            robots.get_task(t)  # unknown id -> UnknownRobotEnvError listing the registered ones
        return list(tasks)
    known = sorted({s.embodiment for s in robots.TASKS.values()})
    check(set(embodiments) <= set(known), field, f"choose from {known}, got {tuple(embodiments)}")
    return [e for e in robots.ENV_IDS if robots.get_task(e).embodiment in embodiments]


def eval_metrics(rows: Sequence[Mapping[str, Any]], results: Sequence[EpisodeResult], stats: RunStats,
                 server_stats: Mapping[str, Any] | None, main_controller: str) -> dict[str, float]:
    """Flat MLflow metrics: episode and fault counts, success rate with CI per task, embodiment and overall
    (``<controller>/success/...`` for the reference controllers), server batch size and action latency."""
    import numpy as np

    metrics: dict[str, float] = {
        "episodes": len(results), "episodes_retried": stats.retried_episodes,
        "episodes_failed": stats.failed_episodes, "simulator_crashes": stats.simulator_crashes,
        "simulator_hangs": stats.simulator_hangs, "server_retries": stats.server_retries,
        "env_steps_per_s": stats.steps_per_s, "seconds": stats.seconds,
    }
    for r in rows:
        prefix = "success" if r["controller"] == main_controller else f"{r['controller']}/success"
        name = r["name"].split("/", 1)[1] if r["level"] == "task" else r["name"]
        metrics[f"{prefix}/{name}"] = r["success_rate"]
        if r["level"] != "all":
            metrics[f"{prefix}_ci_low/{name}"] = r["ci_low"]
            metrics[f"{prefix}_ci_high/{name}"] = r["ci_high"]
    if server_stats:
        if server_stats["batches"]:  # the live replica's count: a replica that died took its own with it
            metrics["mean_batch_size"] = server_stats["mean_batch"]
        lat = [x for r in results if r.controller == "policy" for x in r.latencies_ms]
        if lat:
            metrics["action_latency_p50_ms"] = float(np.percentile(lat, 50))
            metrics["action_latency_p99_ms"] = float(np.percentile(lat, 99))
    return metrics


def success_plot(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Success rate per task, one bar per controller, with Wilson 95% intervals."""
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = sorted({r["name"] for r in rows if r["level"] == "task"})
    controllers = sorted({r["controller"] for r in rows}, key=lambda c: (c != "policy", c))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(tasks)), 4))
    x = np.arange(len(tasks))
    w = 0.8 / len(controllers)
    for i, c in enumerate(controllers):
        by = {r["name"]: r for r in rows if r["level"] == "task" and r["controller"] == c}
        rate = np.array([by[t]["success_rate"] if t in by else np.nan for t in tasks])
        lo = np.array([by[t]["ci_low"] if t in by else np.nan for t in tasks])
        hi = np.array([by[t]["ci_high"] if t in by else np.nan for t in tasks])
        ax.bar(x + (i - (len(controllers) - 1) / 2) * w, rate, w, yerr=[rate - lo, hi - rate], capsize=3, label=c)
    ax.set_xticks(x, [t.split("/", 1)[1].removesuffix("-v0") for t in tasks], rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (Wilson 95% CI)")
    ax.legend()
    fig.tight_layout()
    return fig


def frame_strip(frames: Any, max_frames: int = 12) -> Any:
    """Up to ``max_frames`` evenly spaced frames of an episode side by side (one image)."""
    import numpy as np

    frames = np.asarray(frames)
    idx = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int)
    return np.concatenate(list(frames[idx]), axis=1)


def log_evaluation(run_id: str, rows: Sequence[Mapping[str, Any]], results: Sequence[EpisodeResult],
                   stats: RunStats, server_stats: Mapping[str, Any] | None, metrics: Mapping[str, float],
                   strips_per_task: int) -> None:
    """Log metrics, the success table and plot, run statistics and the first ``strips_per_task`` episodes'
    image strips per task and controller to MLflow run ``run_id``."""
    import mlflow
    import pandas as pd

    from xlab.track import Tracker

    tracker = Tracker(run_id)
    tracker.log_metrics(metrics)
    tracker.log_table(pd.DataFrame(list(rows)), "success.json")
    tracker.log_figure(success_plot(rows), "success.png")
    tracker.log_dict({"events": stats.events, "server": server_stats}, "run_stats.json")
    client = mlflow.MlflowClient()
    for r in results:
        index = int(r.episode_id.rsplit("/", 1)[-1])
        if r.frames is not None and len(r.frames) and index < strips_per_task:
            tag = "success" if r.success else "fail"
            client.log_image(run_id, frame_strip(r.frames), f"strips/{r.episode_id.replace('/', '_')}_{tag}.png")


def record_rlds(root: str, results: Sequence[EpisodeResult], policy_ref: str) -> dict[str, dict]:
    """Write the recorded episodes of ``results`` as one RLDS dataset per embodiment under ``root``
    (``xlab_eval_<embodiment>``; state and action shapes differ between robots); embodiment -> write info."""
    import robots
    from xlab.rlds import write_rlds_in_worker

    by_embodiment: dict[str, list] = {}
    for r in results:
        if r.episode is not None:
            by_embodiment.setdefault(robots.get_task(r.env_id).embodiment, []).append(r.episode)
    return {emb: write_rlds_in_worker(root, f"xlab_eval_{emb}", episodes,
                                      description=f"xlab evaluation rollouts of {policy_ref} ({emb})")
            for emb, episodes in by_embodiment.items()}


def console_summary(rows: Sequence[Mapping[str, Any]], stats: RunStats, server_stats: Mapping[str, Any] | None,
                    n_tasks: int) -> str:
    """The success table (per embodiment and overall only when there are more than 8 tasks), the run's
    totals and its fault events, for the console."""
    import pandas as pd

    table = pd.DataFrame(list(rows))
    shown = table[table.level != "task"] if n_tasks > 8 else table
    cols = ["controller", "level", "name", "episodes", "success_rate", "ci_low", "ci_high", "failed", "retried"]
    lines = [shown[cols].round(2).to_string(index=False),
             f"[eval_policy] {stats.episodes} episodes in {stats.seconds:.0f}s ({stats.steps_per_s:.0f} env steps/s), "
             f"retried {stats.retried_episodes}, failed {stats.failed_episodes}"
             + (f", mean server batch {server_stats['mean_batch']:.1f}" if server_stats else "")]
    lines += [f"[eval_policy] {e}" for e in stats.events]
    return "\n".join(lines)
