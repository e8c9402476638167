"""Action chunking, proprio state, augmentation and training windows of the RT-1 policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xlab.errors import XlabError
from xlab.policies import PolicySession, build_policy
from xlab.policies.augment import random_shift
from xlab.policies.chunking import ChunkExecutor
from xlab.policies.session import fit_state
from xlab.rlds.schema import Trajectory
from xlab.rlds.tokenize import ActionTokenizer
from xlab.rlds.windows import episode_windows


def _traj(length: int = 6, state_dim: int = 3) -> Trajectory:
    import robots

    actions = [robots.rt1_action(world_vector=(0.1 * t, 0, 0)) for t in range(length - 1)]
    actions.append(robots.rt1_action(terminate=True))
    images = np.stack([np.full((8, 8, 3), t, np.uint8) for t in range(length)])
    return Trajectory(
        dataset="d", images=images, states=np.arange(length * state_dim, dtype=np.float32).reshape(length, -1),
        actions={k: np.stack([a[k] for a in actions]) for k in actions[0]}, instruction="x",
        is_first=np.eye(1, length, 0, bool)[0], is_last=np.eye(1, length, length - 1, bool)[0],
        is_terminal=np.eye(1, length, length - 1, bool)[0], rewards=np.zeros(length, np.float32),
    )


def test_windows_drop_the_last_step_and_hold_future_tokens():
    tok = ActionTokenizer()
    traj = _traj(6)
    tokens = tok.tokenize(traj.actions)
    w = episode_windows(traj, window=2, tokenizer=tok, embedding=np.zeros(4), chunk=3, state_dim=5)
    # 6 steps -> 5 windows: none ends on the last (terminate) step, whose action is not valid.
    assert w["step"].tolist() == [0, 1, 2, 3, 4]
    assert w["window_tokens"].shape == (5, 4, 11) and w["token_mask"].shape == (5, 4)
    # Window ending at step 3 holds the tokens of steps 2..5; step 5 is the last: masked, zeroed.
    assert w["token_mask"][3].tolist() == [True, True, True, False]
    np.testing.assert_array_equal(w["window_tokens"][3, :3], tokens[2:5])
    assert not w["window_tokens"][3, 3].any()
    # Window ending at step 0: front padding is masked too.
    assert w["token_mask"][0].tolist() == [False, True, True, True] and w["pad_mask"][0].tolist() == [False, True]
    # State: zero-padded from 3 to 5 dims, zero on padded frames.
    np.testing.assert_array_equal(w["state"][1, 1], [3, 4, 5, 0, 0])
    assert not w["state"][0, 0].any()
    keep = episode_windows(traj, window=2, tokenizer=tok, embedding=np.zeros(4), drop_last=False)
    assert len(keep["step"]) == 6 and "state" not in keep


def test_chunk_loss_scores_frame_t_step_j_against_step_t_plus_j():
    torch.manual_seed(0)
    policy = build_policy("rt1x-tiny", action_chunk=3, history=2)
    c = policy.config
    b = 2
    images = torch.randint(0, 256, (b, 2, c.image_size, c.image_size, 3)).to(torch.uint8)
    emb = torch.randn(b, c.embed_dim)
    pad = torch.ones(b, 2, dtype=torch.bool)
    tokens = torch.randint(0, c.vocab_size, (b, 4, 11))
    mask = torch.ones(b, 4, dtype=torch.bool)
    logits = policy(images, emb, pad)
    assert logits.shape == (b, 2, 3, 11, c.vocab_size)
    loss, metrics = policy.loss({"image": images, "embedding": emb, "pad_mask": pad, "window_tokens": tokens,
                                 "token_mask": mask})
    steps = torch.arange(2)[:, None] + torch.arange(3)[None, :]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, c.vocab_size),
                                                 tokens[:, steps].reshape(-1))
    torch.testing.assert_close(loss, expected)
    # A masked step contributes nothing, whatever its token.
    mask2 = mask.clone()
    mask2[:, 3] = False
    changed = tokens.clone()
    changed[:, 3] = (changed[:, 3] + 1) % c.vocab_size
    l1, _ = policy.loss({"image": images, "embedding": emb, "pad_mask": pad, "window_tokens": tokens,
                         "token_mask": mask2})
    l2, _ = policy.loss({"image": images, "embedding": emb, "pad_mask": pad, "window_tokens": changed,
                         "token_mask": mask2})
    torch.testing.assert_close(l1, l2)
    assert metrics["token_acc_per_token"].shape == (11,)
    chunk = policy.act_chunk(images, emb)
    assert chunk["world_vector"].shape == (b, 3, 3)
    first = policy.act(images, emb)
    np.testing.assert_array_equal(first["world_vector"], chunk["world_vector"][:, 0])


def test_state_token_conditions_actions_and_is_required():
    torch.manual_seed(0)
    policy = build_policy("rt1x-tiny", state_dim=4).eval()
    c = policy.config
    images = torch.randint(0, 256, (2, 2, c.image_size, c.image_size, 3)).to(torch.uint8)
    emb = torch.randn(2, c.embed_dim)
    with torch.no_grad():
        a = policy(images, emb, state=torch.zeros(2, 2, 4))
        b = policy(images, emb, state=torch.ones(2, 2, 4))
    assert not torch.allclose(a, b)
    with pytest.raises(XlabError, match="state"):
        policy(images, emb)
    np.testing.assert_array_equal(fit_state(np.ones((2, 6)), 4), np.ones((2, 4)))
    np.testing.assert_array_equal(fit_state(np.ones((2, 2)), 4), [[1, 1, 0, 0]] * 2)
    session = PolicySession(policy, num_envs=2)
    frames = np.zeros((2, c.image_size, c.image_size, 3), np.uint8)
    assert session.step(frames, emb.numpy(), state=np.zeros((2, 10)))["world_vector"].shape == (2, 3)


def _chunk(values: list[float]) -> dict[str, np.ndarray]:
    k = len(values)
    return {"world_vector": np.array([[[v, 0, 0] for v in values]], np.float32),
            "terminate_episode": np.tile(np.array([0, 1, 0], np.int32), (1, k, 1))}


def test_chunk_executor_modes():
    # open-loop: one query per chunk, its actions in order.
    ex = ChunkExecutor(1, 3, "open-loop")
    assert ex.needs_query().tolist() == [True]
    ex.add([0], _chunk([1, 2, 3]))
    got = []
    for _ in range(3):
        got.append(float(ex.next(0)["world_vector"][0]))
        if _ < 2:
            assert ex.needs_query().tolist() == [False]
    assert got == [1, 2, 3] and ex.needs_query().tolist() == [True]
    # ensemble: every prediction for this step, older ones weighted exp(0) and newer exp(-decay).
    ex = ChunkExecutor(1, 3, "ensemble", decay=np.log(2))
    ex.add([0], _chunk([1, 2, 3]))
    assert ex.next(0)["world_vector"][0] == pytest.approx(1)
    ex.add([0], _chunk([10, 20, 30]))
    assert ex.next(0)["world_vector"][0] == pytest.approx((2 * 1 + 10 * 0.5) / 1.5)
    ex.add([0], _chunk([100, 0, 0]))
    out = ex.next(0)
    assert out["world_vector"][0] == pytest.approx((3 + 20 * 0.5 + 100 * 0.25) / 1.75)
    assert out["terminate_episode"].tolist() == [0, 1, 0]
    # first: only the newest chunk's first action.
    ex = ChunkExecutor(1, 3, "first")
    ex.add([0], _chunk([5, 6, 7]))
    assert ex.next(0)["world_vector"][0] == 5
    ex.reset(0)
    with pytest.raises(XlabError, match="no predicted action"):
        ex.next(0)
    with pytest.raises(XlabError, match="unknown chunk execution"):
        ChunkExecutor(1, 3, "magic")


def test_random_shift_moves_whole_windows_by_at_most_pad():
    images = torch.zeros(3, 2, 16, 16, 3, dtype=torch.uint8)
    images[:, :, 8, 8] = 255
    out = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    for i in range(3):
        ys, xs = torch.nonzero(out[i, 0, :, :, 0], as_tuple=True)
        assert len(ys) == 1 and abs(int(ys[0]) - 8) <= 2 and abs(int(xs[0]) - 8) <= 2
        torch.testing.assert_close(out[i, 0], out[i, 1])  # one offset per window
    assert random_shift(images, 0) is images
