"""Grokking tickets: magnitude masks from trained weights applied to the initial weights.

The recipe of the tickets paper: train dense to full generalization, score ``|w|`` of the trained
weights, prune one-shot (globally over all weight matrices by default), rewind to the exact initial
weights keeping the mask, retrain with the same hyperparameters. Tickets from earlier checkpoints
(memorization, transition) are made the same way from those checkpoints' states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from xlab.prune.magnitude import magnitude_masks
from xlab.prune.rewind import State, rewind_state
from xlab.prune.topk import Masks, PruneError, prunable_names


def make_ticket(
    trained_state: Mapping[str, torch.Tensor],
    init_state: Mapping[str, torch.Tensor],
    rate: float,
    scope: str = "global",
    names: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> tuple[State, Masks]:
    """``(init_state_masked, masks)``: prune ``rate`` of the weights by trained ``|w|`` and rewind.

    Load the state, then keep the masks applied while retraining::

        init_masked, masks = make_ticket(trained, init, rate=0.6)
        model.load_state_dict(init_masked)
        apply_masks(model, masks, optimizer)
    """
    names = list(names) if names is not None else prunable_names(trained_state, include, exclude)
    for n in names:
        if n not in init_state or tuple(init_state[n].shape) != tuple(trained_state[n].shape):
            raise PruneError(f"{n!r} is missing from the initial state or has another shape there")
    masks = magnitude_masks(trained_state, rate, scope, names=names)
    return rewind_state(init_state, masks), masks
