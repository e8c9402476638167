"""Magnitude pruning: keep the weights with the largest ``|w|``, globally or layer by layer.

The grokking-tickets recipe scores the weights of the *trained* dense network and prunes one-shot
and globally over all weight matrices (embedding, unembedding, attention, MLP); ``rate`` is the
fraction pruned (the paper's ``sparsity`` is the fraction kept, see :mod:`xlab.prune.topk`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xlab.prune.topk import Masks, WeightSource, masks_from_scores, named_weights, prunable_names


def magnitude_scores(
    weights: WeightSource,
    names: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """``|w|`` of each prunable weight (default selection: all floating tensors with ``dim >= 2``)."""
    all_weights = named_weights(weights)
    names = list(names) if names is not None else prunable_names(weights, include, exclude)
    return {n: all_weights[n].abs() for n in names}


def magnitude_masks(
    weights: WeightSource,
    rate: float,
    scope: str = "global",
    names: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> Masks:
    """Masks pruning the ``floor(rate * n)`` smallest ``|w|``: ``scope='global'`` over all selected
    weights together, ``'layer'`` separately in each tensor. ``weights``: a module or a state dict."""
    return masks_from_scores(magnitude_scores(weights, names, include, exclude), rate, scope)
