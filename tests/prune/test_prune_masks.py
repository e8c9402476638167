"""Masks stay applied through training, checkpoint loading and rewinding."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from xlab.models import build_model
from xlab.prune import apply_masks, get_masks, magnitude_masks, random_masks, remove_masks


def _tiny():
    torch.manual_seed(0)
    return build_model("ticket-mlp", d_vocab=7, d_emb=12, d_hidden=6)


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 7, (32, 2), generator=g)
    return x, (x[:, 0] + x[:, 1]) % 7


def test_masks_stay_applied_through_adamw_with_weight_decay():
    model = _tiny()
    masks = random_masks(model, rate=0.5, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))
    masked = apply_masks(model, masks, optimizer=opt)
    assert get_masks(model) is masked and abs(masked.density() - 0.5) < 0.01
    x, y = _batch()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for name, param in model.named_parameters():
            assert bool((param.grad[~masks[name]] == 0).all()), name
        opt.step()
        for name, param in model.named_parameters():
            assert bool((param[~masks[name]] == 0).all()), name
    assert masked.check()
    for name, param in model.named_parameters():  # kept weights do train
        assert not torch.equal(param[masks[name]], before[name][masks[name]])


def test_remask_after_step_even_with_stale_optimizer_state():
    model = _tiny()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = _batch()
    for _ in range(3):  # dense steps build up momentum on every weight
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    masks = magnitude_masks(model, rate=0.7)
    apply_masks(model, masks, optimizer=opt)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()  # stale momentum moves pruned weights, the post-step hook zeroes them again
    assert get_masks(model).check()


def test_forward_uses_masked_weights_and_load_state_dict_remasks():
    model = _tiny()
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    masks = magnitude_masks(model, rate=0.6)
    apply_masks(model, masks)
    x, _ = _batch()
    manual = build_model("ticket-mlp", d_vocab=7, d_emb=12, d_hidden=6)
    manual.load_state_dict({k: v * masks[k] for k, v in dense.items()})
    assert torch.allclose(model(x), manual(x))
    model.load_state_dict(dense)  # e.g. loading a dense checkpoint: the mask survives
    assert get_masks(model).check()
    assert set(model.state_dict()) == set(dense)  # names unchanged


def test_remove_masks_and_state_dict_roundtrip(tmp_path):
    model = _tiny()
    masks = magnitude_masks(model, rate=0.5, scope="layer")
    masked = apply_masks(model, masks)
    torch.save(masked.state_dict(), tmp_path / "masks.pt")
    loaded = torch.load(tmp_path / "masks.pt")
    assert all(torch.equal(loaded[n], masks[n]) and loaded[n].dtype == torch.bool for n in masks)
    returned = remove_masks(model)
    assert get_masks(model) is None and set(returned) == set(masks)
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()
    assert any(bool((p.grad[~masks[n]] != 0).any()) for n, p in model.named_parameters())
