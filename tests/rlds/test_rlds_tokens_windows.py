"""RT-1 action tokenization, windows with front padding, weighted mixtures (pure numpy, no TensorFlow)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from xlab.rlds import (
    ACTION_DIM,
    ACTION_SPEC,
    RT1_BOUNDS,
    ActionTokenizer,
    MixtureSampler,
    RLDSError,
    Trajectory,
    UnknownDatasetError,
    UnknownMixtureError,
    complete_action,
    episode_windows,
    flatten_action,
    get_mixture,
    get_transform,
    register_mixture,
    sampling_rates,
    unflatten_action,
    window_indices,
)
from xlab.rlds.mixture import copies_per_window


def random_actions(rng: np.random.Generator, n: int, tok: ActionTokenizer) -> dict[str, np.ndarray]:
    out = {}
    for key, size in ACTION_SPEC:
        if key == "terminate_episode":
            out[key] = np.eye(3, dtype=np.int32)[rng.integers(0, 3, n)]
        else:
            lo, hi = tok.bounds.of(key)
            out[key] = rng.uniform(lo, hi, (n, size)).astype(np.float32)
    return out


def test_round_trip_within_one_bin_numpy():
    tok = ActionTokenizer()
    rng = np.random.default_rng(0)
    actions = random_actions(rng, 2000, tok)
    # Include the exact bounds: they must land in the first / last bin, not outside the vocabulary.
    actions["world_vector"][0] = -2.0
    actions["world_vector"][1] = 2.0
    tokens = tok.tokenize(actions)
    assert tokens.shape == (2000, 11) and tokens.dtype == np.int64
    assert tokens.min() >= 0 and tokens.max() <= 255
    assert tokens[1, 1:4].tolist() == [255, 255, 255] and tokens[0, 1:4].tolist() == [0, 0, 0]
    back = tok.detokenize(tokens)
    for key, _ in ACTION_SPEC:
        if key == "terminate_episode":
            np.testing.assert_array_equal(back[key], actions[key])
            continue
        err = np.abs(back[key] - actions[key])
        assert err.max() <= tok.bin_width(key) + 1e-6, (key, err.max(), tok.bin_width(key))
    # Tokenizing the detokenized action gives the same tokens (bin lower edges are fixed points).
    np.testing.assert_array_equal(tok.tokenize(back), tokens)


def test_tokenizer_clips_and_uses_argmax_for_terminate():
    tok = ActionTokenizer()
    action = complete_action({"world_vector": [[5.0, -5.0, 0.0]], "terminate_episode": [[0, 0, 1]]}, 1)
    tokens = tok.tokenize(action)
    assert tokens[0, 0] == 2  # argmax of [0, 0, 1]
    assert tokens[0, 1:4].tolist() == [255, 0, int(0.5 * 255)]
    # A model may emit any token for terminate: out of range counts as the last class.
    back = tok.detokenize(np.array([[200] + [0] * 10]))
    assert back["terminate_episode"].tolist() == [[0, 0, 1]]


def test_rt1_bounds_are_narrower():
    rt1, rt1x = ActionTokenizer(RT1_BOUNDS), ActionTokenizer()
    assert rt1.bin_width("world_vector") == pytest.approx(2 / 255)
    assert rt1x.bin_width("world_vector") == pytest.approx(4 / 255)
    assert rt1x.bin_width("rotation_delta") == pytest.approx(math.pi / 255)
    assert rt1x.bin_width("base_displacement_vertical_rotation") == pytest.approx(2 * math.pi / 255)


def test_round_trip_torch_matches_numpy():
    tok = ActionTokenizer()
    rng = np.random.default_rng(1)
    actions = random_actions(rng, 64, tok)
    batched = {k: torch.from_numpy(v).reshape(4, 16, -1) for k, v in actions.items()}
    tokens = tok.tokenize(batched)
    assert isinstance(tokens, torch.Tensor) and tokens.dtype == torch.long and tokens.shape == (4, 16, 11)
    np.testing.assert_array_equal(tokens.reshape(64, 11).numpy(), tok.tokenize(actions))
    back = tok.detokenize(tokens)
    assert back["terminate_episode"].dtype == torch.int32
    for key, _ in ACTION_SPEC:
        if key != "terminate_episode":
            assert (back[key].reshape(64, -1).numpy() - actions[key]).__abs__().max() <= tok.bin_width(
                key
            ) + 1e-6


def test_flatten_unflatten_and_complete():
    action = complete_action({"world_vector": np.ones((4, 3))}, 4)
    assert action["terminate_episode"].tolist() == [[0, 1, 0]] * 3 + [[1, 0, 0]]
    assert action["base_displacement_vector"].shape == (4, 2)
    flat = flatten_action(action)
    assert flat.shape == (4, ACTION_DIM)
    back = unflatten_action(flat)
    for key in action:
        np.testing.assert_array_equal(back[key], action[key])
    with pytest.raises(RLDSError, match="unknown RT-1 action keys"):
        complete_action({"xyz": np.zeros((2, 3))}, 2)


def make_traj(length: int, h: int = 4, w: int = 5) -> Trajectory:
    images = np.stack(
        [np.full((h, w, 3), t + 1, np.uint8) for t in range(length)]
    )  # frame t = t+1 everywhere
    wv = np.linspace(-1, 1, length, dtype=np.float32)[:, None].repeat(3, 1)
    return Trajectory(
        dataset="toy",
        images=images,
        states=np.zeros((length, 2), np.float32),
        actions=complete_action({"world_vector": wv}, length),
        instruction="push the block",
        is_first=np.arange(length) == 0,
        is_last=np.arange(length) == length - 1,
        is_terminal=np.zeros(length, bool),
        rewards=np.zeros(length, np.float32),
    )


def test_windows_front_pad_at_episode_start():
    traj = make_traj(5)
    tok = ActionTokenizer()
    cols = episode_windows(traj, 3, tok, np.arange(384, dtype=np.float32), dataset_id=2, episode=7,
                           drop_last=False)
    assert cols["image"].shape == (5, 3, 4, 5, 3) and cols["image"].dtype == np.uint8
    assert cols["pad_mask"].tolist() == [
        [False, False, True],
        [False, True, True],
        [True, True, True],
        [True, True, True],
        [True, True, True],
    ]
    # Window t holds frames t-2..t; padded slots are zero images and zero tokens.
    assert cols["image"][0, :, 0, 0, 0].tolist() == [0, 0, 1]
    assert cols["image"][1, :, 0, 0, 0].tolist() == [0, 1, 2]
    assert cols["image"][4, :, 0, 0, 0].tolist() == [3, 4, 5]
    tokens = tok.tokenize(traj.actions)
    np.testing.assert_array_equal(cols["tokens"], tokens)
    np.testing.assert_array_equal(cols["window_tokens"][:, -1], tokens)  # last slot = the target step
    np.testing.assert_array_equal(cols["window_tokens"][4], tokens[2:5])
    assert not cols["window_tokens"][0, :2].any()
    assert (
        cols["step"].tolist() == [0, 1, 2, 3, 4]
        and set(cols["episode"]) == {7}
        and set(cols["dataset_id"]) == {2}
    )
    assert cols["embedding"].shape == (5, 384) and set(cols["instruction"]) == {"push the block"}
    assert cols["action"].shape == (5, ACTION_DIM)
    # Windows longer than the episode pad every window.
    idx, valid = window_indices(2, 4)
    assert valid.tolist() == [[False, False, False, True], [False, False, True, True]]
    assert idx.tolist() == [[0, 0, 0, 0], [0, 0, 0, 1]]


def test_mixture_sampler_frequencies_match_weights():
    mix = register_mixture("test_three", [("a", 3.0), ("b", 1.0), ("c", 0.5)])
    sizes = {"a": 40, "b": 1000, "c": 7}
    n = 60_000
    draws = MixtureSampler(sizes, mix, seed=3).sample_indices(n)
    freq = np.bincount(draws[0], minlength=3) / n
    expected = np.array([3.0, 1.0, 0.5]) / 4.5
    # 4 standard errors of a binomial proportion: flaky less than once in 10^4 runs.
    assert np.all(np.abs(freq - expected) < 4 * np.sqrt(expected * (1 - expected) / n)), (freq, expected)
    assert all(draws[1][draws[0] == i].max() < sizes[d] for i, d in enumerate("abc"))
    # Deterministic by seed.
    again = MixtureSampler(sizes, mix, seed=3).sample_indices(n)
    assert np.array_equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert not np.array_equal(MixtureSampler(sizes, mix, seed=4).sample_indices(n)[0], draws[0])


def test_sampling_rates_give_weighted_shares_in_one_pass():
    mix = get_mixture([("big", 1.0), ("small", 1.0)])
    sizes = {"big": 9000, "small": 1000}
    rates = sampling_rates(sizes, mix)
    assert rates == pytest.approx({"big": 10000 * 0.5 / 9000, "small": 10000 * 0.5 / 1000})
    rng = np.random.default_rng(0)
    rows = {d: copies_per_window(rates[d], sizes[d], rng).sum() for d in sizes}
    total = sum(rows.values())
    assert abs(total - 10000) < 200  # one pass keeps about the data's size
    assert abs(rows["small"] / total - 0.5) < 0.02


def test_registry_errors_name_the_choices():
    assert get_mixture("rtx").probabilities()["fractal20220817_data"] == pytest.approx(150 / 273)
    with pytest.raises(UnknownMixtureError, match="registered: .*rtx"):
        get_mixture("nope")
    with pytest.raises(UnknownDatasetError, match="registered: .*bridge.*fractal20220817_data"):
        get_transform("kuka")
    with pytest.raises(RLDSError, match="twice"):
        get_mixture([("a", 1.0), ("a", 2.0)])


def test_package_imports_without_tensorflow():
    code = (
        "import sys\n"
        "import xlab.rlds, xlab.rlds.text_embed\n"
        "from xlab.rlds import ActionTokenizer, write_rlds, open_rlds, read_rlds_windows\n"
        "from xlab.rlds import writer, reader, layouts, stats, transforms, ray_source\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
        "assert 'tensorflow_datasets' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
