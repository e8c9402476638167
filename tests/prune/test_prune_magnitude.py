"""Magnitude and random masks against brute force; rate conventions; tickets."""

from __future__ import annotations

import math

import pytest
import torch

from xlab.models import build_model
from xlab.prune import (
    PruneError,
    layer_densities,
    magnitude_masks,
    make_ticket,
    mask_density,
    prunable_names,
    random_masks,
    rate_from_sparsity,
    shuffled_masks,
)


def _model():
    torch.manual_seed(0)
    return build_model("ticket-transformer", d_vocab=11, d_model=16, d_head=16, d_mlp=16)


def test_prunable_names_default_and_selection():
    model = _model()
    names = prunable_names(model)
    assert names[0] == "embed.weight" and names[-1] == "unembed.weight" and len(names) == 8
    assert prunable_names(model, exclude=["embed.*", "unembed.*"]) == names[1:-1]
    assert prunable_names(model, include=["*.mlp.*"]) == [
        "blocks.0.mlp.w_in.weight",
        "blocks.0.mlp.w_out.weight",
    ]
    assert prunable_names(model.state_dict()) == names
    with pytest.raises(PruneError):
        prunable_names(model, include=["nothing*"])


def test_global_magnitude_matches_brute_force():
    model = _model()
    rate = 0.6
    masks = magnitude_masks(model, rate)
    everything = torch.cat([p.detach().abs().flatten() for p in model.parameters()])
    n_prune = math.floor(rate * everything.numel())
    threshold = everything.sort().values[n_prune - 1]  # largest pruned magnitude
    for name, p in model.named_parameters():
        assert torch.equal(masks[name], p.detach().abs() > threshold), name
    assert sum(int((~m).sum()) for m in masks.values()) == n_prune
    assert mask_density(masks) == pytest.approx(1 - n_prune / everything.numel())


def test_layer_wise_keeps_the_fraction_per_layer():
    model = _model()
    masks = magnitude_masks(model, 0.7, scope="layer")
    for name, p in model.named_parameters():
        n = p.numel()
        assert int(masks[name].sum()) == n - math.floor(0.7 * n)
        kept_min = p.detach().abs()[masks[name]].min()
        pruned_max = p.detach().abs()[~masks[name]].max()
        assert kept_min >= pruned_max
    assert magnitude_masks(model, 0.7, scope="local").keys() == masks.keys()  # the tickets code's name


def test_rate_conventions_and_errors():
    assert rate_from_sparsity(0.4) == pytest.approx(0.6)  # the tickets code's default
    model = _model()
    assert mask_density(magnitude_masks(model, 0.0)) == 1.0
    with pytest.raises(ValueError, match="fraction pruned"):
        magnitude_masks(model, 1.0)
    with pytest.raises(ValueError, match="scope"):
        magnitude_masks(model, 0.5, scope="row")


def test_random_masks_density_and_determinism():
    model = _model()
    a = random_masks(model, 0.6, seed=1)
    b = random_masks(model, 0.6, seed=1)
    c = random_masks(model, 0.6, seed=2)
    assert all(torch.equal(a[n], b[n]) for n in a) and not all(torch.equal(a[n], c[n]) for n in a)
    total = sum(m.numel() for m in a.values())
    assert sum(int((~m).sum()) for m in a.values()) == math.floor(0.6 * total)
    layer = random_masks(model, 0.5, seed=0, scope="layer")
    assert all(int((~m).sum()) == math.floor(0.5 * m.numel()) for m in layer.values())
    ticket = magnitude_masks(model, 0.6)
    shuffled = shuffled_masks(ticket, seed=0)
    assert layer_densities(shuffled) == layer_densities(ticket)
    assert not all(torch.equal(shuffled[n], ticket[n]) for n in ticket)


def test_make_ticket_masks_trained_and_rewinds_init():
    model = _model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    init_masked, masks = make_ticket(trained, init, rate=0.6)
    assert all(torch.equal(masks[n], magnitude_masks(trained, 0.6)[n]) for n in masks)
    for name in init:
        assert torch.equal(init_masked[name], init[name] * masks[name])
    assert set(init_masked) == set(init)
    assert mask_density(masks) == pytest.approx(0.4, abs=1e-3)
