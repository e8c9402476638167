"""Record scripted-expert demonstrations from simulated robots as Open X-Embodiment RLDS datasets.

Experts for every registered task of each embodiment (MetaWorld Sawyer MT10, gymnasium-robotics
Fetch) run on many simulators in parallel as Ray tasks; each embodiment becomes one RLDS dataset
(`<output_dir>/xlab_<embodiment>/0.1.0`, TFDS layout, RT-1 action dicts, instruction embeddings,
`dataset_statistics.json`) that `tfds.builder_from_directory` reads. Simulators render with MuJoCo
and never import TensorFlow; the RLDS writer runs in its own short-lived worker process (TensorFlow
and MuJoCo rendering in one process segfault). Counts, success rates per task and an image strip per
embodiment go to MLflow.

    xlab run collect_demos --preset smoke          # 2 episodes x 14 tasks at 64 px, ~2 min on 2 cores
    xlab run collect_demos --preset demo           # 10 episodes x the 4 tasks `make demo` evaluates
    xlab run collect_demos --preset paper          # 100 episodes per task at 128 px
    xlab run collect_demos --collect.embodiments fetch --collect.episodes_per_task 10
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from robots.tasks import DEMO_TASKS
from xlab.config import JobConfig, check


@dataclasses.dataclass
class CollectConfig:
    embodiments: tuple[str, ...] = ("sawyer", "fetch")
    """Embodiments to record (one dataset each)."""
    tasks: tuple[str, ...] = ()
    """Env ids to record (default: every registered task of the embodiments)."""
    episodes_per_task: int = 2
    min_steps_per_task: int = 0
    """Keep recording episodes of a task until its successful episodes hold at least this many steps (0: no
    minimum). Balances tasks of very different lengths (a Fetch reach takes ~5 steps, a drawer ~80) and gives
    short tasks the goal diversity of many episodes."""
    image_size: int = 64
    """Square camera image size in pixels."""
    num_simulators: int = 0
    """Parallel simulator tasks (0: one per CPU of the cluster)."""
    output_dir: str = "data/rlds"
    """Where datasets go; each is <output_dir>/xlab_<embodiment>/0.1.0."""
    keep_failed: bool = False
    """Also record episodes where the expert failed (flagged in episode_metadata.success)."""
    max_episodes_per_shard: int = 20
    overwrite: bool = True
    stall_timeout_s: float = 1800.0
    """Fail (and cancel the rest) when no rollout task finishes for this long: a hung simulator or no free CPUs."""

    def __post_init__(self) -> None:
        check(self.episodes_per_task >= 1, "collect.episodes_per_task", "must be >= 1")
        check(self.min_steps_per_task >= 0, "collect.min_steps_per_task", "must be >= 0")
        check(self.stall_timeout_s > 0, "collect.stall_timeout_s", f"must be > 0, got {self.stall_timeout_s}")
        check(16 <= self.image_size <= 512, "collect.image_size", f"must be in [16, 512], got {self.image_size}")


@dataclasses.dataclass
class Config(JobConfig):
    collect: CollectConfig = dataclasses.field(default_factory=CollectConfig)


PRESETS = {
    "smoke": Config(collect=CollectConfig(episodes_per_task=2, image_size=64)),
    # `make demo`: the four tasks it evaluates (robots.DEMO_TASKS), at least 20 demonstrations and 2,000
    # steps of each (a Fetch reach is ~5 steps: ~400 of them), at the demo policy's 64 px.
    "demo": Config(collect=CollectConfig(
        tasks=DEMO_TASKS, episodes_per_task=20, min_steps_per_task=2000, image_size=64)),
    "paper": Config(collect=CollectConfig(episodes_per_task=100, image_size=128, max_episodes_per_shard=50)),
}
KEY_METRICS = ["episodes", "success_rate", "steps"]


def rollout(env_id: str, seeds: list[int], image_size: int) -> list[dict]:
    """Run the scripted expert of ``env_id`` once per seed; returns plain-numpy episodes (no TensorFlow here)."""
    import gymnasium
    import numpy as np

    import robots
    from xlab.rlds.schema import Episode

    env = gymnasium.make(env_id, image_size=image_size)
    spec = robots.get_task(env_id)
    out = []
    try:
        for seed in seeds:
            expert = robots.expert_for(env_id)
            obs, info = env.reset(seed=seed)
            images, states, actions = [obs["image"]], [obs["state"]], []
            done = False
            while not done:
                action = expert.act_rt1(obs, env)
                obs, _, terminated, truncated, info = env.step(env.unwrapped.embodiment.to_native(action))
                actions.append(action)
                images.append(obs["image"])
                states.append(obs["state"])
                done = terminated or truncated
            # RLDS: one step per observation; the last step's action is not valid (terminate).
            actions.append(robots.rt1_action(terminate=True))
            success = bool(info["success"])
            rewards = np.zeros(len(images), np.float32)
            rewards[-1] = float(success)
            out.append({
                "episode": Episode(
                    images=np.stack(images), states=np.stack(states).astype(np.float32),
                    actions={k: np.stack([a[k] for a in actions]) for k in actions[0]},
                    instruction=spec.instruction, rewards=rewards, embodiment=spec.embodiment, task=env_id,
                    episode_id=f"{env_id}/{seed}", success=success, seed=seed,
                ),
                "env_id": env_id, "success": success, "steps": len(images),
            })
    finally:
        env.close()
    return out


def _short_tasks(results: list[dict], env_ids: list[str], min_steps: int, started: dict[str, int]) -> dict[str, int]:
    """Tasks whose successful episodes hold fewer than ``min_steps`` steps -> how many episodes more to
    record (from their mean length so far; at least one, at most 9999 in total per task)."""
    if not min_steps:
        return {}
    more = {}
    for env_id in env_ids:
        eps = [r for r in results if r["env_id"] == env_id]
        steps = sum(r["steps"] for r in eps if r["success"])
        if steps >= min_steps or started[env_id] >= 9999:
            continue
        ok = [r["steps"] for r in eps if r["success"]]
        mean = sum(ok) / len(ok) if ok else max(1.0, sum(r["steps"] for r in eps) / max(1, len(eps)))
        rate = max(len(ok) / max(1, len(eps)), 0.1)
        more[env_id] = min(9999 - started[env_id], max(1, int((min_steps - steps) / mean / rate) + 1))
    return more


def image_strip(episode, frames: int = 8):
    """A row of evenly spaced camera frames of one episode."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    idx = np.linspace(0, len(episode.images) - 1, frames).astype(int)
    fig = Figure(figsize=(1.6 * frames, 2.0), layout="constrained")
    FigureCanvasAgg(fig)
    for i, t in enumerate(idx):
        ax = fig.add_subplot(1, frames, i + 1)
        ax.imshow(episode.images[t])
        ax.set_title(f"t={t}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{episode.task}: \"{episode.instruction}\" (success={episode.success})", fontsize=9)
    return fig


