"""Pruning at initialization (SNIP, GraSP, SynFlow), rewinding and the same-norm control."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from xlab.models import build_model
from xlab.prune import (
    apply_masks,
    clone_state,
    get_masks,
    grasp_scores,
    magnitude_masks,
    mask_density,
    pai_masks,
    rewind,
    same_norm_ratio,
    same_norm_state,
    snip_scores,
    synflow_scores,
)


def _image_net():
    torch.manual_seed(0)
    return build_model("ticket-image-mlp", d_in=8, hidden=(6, 5), n_out=3, init_scale=1.0)


def _image_batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)


@pytest.mark.parametrize("score_fn", [snip_scores, grasp_scores])
def test_gradient_scores_shapes(score_fn):
    model = _image_net()
    scores = score_fn(model, _image_batch())
    assert {n: tuple(s.shape) for n, s in scores.items()} == {
        n: tuple(p.shape) for n, p in model.named_parameters()
    }
    assert all(torch.isfinite(s).all() for s in scores.values())


def test_snip_is_abs_grad_times_weight():
    model = _image_net()
    x, y = _image_batch()
    F.cross_entropy(model(x), y).backward()
    raw = {n: (p.grad * p).abs().detach() for n, p in model.named_parameters()}
    total = sum(float(r.sum()) for r in raw.values())
    scores = snip_scores(model, (x, y))
    assert all(torch.allclose(scores[n], raw[n] / total) for n in raw)


def test_synflow_positive_and_data_independent():
    model = _image_net()
    scores = synflow_scores(model, _image_batch()[0])
    assert all(bool((s > 0).all()) for s in scores.values())
    again = synflow_scores(model, torch.zeros(3, 8))  # float inputs are replaced by one all-ones example
    assert all(torch.allclose(scores[n], again[n]) for n in scores)
    assert all(not bool((p < 0).all()) for p in model.parameters())  # the model itself is untouched


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_pai_kept_fraction(method):
    model = _image_net()
    total = sum(p.numel() for p in model.parameters())
    masks = pai_masks(method, model, 0.6, _image_batch())
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == total - math.floor(0.6 * total)
    layer = pai_masks(method, model, 0.5, _image_batch(), scope="layer")
    assert all(int(m.sum()) == m.numel() - math.floor(0.5 * m.numel()) for m in layer.values())


def test_pai_on_token_model_and_iterative_synflow():
    torch.manual_seed(0)
    model = build_model("ticket-transformer", d_vocab=7, d_model=8, d_head=8, d_mlp=8)
    x = torch.randint(0, 7, (10, 2))
    batch = (x, (x[:, 0] + x[:, 1]) % 7)
    for method in ("snip", "grasp", "synflow"):
        assert mask_density(pai_masks(method, model, 0.6, batch)) == pytest.approx(0.4, abs=0.01)
    iterative = pai_masks("synflow", model, 0.8, batch, iterations=4)
    assert mask_density(iterative) == pytest.approx(0.2, abs=0.01)
    with pytest.raises(ValueError, match="allowed: snip, grasp, synflow"):
        pai_masks("lamp", model, 0.5, batch)


def test_same_norm_ratio_and_state():
    model = _image_net()
    init = clone_state(model)
    masks = magnitude_masks(model, 0.6)
    r = same_norm_ratio(init, masks)
    masked_mean = sum(float((init[n] * masks[n]).norm()) for n in masks) / len(masks)
    dense_mean = sum(float(init[n].norm()) for n in masks) / len(masks)
    assert r == pytest.approx(masked_mean / dense_mean) and 0 < r < 1
    scaled, r2 = same_norm_state(init, masks)
    assert r2 == r
    mean_scaled = sum(float(scaled[n].norm()) for n in masks) / len(masks)
    assert mean_scaled == pytest.approx(masked_mean)  # same mean norm as the ticket, but dense
    assert all(torch.allclose(scaled[n], init[n] * r) for n in masks)


def test_same_norm_ratio_random_keep_04_near_065():
    # For a random 40% keep, each ||m * W|| ~ sqrt(0.4) ||W||: the paper's r = 0.65 at keep 0.4.
    torch.manual_seed(0)
    model = build_model("ticket-mlp")
    init = clone_state(model)
    masks = {n: torch.rand(p.shape) < 0.4 for n, p in model.named_parameters()}
    assert same_norm_ratio(init, masks) == pytest.approx(math.sqrt(0.4), abs=0.01)


def test_rewind_exact_initial_weights_with_mask():
    model = _image_net()
    init = clone_state(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0)
    x, y = _image_batch()
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    masks = magnitude_masks(model, 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0)
    rewind(model, init, masks, optimizer=opt)
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), init[n] * masks[n])
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    assert get_masks(model).check()
    apply_masks(model, masks)  # re-applying replaces the old masks
    assert get_masks(model).check()
