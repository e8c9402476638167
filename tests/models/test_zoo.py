"""The grokking model zoo: shapes, causal masking, presets, initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from xlab.models import MODELS, ImageMLP, ModularTransformer, TicketMLP, build_model


def test_presets_build_and_forward():
    torch.manual_seed(0)
    grok = build_model("grok-transformer", d_vocab=61 + 5)
    assert isinstance(grok, ModularTransformer)
    x = torch.randint(0, 66, (4, 3))
    assert grok(x).shape == (4, 66) and grok(x, all_positions=True).shape == (4, 3, 66)
    assert grok.embed.weight.shape == (66, 128) and grok.unembed.weight.shape == (66, 128)
    assert grok.neuron_activations(x).shape == (4, 3, 512) and grok.neuron_logit_map().shape == (66, 512)
    assert grok.blocks[0].attn.q.weight.shape == (4 * 32, 128)

    ticket_tf = build_model("ticket-transformer")
    assert ticket_tf(torch.randint(0, 67, (4, 2))).shape == (4, 67)
    assert ticket_tf.blocks[0].mlp.w_in.weight.shape == (128, 128)

    mlp = build_model("ticket-mlp", d_vocab=67)
    assert isinstance(mlp, TicketMLP)
    x = torch.randint(0, 67, (5, 2))
    assert mlp(x).shape == (5, 67) and mlp.neuron_activations(x).shape == (5, 48)
    assert mlp.embed.weight.shape == (67, 500) and mlp.neuron_logit_map().shape == (67, 48)

    img = build_model("ticket-image-mlp", d_in=64)
    assert isinstance(img, ImageMLP)
    assert img(torch.rand(3, 64)).shape == (3, 10)
    assert [tuple(p.shape) for p in img.parameters()] == [(200, 64), (200, 200), (10, 200)]


def test_no_biases_anywhere():
    for name in MODELS:
        model = build_model(name)
        assert all(p.dim() >= 2 for p in model.parameters()), name


def test_unknown_preset():
    with pytest.raises(ValueError, match="allowed: grok-transformer"):
        build_model("gpt5")


def test_causal_mask_last_token_does_not_change_earlier_logits():
    torch.manual_seed(0)
    model = build_model("grok-transformer", d_vocab=20, d_model=32, d_head=8, d_mlp=64)
    x = torch.randint(0, 20, (6, 3))
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 20
    a, b = model(x, all_positions=True), model(y, all_positions=True)
    assert torch.allclose(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2], b[:, 2])
    assert torch.allclose(model(x), a[:, -1])


def test_ticket_mlp_is_symmetric_in_its_tokens():
    torch.manual_seed(0)
    model = build_model("ticket-mlp", d_vocab=11, d_emb=16, d_hidden=8)
    x = torch.randint(0, 11, (5, 2))
    assert torch.allclose(model(x), model(x.flip(1)))  # the two tokens are summed


def test_init_is_deterministic_and_scaled():
    torch.manual_seed(3)
    a = build_model("ticket-mlp")
    torch.manual_seed(3)
    b = build_model("ticket-mlp")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # N(0, 1/fan_in): embedding fan-in is the vocabulary, linear layers their input width.
    assert abs(float(a.embed.weight.detach().std()) - 1 / math.sqrt(67)) < 0.01
    assert abs(float(a.inproj.weight.detach().std()) - 1 / math.sqrt(500)) < 0.005
    torch.manual_seed(3)
    img = build_model("ticket-image-mlp")
    assert abs(float(img.layers[0].weight.detach().std()) - 8 / math.sqrt(784)) < 0.01


def test_double_precision_forward():
    model = build_model("grok-transformer", d_vocab=12, d_model=16, d_head=4, d_mlp=32).double()
    assert model(torch.randint(0, 12, (2, 3))).dtype == torch.float64
