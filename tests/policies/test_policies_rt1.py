"""xlab.policies: RT-1 attention mask, FiLM, TokenLearner, training step, checkpoints, inference, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xlab.errors import XlabError
from xlab.policies import (
    POLICIES,
    HistoryBuffer,
    PolicySession,
    RT1Config,
    RT1Policy,
    UnknownPolicyError,
    build_policy,
    load_policy,
    rt1_attention_mask,
)
from xlab.policies.efficientnet import EfficientNetB3FiLM
from xlab.policies.film import FiLM
from xlab.policies.token_learner import TokenLearner
from xlab.policies.transformer import token_layout
from xlab.rlds.schema import ACTION_SPEC


def _batch(policy: RT1Policy, b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    c = policy.config
    g = torch.Generator().manual_seed(seed)
    pad = torch.ones(b, c.history, dtype=torch.bool)
    pad[0, 0] = False  # one window starts at the episode start
    return {
        "image": torch.randint(0, 256, (b, c.history, c.image_size, c.image_size, 3), generator=g).to(torch.uint8),
        "embedding": torch.randn(b, c.embed_dim, generator=g),
        "pad_mask": pad,
        "window_tokens": torch.randint(0, c.vocab_size, (b, c.history, 11), generator=g),
    }


def _tiny(**kw) -> RT1Policy:
    torch.manual_seed(0)
    return build_policy("rt1x-tiny", **kw).eval()


# ---------------------------------------------------------------- attention mask
def test_attention_mask_structure():
    t, n, a = 3, 2, 11
    mask = rt1_attention_mask(t, n, a)
    length = t * (n + a)
    assert mask.shape == (length, length) and mask.dtype == torch.bool
    frame, is_action = token_layout(t, n, a)
    for q in range(length):
        for k in range(length):
            expected = (not is_action[k]) and frame[k] <= frame[q]
            assert bool(mask[q, k]) == expected, (q, k)
    # Spelled out: action slots never see any action slot; nobody sees the future.
    assert not mask[:, is_action].any()
    assert not (mask & (frame[None, :] > frame[:, None])).any()
    # Action slots of frame t see all image tokens of frames <= t.
    q = int(np.flatnonzero((frame == 1) & is_action)[0])
    assert mask[q, (frame <= 1) & ~is_action].all()


def test_attention_mask_padding():
    t, n, a = 3, 2, 11
    pad = torch.tensor([[False, True, True], [True, True, True]])
    mask = rt1_attention_mask(t, n, a, pad)
    frame, is_action = token_layout(t, n, a)
    assert mask.shape == (2, t * (n + a), t * (n + a))
    real_rows = frame >= 1
    assert not mask[0][real_rows][:, frame == 0].any()  # padded frame invisible to real frames
    assert mask.any(dim=-1).all()  # no empty row (finite softmax)
    assert torch.equal(mask[1], rt1_attention_mask(t, n, a))


def test_future_frames_do_not_change_past_logits():
    policy = _tiny(history=3)
    batch = _batch(policy, b=2)
    with torch.no_grad():
        base = policy(batch["image"], batch["embedding"], batch["pad_mask"])
        changed = batch["image"].clone()
        changed[:, 2] = 255 - changed[:, 2]  # frame t+1 = 2
        out = policy(changed, batch["embedding"], batch["pad_mask"])
        torch.testing.assert_close(out[:, :2], base[:, :2], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, 2], base[:, 2])  # ...but frame 2's own logits do change
        # The content of a padded frame is invisible.
        pad_changed = batch["image"].clone()
        pad_changed[0, 0] = 0
        out = policy(pad_changed, batch["embedding"], batch["pad_mask"])
        torch.testing.assert_close(out[0, 1:], base[0, 1:], rtol=0, atol=1e-6)
        # A past frame does condition the present.
        past = batch["image"].clone()
        past[1, 0] = 255 - past[1, 0]
        assert not torch.allclose(policy(past, batch["embedding"], batch["pad_mask"])[1, 2], base[1, 2])


# ---------------------------------------------------------------- FiLM, TokenLearner, backbones
def test_film_is_identity_at_init_and_conditions_after_perturbation():
    film = FiLM(embed_dim=8, channels=4)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(film(x, torch.randn(2, 8)), x)

    policy = _tiny()
    batch = _batch(policy, b=2)
    e1, e2 = torch.randn(2, 384), torch.randn(2, 384)
    with torch.no_grad():
        # The instruction enters only through FiLM, so at init the embedding cannot matter.
        torch.testing.assert_close(policy(batch["image"], e1), policy(batch["image"], e2))
        for m in policy.modules():
            if isinstance(m, FiLM):
                m.proj.weight.normal_(0, 0.05)
        assert not torch.allclose(policy(batch["image"], e1), policy(batch["image"], e2), atol=1e-4)


def test_token_learner_shape():
    tl = TokenLearner(d_model=16, num_tokens=8)
    tokens, maps = tl(torch.randn(3, 16, 9, 9), return_maps=True)
    assert tokens.shape == (3, 8, 16)
    assert maps.shape == (3, 8, 81)
    torch.testing.assert_close(maps.sum(-1), torch.ones(3, 8))
    assert tl(torch.randn(3, 81, 16)).shape == (3, 8, 16)


def test_efficientnet_b3_backbone_shape():
    net = EfficientNetB3FiLM(embed_dim=384, d_model=512).eval()
    assert len(net.blocks) == 26 and len(net.films) == 26
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64), torch.randn(1, 384))
    assert out.shape == (1, 512, 2, 2)
    # The whole paper-sized policy at a small input.
    policy = build_policy("rt1", image_size=64, history=2).eval()
    with torch.no_grad():
        logits = policy(torch.zeros(1, 2, 64, 64, 3, dtype=torch.uint8), torch.randn(1, 384))
    assert logits.shape == (1, 2, 1, 11, 256)
    # RT-1-X's JAX layout: no TokenLearner (every cell of the 2x2 map a token), 512 bins.
    rt1x = build_policy("rt1x", image_size=64, history=2).eval()
    with torch.no_grad():
        logits = rt1x(torch.zeros(1, 2, 64, 64, 3, dtype=torch.uint8), torch.randn(1, 384))
    assert rt1x.config.image_tokens == 4 and logits.shape == (1, 2, 1, 11, 512)


def test_preset_parameter_counts_and_reference_settings():
    rt1 = build_policy("rt1")
    assert 30e6 < rt1.num_parameters() < 40e6  # RT-1 is about 35M
    assert rt1.config.backbone == "efficientnet-b3-film" and rt1.config.history == 6
    assert rt1.config.num_image_tokens == 8 and rt1.config.vocab_size == 256 and rt1.config.feed_forward == "linear"
    assert rt1.config.bounds == "rt1"
    rt1x = build_policy("rt1x").config
    assert (rt1x.history, rt1x.num_image_tokens, rt1x.vocab_size, rt1x.attn_head_dim, rt1x.feed_forward) == (
        15, 0, 512, 256, "swiglu")
    assert not rt1x.image_pos_embedding and rt1x.action_chunk == 1  # the references' choices
    assert build_policy("rt1x-tiny").num_parameters() < build_policy("rt1x-small").num_parameters()


def test_tokenizer_film_after_projection():
    """RT-1's tokenizers end with a bias-free 1x1 projection and one more FiLM layer."""
    from xlab.policies.film import SmallFiLMConvNet

    net = SmallFiLMConvNet(384, 32, (8, 16))
    assert net.out.bias is None and isinstance(net.out_film, FiLM)
    assert EfficientNetB3FiLM(384, 64).out.bias is None


