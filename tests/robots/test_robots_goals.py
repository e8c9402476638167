"""Goals the policy must see: markers drawn for goals in the air, frames as the policy gets them."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import robots  # noqa: F401 - registers the xlab envs


def _red(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 150) & (g < 60) & (b < 60)


@pytest.mark.parametrize("env_id", ["xlab/fetch-reach-v0", "xlab/sawyer-reach-v0"])
def test_air_goals_are_drawn_with_a_stem_to_the_table(env_id):
    env = gymnasium.make(env_id, image_size=64)
    try:
        seen = []
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            markers = env.unwrapped._markers()
            assert len(markers) in (1, 3)  # sphere, and above the table a stem and a disc
            goal = markers[0].pos
            if len(markers) == 3:  # the stem runs from the goal down to the disc on the table
                assert markers[2].pos[2] < markers[1].pos[2] < goal[2]
            seen.append(_red(obs["image"]))
        # The goal region is visible (several pixels) and moves with the goal.
        assert all(m.sum() >= 6 for m in seen)
        assert not np.array_equal(seen[0], seen[1])
    finally:
        env.close()


def test_table_goals_are_drawn_as_their_success_region():
    env = gymnasium.make("xlab/fetch-push-v0", image_size=64)
    try:
        obs, _ = env.reset(seed=0)
        (disc,) = env.unwrapped._markers()
        assert disc.size[0] == 0.05 and disc.pos[2] < 0.41  # 5 cm, flat on the table
        assert _red(obs["image"]).sum() >= 10
    finally:
        env.close()


def test_simulator_frames_match_training_windows():
    """Evaluation frames are exactly the training frames: same size -> untouched; other camera sizes are
    resized with the function the RLDS reader uses for training windows."""
    from xlab.rlds.transforms import resize_images
    from xlab.serve.simulator import Simulator

    sim = Simulator(image_size=0)
    sim.image_size = 48
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    assert sim._frames(frames) is frames
    big = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    out = sim._frames(big)
    np.testing.assert_array_equal(out[1], resize_images(big[1:2], (48, 48))[0])
    # Rendering at the policy's size directly: an episode's first frame is the recorded demo's first frame.
    from jobs.collect_demos import rollout

    demo = rollout("xlab/fetch-reach-v0", [7], 48)[0]["episode"]
    env = gymnasium.make("xlab/fetch-reach-v0", image_size=48)
    try:
        obs, _ = env.reset(seed=7)
        np.testing.assert_array_equal(obs["image"], demo.images[0])
        np.testing.assert_array_equal(resize_images(demo.images[:1], (48, 48))[0], demo.images[0])
    finally:
        env.close()