def main(cfg: Config) -> dict:
    import ray
    from rich.progress import Progress

    import robots
    from xlab.rlds import write_rlds_in_worker
    from xlab.runtime import iter_finished
    from xlab.session import job_session
    from xlab.track import Tracker

    c = cfg.collect
    unknown = [e for e in c.embodiments if e not in robots.EMBODIMENTS]
    check(not unknown, "collect.embodiments", f"unknown {unknown}; choose from {', '.join(robots.EMBODIMENTS)}")
    env_ids = list(c.tasks) or [s.env_id for s in robots.TASKS.values() if s.embodiment in c.embodiments]
    bad = [e for e in env_ids if e not in robots.TASKS]
    check(not bad, "collect.tasks", f"unknown env ids {bad}; see robots.ENV_IDS")

    with job_session("collect_demos", cfg) as _run:
        tracker = Tracker()
        n_sim = c.num_simulators or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote_rollout = ray.remote(num_cpus=1, max_retries=2)(rollout)
        results: list[dict] = []
        wanted = {env_id: c.episodes_per_task for env_id in env_ids}
        started = dict.fromkeys(env_ids, 0)
        with Progress() as progress:
            bar = progress.add_task(f"recording {len(env_ids)} tasks", total=sum(wanted.values()))
            for _round in range(8):  # more rounds only while some task is short of min_steps_per_task
                jobs = []
                todo = sum(wanted[e] - started[e] for e in env_ids)
                # Enough small tasks to keep every simulator busy; each builds its env once for its seeds.
                chunk = max(1, -(-todo // (2 * n_sim)))
                for t, env_id in enumerate(env_ids):
                    seeds = [cfg.seed * 1_000_000 + t * 10_000 + i for i in range(started[env_id], wanted[env_id])]
                    started[env_id] = wanted[env_id]
                    jobs += [remote_rollout.remote(env_id, seeds[i:i + chunk], c.image_size)
                             for i in range(0, len(seeds), chunk)]
                for part in iter_finished(jobs, stall_timeout_s=c.stall_timeout_s, what="collect_demos rollouts",
                                          field="collect.stall_timeout_s"):
                    results += part
                    progress.advance(bar, len(part))
                short = _short_tasks(results, env_ids, c.min_steps_per_task, started)
                if not short:
                    break
                for env_id, more in short.items():
                    wanted[env_id] = started[env_id] + more
                progress.update(bar, total=sum(wanted.values()))

        per_task = {}
        for env_id in env_ids:
            eps = [r for r in results if r["env_id"] == env_id]
            per_task[env_id] = {"episodes": len(eps), "success_rate": sum(r["success"] for r in eps) / len(eps),
                                "mean_steps": sum(r["steps"] for r in eps) / len(eps)}
        tracker.log_dict(per_task, "success_by_task.json")
        tracker.log_metrics({f"success_rate/{k.split('/')[-1]}": v["success_rate"] for k, v in per_task.items()})

        out_dir = str(Path(c.output_dir).resolve())
        summary = {}
        for emb in c.embodiments:
            rows = [r for r in results if robots.get_task(r["env_id"]).embodiment == emb]
            keep = [r["episode"] for r in rows if r["success"] or c.keep_failed]
            if not keep:
                print(f"[collect_demos] {emb}: no successful episodes to write")
                continue
            # Its own worker process: TensorFlow must never share a process with MuJoCo rendering.
            info = write_rlds_in_worker(out_dir, f"xlab_{emb}", keep, max_episodes_per_shard=c.max_episodes_per_shard,
                                        overwrite=c.overwrite,
                                        description=f"xlab scripted-expert demonstrations (xlab_{emb})")
            stats_file = Path(info["path"]) / "dataset_statistics.json"
            if stats_file.exists():
                tracker.log_artifact(stats_file, f"datasets/{emb}")
            tracker.log_figure(image_strip(max(keep, key=len)), f"samples/{emb}.png")  # the longest: most to see
            summary[emb] = {**info, "episodes": len(keep), "recorded": len(rows),
                            "success_rate": sum(r["success"] for r in rows) / len(rows),
                            "steps": sum(len(e) for e in keep)}
            tracker.log_metrics({f"{k}/{emb}": float(v) for k, v in summary[emb].items() if isinstance(v, int | float)})
        tracker.log_dict(summary, "datasets.json")
        total = {"episodes": sum(s["episodes"] for s in summary.values()),
                 "steps": sum(s["steps"] for s in summary.values()),
                 "success_rate": sum(r["success"] for r in results) / max(1, len(results))}
        tracker.log_metrics(total)
        for emb, s in summary.items():
            print(f"[collect_demos] {emb}: {s['episodes']} episodes ({s['steps']} steps, success "
                  f"{s['success_rate']:.0%}) -> {s['path']} (read back: {s['episodes_read_back']} episodes)")
        return {"summary": summary, "per_task": per_task, "run_id": _run.info.run_id}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("collect_demos")
