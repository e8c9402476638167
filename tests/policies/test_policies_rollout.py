"""Policy rollouts in the simulated robots, batched over environments."""

import sys

import pytest

from xlab.policies import build_policy
from xlab.policies.rollout import rollout_policy


@pytest.mark.timeout(300)
def test_rollout_reports_success_per_task():
    policy = build_policy("rt1x-tiny")
    out = rollout_policy(policy, ["xlab/fetch-reach-v0"], episodes=2, seed=0)
    r = out["xlab/fetch-reach-v0"]
    assert r["episodes"] == 2 and 0.0 <= r["success_rate"] <= 1.0
    assert 1 <= r["mean_steps"] <= 50  # fetch-reach's time limit
    assert "tensorflow" not in sys.modules  # a rendering process must stay TensorFlow-free
