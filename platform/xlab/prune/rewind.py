"""Rewinding to initial weights, and the same-norm dense control of the tickets paper.

A ticket is the *initial* weights with the mask found on the trained weights: :func:`rewind_state`
builds that state dict and :func:`rewind` loads it into a model and keeps the mask applied.

The same-norm control asks whether a ticket only helps because it starts with a smaller weight norm:
every initial matrix is scaled by ``r = mean_l ||m_l * W0_l|| / mean_l ||W0_l||`` (Frobenius norms,
mean over the masked matrices ``l``) and trained dense. The paper reports ``r = 0.65`` at keep 0.4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from xlab.prune.masks import MaskedParams, apply_masks
from xlab.prune.topk import PruneError

State = dict[str, torch.Tensor]


def clone_state(source: nn.Module | Mapping[str, torch.Tensor]) -> State:
    """A detached deep copy of a module's state dict (or of a state dict), e.g. to keep the init."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    return {k: v.detach().clone() for k, v in state.items()}


def _check(state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    for n, m in masks.items():
        if n not in state:
            raise PruneError(f"mask {n!r} has no entry in the state dict")
        if tuple(state[n].shape) != tuple(m.shape):
            raise PruneError(f"mask {n!r} has shape {tuple(m.shape)}, state entry {tuple(state[n].shape)}")


def rewind_state(init_state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> State:
    """Copy of ``init_state`` with the pruned entries set to zero (unmasked entries exact initial values)."""
    _check(init_state, masks)
    out = clone_state(init_state)
    for n, m in masks.items():
        out[n].masked_fill_(~m.to(out[n].device, torch.bool), 0)
    return out


def rewind(
    model: nn.Module,
    init_state: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
) -> MaskedParams:
    """Load the exact initial weights into ``model`` and keep ``masks`` applied from then on."""
    masked = apply_masks(model, masks, optimizer)
    model.load_state_dict(rewind_state(init_state, masks))
    return masked


def same_norm_ratio(
    init_state: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    names: Sequence[str] | None = None,
) -> float:
    """``r = mean_l ||m_l * W0_l|| / mean_l ||W0_l||`` over the masked matrices (or ``names``)."""
    _check(init_state, masks)
    names = list(names) if names is not None else list(masks)
    masked_norms = [float((init_state[n].double() * masks[n].to(init_state[n].device)).norm()) for n in names]
    norms = [float(init_state[n].double().norm()) for n in names]
    return (sum(masked_norms) / len(names)) / (sum(norms) / len(names))


def same_norm_state(
    init_state: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    names: Sequence[str] | None = None,
) -> tuple[State, float]:
    """Dense initial state with every masked matrix (or ``names``) scaled by :func:`same_norm_ratio`."""
    r = same_norm_ratio(init_state, masks, names)
    out = clone_state(init_state)
    for n in names if names is not None else masks:
        out[n].mul_(r)
    return out, r
