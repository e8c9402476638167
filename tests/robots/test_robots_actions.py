"""The RT-1 action dict and each embodiment's mapping to native actions."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import robots
from robots.actions import RT1_ACTION_BOUNDS, RT1ActionWrapper, rt1_action, rt1_action_space


def test_rt1_space_has_rt1_keys_and_bounds():
    space = rt1_action_space()
    assert set(space.spaces) == set(robots.RT1_ACTION_KEYS)  # gymnasium sorts Dict keys
    assert space["world_vector"].low.min() == -2 and space["world_vector"].high.max() == 2
    np.testing.assert_allclose(space["rotation_delta"].high, np.pi / 2)
    assert space["terminate_episode"].shape == (3,) and space["terminate_episode"].dtype == np.int32
    assert sum(shape[0] for shape, _, _ in RT1_ACTION_BOUNDS.values()) == 13  # 11 tokens: terminate is one


@pytest.mark.parametrize("name", sorted(robots.EMBODIMENTS))
def test_round_trips(name):
    body = robots.get_embodiment(name)
    rng = np.random.default_rng(0)
    for _ in range(100):
        native = rng.uniform(-1, 1, 4).astype(np.float32)
        np.testing.assert_allclose(body.to_native(body.from_native(native)), native, atol=1e-6)
        action = rt1_action(
            world_vector=rng.uniform(-1, 1, 3),
            rotation_delta=rng.uniform(-1, 1, 3),
            gripper_closedness_action=rng.uniform(-1, 1),
        )
        back = body.from_native(body.to_native(action))
        # The axes both robots have: translation and gripper. Neither can rotate its gripper.
        np.testing.assert_allclose(back["world_vector"], action["world_vector"], atol=1e-6)
        np.testing.assert_allclose(
            back["gripper_closedness_action"], action["gripper_closedness_action"], atol=1e-6
        )
        np.testing.assert_array_equal(back["rotation_delta"], 0)
        np.testing.assert_array_equal(back["terminate_episode"], [0, 1, 0])
        assert set(back) == set(robots.RT1_ACTION_KEYS)


def test_scaling_and_gripper_conventions():
    sawyer, fetch = robots.EMBODIMENTS["sawyer"], robots.EMBODIMENTS["fetch"]
    close = rt1_action(world_vector=[0.5, -1, 0.25], gripper_closedness_action=1.0)
    np.testing.assert_allclose(sawyer.to_native(close), [0.5, -1, 0.25, 1])  # MetaWorld: +1 closes
    np.testing.assert_allclose(fetch.to_native(close), [0.5, -1, 0.25, -1])  # Fetch: +1 opens
    # Beyond the robot's range (RT-1-X allows +-2) saturates; missing keys count as zero.
    np.testing.assert_allclose(sawyer.to_native({"world_vector": [2, -2, 0]}), [1, -1, 0, 0])
    assert sawyer.metres_per_unit == 0.01 and fetch.metres_per_unit == 0.05
    with pytest.raises(robots.UnknownRobotEnvError, match="sawyer"):
        robots.get_embodiment("panda")


def test_rt1_stepping_matches_native():
    """action_format="rt1", RT1ActionWrapper and step_rt1 give the native trajectory."""
    env_id = "xlab/fetch-pick-place-v0"
    expert = robots.expert_for(env_id)

    def run(env, rt1: bool, steps: int = 12):
        obs, _ = env.reset(seed=5)
        states = []
        for _ in range(steps):
            action = expert.act_rt1(obs, env) if rt1 else expert.act(obs, env)
            obs, _, _, _, info = env.step(action)
            states.append(obs["state"])
        return np.array(states), info

    native, _ = run(gymnasium.make(env_id, image_size=None), rt1=False)
    env = gymnasium.make(env_id, image_size=None, action_format="rt1")
    assert isinstance(env.action_space, gymnasium.spaces.Dict)
    direct, info = run(env, rt1=True)
    assert info["terminate_requested"] is False
    wrapped, _ = run(RT1ActionWrapper(gymnasium.make(env_id, image_size=None)), rt1=True)
    np.testing.assert_allclose(direct, native, atol=1e-5)
    np.testing.assert_allclose(wrapped, native, atol=1e-5)

    plain = gymnasium.make(env_id, image_size=None).unwrapped
    plain.reset(seed=5)
    _, _, _, _, info = plain.step_rt1(rt1_action(terminate=True))
    assert info["terminate_requested"] is True
