"""Evaluate a policy by rolling it out in the simulated robots, batched over environments.

``rollout_policy`` steps ``episodes`` copies of each task's env in lockstep and asks the policy for
all of their actions at once (a :class:`~xlab.policies.PolicySession` keeps each env's frame
history), so one forward pass serves every simulator. It renders MuJoCo, so it must run in a
process without TensorFlow: call it in a Ray task (``evaluate_in_ray``) from jobs that also touch
RLDS data.

    from xlab.policies import load_policy
    from xlab.policies.rollout import rollout_policy
    results = rollout_policy(load_policy("ckpt/"), ["xlab/fetch-reach-v0"], episodes=10)
    results["xlab/fetch-reach-v0"]["success_rate"]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

# sentence-transformers -> transformers must not pull TensorFlow into a rendering process.
os.environ.setdefault("USE_TF", "0")


def rollout_policy(
    policy: Any,
    env_ids: Sequence[str],
    episodes: int = 10,
    image_size: int | None = None,
    seed: int = 0,
    mode: str = "argmax",
) -> dict[str, dict[str, float]]:
    """Success rate, episodes and mean length per env id for ``policy`` (argmax actions by default)."""
    import gymnasium

    import robots
    from xlab.data.text_embed import embed_instructions
    from xlab.policies import PolicySession

    size = image_size or policy.config.image_size
    results = {}
    for t, env_id in enumerate(env_ids):
        envs = [gymnasium.make(env_id, image_size=size) for _ in range(episodes)]
        try:
            obs = [env.reset(seed=seed * 100_000 + t * 1_000 + i)[0] for i, env in enumerate(envs)]
            instruction = robots.get_task(env_id).instruction
            embedding = np.repeat(embed_instructions([instruction]), episodes, axis=0)
            session = PolicySession(policy, episodes)
            done = np.zeros(episodes, bool)
            success = np.zeros(episodes, bool)
            steps = np.zeros(episodes, int)
            while not done.all():
                frames = np.stack([o["image"] for o in obs])
                actions = session.step(frames, embedding, mode=mode)
                for i, env in enumerate(envs):
                    if done[i]:
                        continue
                    rt1 = {k: v[i] for k, v in actions.items()}
                    obs[i], _, terminated, truncated, info = env.step(env.unwrapped.embodiment.to_native(rt1))
                    steps[i] += 1
                    success[i] = bool(info["success"])
                    done[i] = terminated or truncated
        finally:
            for env in envs:
                env.close()
        results[env_id] = {"success_rate": float(success.mean()), "episodes": float(episodes),
                           "mean_steps": float(steps.mean())}
    return results


def evaluate_in_ray(policy_dir: str, env_ids: Sequence[str], episodes: int = 10, seed: int = 0) -> dict:
    """``rollout_policy`` for a saved policy, in a Ray task (a process without TensorFlow), one task per env id."""
    import ray

    def _one(env_id: str) -> dict:
        from xlab.policies import load_policy

        return rollout_policy(load_policy(policy_dir), [env_id], episodes, seed=seed)

    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # Outside any placement group: called from a Tune trial, the tasks would otherwise be confined to
    # the trial's own (tiny) bundle and never schedule.
    task = ray.remote(num_cpus=1)(_one).options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
    out: dict = {}
    for part in ray.get([task.remote(e) for e in env_ids]):
        out.update(part)
    return out
