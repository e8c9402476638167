"""The registered robot envs: Gymnasium compliance, observations, success semantics, images."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robots
from robots.render import FastRenderer

SAWYER_IDS = [i for i in robots.ENV_IDS if robots.TASKS[i].embodiment == "sawyer"]
FETCH_IDS = [i for i in robots.ENV_IDS if robots.TASKS[i].embodiment == "fetch"]


def test_registry_covers_mt10_and_fetch():
    mt10 = {
        "reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close",
        "button-press-topdown", "peg-insert-side", "window-open", "window-close",
    }  # fmt: skip
    assert {f"xlab/sawyer-{t}-v0" for t in mt10} <= set(robots.ENV_IDS)
    assert {f"xlab/fetch-{t}-v0" for t in ("reach", "push", "pick-place")} <= set(robots.ENV_IDS)
    assert set(robots.TASK_INSTRUCTIONS) == set(robots.ENV_IDS)
    for env_id in robots.ENV_IDS:
        assert env_id in gymnasium.registry
        assert robots.TASK_INSTRUCTIONS[env_id].strip()


@pytest.mark.parametrize("env_id", robots.ENV_IDS)
def test_check_env_and_rollout(env_id):
    env = gymnasium.make(env_id, render_mode="rgb_array", image_size=(64, 80))
    check_env(env.unwrapped)
    unwrapped = env.unwrapped
    assert unwrapped.embodiment is robots.EMBODIMENTS[robots.TASKS[env_id].embodiment]
    obs, info = env.reset(seed=3)
    assert obs["image"].shape == (64, 80, 3) and obs["image"].dtype == np.uint8
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (unwrapped.STATE_DIM,)
    assert info["instruction"] == unwrapped.instruction == robots.TASK_INSTRUCTIONS[env_id]
    assert not info["success"]
    assert obs["image"].std() > 5  # a scene, not a blank frame
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float)
        assert {"success", "success_now", "is_success_any", "instruction"} <= set(info)
    np.testing.assert_array_equal(env.render(), obs["image"])
    env.close()


def test_same_seed_same_episode_and_state_only_mode():
    env = gymnasium.make("xlab/sawyer-push-v0", image_size=None)
    assert set(env.observation_space.spaces) == {"state"}
    env.reset(seed=11)
    first = env.unwrapped.privileged_state()
    env.step(env.action_space.sample())
    env.reset(seed=11)
    np.testing.assert_array_equal(env.unwrapped.privileged_state(), first)
    objects = set()
    for seed in range(3):  # the puck's initial position varies with the seed
        env.reset(seed=seed)
        objects.add(tuple(np.round(env.unwrapped.privileged_state()[4:7], 4)))
    assert len(objects) == 3
    env.close()


def test_sticky_success_and_terminate_on_success():
    expert = robots.expert_for("xlab/sawyer-reach-v0")
    env = gymnasium.make("xlab/sawyer-reach-v0", image_size=None, terminate_on_success=False)
    obs, info = env.reset(seed=0)
    for _ in range(150):
        obs, _, terminated, truncated, info = env.step(expert.act(obs, env))
        assert not terminated
        if info["success_now"]:
            break
    assert info["success"] and info["is_success_any"]
    for _ in range(30):  # move straight up, away from the goal: per-step success turns off
        obs, _, terminated, _, info = env.step(np.array([0, 0, 1, 0], np.float32))
    assert not info["success_now"] and info["success"] and not terminated
    env.close()

    env = gymnasium.make("xlab/sawyer-reach-v0", image_size=None)  # terminate_on_success=True
    obs, info = env.reset(seed=0)
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs, env))
        steps += 1
        if terminated or truncated:
            break
    assert terminated and not truncated and info["success"] and info["success_now"]
    assert env.unwrapped.elapsed_steps == steps < 150
    env.close()


def test_max_episode_steps_truncates():
    env = gymnasium.make("xlab/fetch-push-v0", image_size=None, max_episode_steps=4)
    env.reset(seed=0)
    results = [env.step(np.zeros(4, np.float32)) for _ in range(4)]
    assert [r[3] for r in results] == [False, False, False, True]
    assert gymnasium.spec("xlab/sawyer-drawer-open-v0").max_episode_steps == 200
    env.close()


def _marker_row(env, position) -> float:
    """Mean image row of the goal marker after moving it to ``position`` (world, metres)."""
    unwrapped = env.unwrapped
    if unwrapped.task.embodiment == "sawyer":
        unwrapped._mw._target_pos = np.asarray(position, float)
        unwrapped._mw._set_pos_site("goal", unwrapped._mw._target_pos)
    else:
        unwrapped._fetch.goal = np.asarray(position, float)
        unwrapped._fetch._render_callback()
    image = unwrapped._render_frame().astype(int)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    # pick-place's goal marker is blue on Sawyer (the arm itself is red); Fetch's target is red.
    mask = (
        (b > 150) & (r < 90) & (g < 90)
        if unwrapped.task.embodiment == "sawyer"
        else (r > 150) & (g < 60) & (b < 60)
    )
    assert mask.sum() >= 3, "goal marker not visible"
    return float(np.argwhere(mask)[:, 0].mean())


@pytest.mark.parametrize(
    "env_id, camera, low, high",
    [
        ("xlab/sawyer-pick-place-v0", None, (0.0, 0.7, 0.05), (0.0, 0.7, 0.3)),
        ("xlab/sawyer-pick-place-v0", "corner2", (0.0, 0.7, 0.05), (0.0, 0.7, 0.3)),  # mounted upside down
        ("xlab/fetch-pick-place-v0", None, (1.3, 0.55, 0.45), (1.3, 0.55, 0.75)),
    ],
)
def test_images_are_right_side_up(env_id, camera, low, high):
    """Raising the goal marker in the world moves it up in the image (smaller row index)."""
    env = gymnasium.make(env_id, image_size=128, **({"camera": camera} if camera else {}))
    env.reset(seed=0)
    assert _marker_row(env, high) < _marker_row(env, low) - 5
    env.close()


def test_renderer_settings_are_fast():
    env = gymnasium.make("xlab/sawyer-reach-v0")
    env.reset(seed=0)
    renderer = env.unwrapped._renderer
    assert isinstance(renderer, FastRenderer)
    assert env.unwrapped.model.vis.quality.offsamples == 0
    flags = renderer._renderer.scene.flags
    import mujoco

    for flag in (
        mujoco.mjtRndFlag.mjRND_SHADOW,
        mujoco.mjtRndFlag.mjRND_REFLECTION,
        mujoco.mjtRndFlag.mjRND_SKYBOX,
    ):
        assert flags[flag] == 0
    env.step(np.zeros(4, np.float32))
    assert env.unwrapped._renderer is renderer  # one renderer per env, reused
    env.close()


def test_bad_options_are_clear_errors():
    with pytest.raises(robots.RobotEnvConfigError, match="action_format"):
        gymnasium.make("xlab/fetch-reach-v0", action_format="joint")
    with pytest.raises(robots.UnknownRobotEnvError, match="registered"):
        robots.get_task("xlab/sawyer-juggle-v0")