# ---------------------------------------------------------------- training
def test_loss_metrics_and_overfit_one_batch():
    policy = _tiny()
    policy.train()
    batch = _batch(policy, b=4)
    loss, metrics = policy.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert metrics["token_acc"].ndim == 0
    assert metrics["token_acc_per_sample"].shape == (4,)
    first = loss.item()
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3, eps=1e-7)
    for _ in range(40):
        opt.zero_grad()
        loss, metrics = policy.loss(batch)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert metrics["token_acc"].item() > 0.5


def test_loss_ignores_padded_frames():
    policy = _tiny()
    batch = _batch(policy, b=2)
    other = dict(batch, window_tokens=batch["window_tokens"].clone())
    other["window_tokens"][0, 0] = (other["window_tokens"][0, 0] + 1) % 256  # frame 0 of sample 0 is padding
    with torch.no_grad():
        assert policy.loss(batch)[0].item() == pytest.approx(policy.loss(other)[0].item(), abs=1e-6)


# ---------------------------------------------------------------- checkpoints
def test_save_load_round_trip(tmp_path):
    policy = _tiny()
    batch = _batch(policy, b=2)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    assert isinstance(loaded, RT1Policy) and loaded.config == policy.config
    with torch.no_grad():
        a = policy(batch["image"], batch["embedding"], batch["pad_mask"])
        b = loaded(batch["image"], batch["embedding"], batch["pad_mask"])
    assert torch.equal(a, b)
    with pytest.raises(XlabError, match="not a saved policy"):
        load_policy(tmp_path / "nothing")


