"""Measure the scripted experts' success rates: ``python -m robots.expert_eval --seeds 50 [ENV_ID ...]``.

Episodes run physics only (no images; the experts read privileged state), seeds 0..N-1, with each
env's default horizon and ``terminate_on_success=True``; an episode succeeds if ``info["success"]``
(success at any step) is True at its end. Prints one row per env id.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium
import numpy as np

import robots  # noqa: F401 - registers the envs
from robots.experts import Expert, expert_for
from robots.tasks import ENV_IDS


def rollout(env: Any, expert: Expert, seed: int) -> tuple[bool, int]:
    """Run one episode with ``expert``; return (success, steps)."""
    obs, info = env.reset(seed=seed)
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs, env))
        steps += 1
        if terminated or truncated:
            return bool(info["success"]), steps


def success_rates(env_ids: list[str], seeds: int, image_size: int | None = None) -> list[dict[str, Any]]:
    """Expert success rate per env over seeds 0..seeds-1 (physics only unless image_size is given)."""
    rows = []
    for env_id in env_ids:
        env = gymnasium.make(env_id, image_size=image_size)
        expert = expert_for(env_id)
        start = time.perf_counter()
        results = [rollout(env, expert, seed) for seed in range(seeds)]
        env.close()
        won = [steps for ok, steps in results if ok]
        rows.append(
            {
                "env_id": env_id,
                "success": len(won) / seeds,
                "seeds": seeds,
                "mean_steps_success": float(np.mean(won)) if won else float("nan"),
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the experts' success rates: ``python -m robots.expert_eval --seeds 50 [ENV_ID ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_ids", nargs="*", default=list(ENV_IDS))
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args(argv)
    print(f"{'env id':38s} {'success':>8s} {'seeds':>6s} {'steps (succ.)':>14s} {'time s':>7s}")
    for row in success_rates(args.env_ids, args.seeds):
        print(
            f"{row['env_id']:38s} {row['success']:8.0%} {row['seeds']:6d} "
            f"{row['mean_steps_success']:14.1f} {row['seconds']:7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
