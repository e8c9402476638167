"""Scripted experts solve their tasks (a few seeds each; full rates: python -m robots.expert_eval)."""

from __future__ import annotations

import gymnasium
import pytest

import robots
from robots.expert_eval import rollout


@pytest.mark.parametrize("env_id", robots.ENV_IDS)
def test_expert_solves_most_seeds(env_id):
    env = gymnasium.make(env_id, image_size=None)
    expert = robots.expert_for(env_id)
    wins = [rollout(env, expert, seed)[0] for seed in range(3)]
    env.close()
    assert sum(wins) >= 2, wins


def test_expert_with_images_and_rt1_actions():
    env = gymnasium.make("xlab/sawyer-drawer-close-v0", action_format="rt1")
    expert = robots.expert_for("xlab/sawyer-drawer-close-v0")
    obs, info = env.reset(seed=0)
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act_rt1(obs, env))
        if terminated or truncated:
            break
    assert terminated and info["success"] and obs["image"].shape == (128, 128, 3)
    env.close()


def test_unknown_env_has_no_expert():
    with pytest.raises(robots.UnknownRobotEnvError):
        robots.expert_for("Meta-World/MT1")