# ---------------------------------------------------------------- inference
def _check_action(action: dict, b: int) -> None:
    assert [k for k, _ in ACTION_SPEC] == list(action)
    for key, size in ACTION_SPEC:
        assert isinstance(action[key], np.ndarray) and action[key].shape == (b, size), key
    assert (action["terminate_episode"].sum(-1) == 1).all()
    assert (np.abs(action["world_vector"]) <= 2.0).all()
    assert (np.abs(action["gripper_closedness_action"]) <= 1.0).all()


def test_act_argmax_deterministic_and_sample_seeded():
    policy = _tiny()
    batch = _batch(policy, b=3)
    images, emb = batch["image"].numpy(), batch["embedding"].numpy()
    a1 = policy.act(images, emb)
    _check_action(a1, 3)
    a2 = policy.act(torch.from_numpy(images), torch.from_numpy(emb), mode="argmax")
    for k in a1:
        np.testing.assert_array_equal(a1[k], a2[k])
    s1 = policy.act_tokens(images, emb, mode="sample", temperature=2.0, seed=7)
    s2 = policy.act_tokens(images, emb, mode="sample", temperature=2.0, seed=7)
    s3 = policy.act_tokens(images, emb, mode="sample", temperature=2.0, seed=8)
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)
    torch.manual_seed(3)
    g1 = policy.act(images, emb, mode="sample")
    torch.manual_seed(3)
    g2 = policy.act(images, emb, mode="sample")
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    _check_action(g1, 3)
    # A short window is front-padded like an episode start.
    short = policy.act(images[:, -1:], emb)
    pad = np.zeros_like(images)
    pad[:, -1] = images[:, -1]
    padded = policy.act(pad, emb, pad_mask=np.array([[False, True]] * 3))
    for k in short:
        np.testing.assert_array_equal(short[k], padded[k])
    with pytest.raises(XlabError, match="mode"):
        policy.act(images, emb, mode="beam")


def test_history_buffer_front_padding_and_reset():
    buf = HistoryBuffer(num_envs=2, history=3)
    f = [np.full((2, 4, 4, 3), i + 1, np.uint8) for i in range(4)]
    win, mask = buf.push(f[0])
    assert win.shape == (2, 3, 4, 4, 3) and mask.tolist() == [[False, False, True]] * 2
    assert (win[:, :2] == 0).all() and (win[:, 2] == 1).all()
    buf.push(f[1])
    win, mask = buf.push(f[2])
    assert mask.all() and [int(win[0, t, 0, 0, 0]) for t in range(3)] == [1, 2, 3]
    buf.reset(1)
    win, mask = buf.push(f[3])
    assert mask.tolist() == [[True, True, True], [False, False, True]]
    assert [int(win[0, t, 0, 0, 0]) for t in range(3)] == [2, 3, 4]
    assert [int(win[1, t, 0, 0, 0]) for t in range(3)] == [0, 0, 4]


def test_policy_session_steps_many_envs():
    policy = _tiny()
    session = PolicySession(policy, num_envs=3)
    emb = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    for step in range(3):
        frames = np.random.default_rng(step).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        _check_action(session.step(frames, emb), 3)
    session.reset(0)
    assert session.buffer.pad_mask()[0].tolist() == [False, False]


# ---------------------------------------------------------------- registry
def test_registry_presets_and_errors():
    assert {"rt1x-tiny", "rt1x-small", "rt1x-demo", "rt1", "rt1x"} <= set(POLICIES)
    policy = build_policy("rt1x-small", dropout=0.0)
    assert isinstance(policy.config, RT1Config) and policy.config.dropout == 0.0
    assert policy.config.image_size == 64 and policy.config.history == 4
    with pytest.raises(UnknownPolicyError, match="rt1x-tiny") as err:
        build_policy("rt2")
    assert isinstance(err.value, XlabError) and "rt1x-small" in str(err.value)
    with pytest.raises(UnknownPolicyError, match="not_a_field"):
        build_policy("rt1x-tiny", not_a_field=1)
    with pytest.raises(XlabError, match="backbone"):
        build_policy("rt1x-tiny", backbone="resnet")
