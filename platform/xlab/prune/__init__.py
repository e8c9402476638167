"""Pruning: masks kept applied during training, magnitude / random / at-init pruning, rewinding, tickets.

``rate`` everywhere is the fraction pruned; masks are ``{param_name: bool tensor}`` (True = kept).
See :mod:`xlab.prune.topk` for the conventions.
"""

from xlab.prune.magnitude import magnitude_masks, magnitude_scores
from xlab.prune.masks import MaskedParams, apply_masks, get_masks, remove_masks
from xlab.prune.pai import PAI_METHODS, grasp_scores, pai_masks, snip_scores, synflow_scores
from xlab.prune.random import random_masks, shuffled_masks
from xlab.prune.rewind import clone_state, rewind, rewind_state, same_norm_ratio, same_norm_state
from xlab.prune.ticket import make_ticket
from xlab.prune.topk import (
    PruneError,
    layer_densities,
    mask_density,
    masks_from_scores,
    prunable_names,
    rate_from_sparsity,
)

__all__ = [
    "PAI_METHODS",
    "MaskedParams",
    "PruneError",
    "apply_masks",
    "clone_state",
    "get_masks",
    "grasp_scores",
    "layer_densities",
    "magnitude_masks",
    "magnitude_scores",
    "make_ticket",
    "mask_density",
    "masks_from_scores",
    "pai_masks",
    "prunable_names",
    "random_masks",
    "rate_from_sparsity",
    "remove_masks",
    "rewind",
    "rewind_state",
    "same_norm_ratio",
    "same_norm_state",
    "shuffled_masks",
    "snip_scores",
    "synflow_scores",
]
