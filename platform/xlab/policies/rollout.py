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
    execution: str = "ensemble",
    encoder: str | None = None,
) -> dict[str, dict[str, float]]:
    """Success rate, episodes and mean length per env id for ``policy`` (argmax actions by default).

    Episode ``i`` of task ``t`` is seeded ``seed * 100000 + t * 1000 + i``, as ``eval_policy`` seeds them;
    ``execution`` is how action chunks are executed (:class:`~xlab.policies.chunking.ChunkExecutor`).
    Instructions are embedded with ``encoder`` (the training data's), else the policy's recorded one
    (:func:`~xlab.policies.encoder.policy_encoder`: refused in one line if unavailable).
    """
    import gymnasium

    import robots
    from xlab.policies import PolicySession
    from xlab.policies.encoder import policy_encoder
    from xlab.rlds.text_embed import embed_instructions

    encoder = encoder or policy_encoder(policy)
    size = image_size or policy.config.image_size
    results = {}
    for t, env_id in enumerate(env_ids):
        envs = [gymnasium.make(env_id, image_size=size) for _ in range(episodes)]
        try:
            obs = [env.reset(seed=seed * 100_000 + t * 1_000 + i)[0] for i, env in enumerate(envs)]
            instruction = robots.get_task(env_id).instruction
            embedding = np.repeat(embed_instructions([instruction], backend=encoder), episodes, axis=0)
            session = PolicySession(policy, episodes, execution=execution)
            done = np.zeros(episodes, bool)
            success = np.zeros(episodes, bool)
            steps = np.zeros(episodes, int)
            while not done.all():
                frames = np.stack([o["image"] for o in obs])
                state = np.stack([o["state"] for o in obs]) if policy.config.state_dim else None
                actions = session.step(frames, embedding, mode=mode, state=state)
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


def _rollout_task(policy: Any, state: Any, env_id: str, episodes: int, seed: int, execution: str,
                  encoder: str | None = None) -> dict:
    """Ray task body of :func:`evaluate_in_ray`: ``policy`` a directory, or a config dict with ``state``."""
    import torch

    from xlab.policies import RT1Config, RT1Policy, load_policy

    torch.set_num_threads(1)
    if isinstance(policy, dict):
        model = RT1Policy(RT1Config.from_dict(policy))
        model.load_state_dict(state)
        model.eval()
    else:
        model = load_policy(policy)
    return rollout_policy(model, [env_id], episodes, seed=seed, execution=execution, encoder=encoder)


def evaluate_in_ray(policy: Any, env_ids: Sequence[str], episodes: int = 10, seed: int = 0,
                    execution: str = "ensemble", state: Any = None, wait: bool = True,
                    num_cpus: float = 1.0, encoder: str | None = None) -> Any:
    """``rollout_policy`` in Ray tasks (processes without TensorFlow), one task per env id, outside any
    placement group (called from a Tune trial or a Ray Train worker, tasks would otherwise be confined
    to its bundle). ``policy``: a saved policy directory, or an ``RT1Config`` dict with its weights in
    ``state`` (a state dict or its object ref: a training worker's weights through the object store).
    With ``wait=False`` returns the task refs; :func:`merge_results` of their values is the result.
    ``num_cpus`` each task reserves; ``encoder`` as :func:`rollout_policy`'s."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    task = ray.remote(num_cpus=num_cpus)(_rollout_task).options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
    if state is not None and not isinstance(state, ray.ObjectRef):
        state = ray.put(state)
    refs = [task.remote(policy, state, e, episodes, seed, execution, encoder) for e in env_ids]
    return merge_results(ray.get(refs)) if wait else refs


def merge_results(parts: Sequence[dict]) -> dict:
    """One ``{env_id: result}`` dict from the per-task parts of :func:`evaluate_in_ray`."""
    out: dict = {}
    for part in parts:
        out.update(part)
    return out
