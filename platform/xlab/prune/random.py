"""Random pruning baselines: masks of a given density with uniformly random kept positions.

A random mask of the ticket's density is the tickets paper's control for "is it the sparsity or the
choice of weights?". :func:`random_masks` draws fresh masks at a rate; :func:`shuffled_masks` keeps
each tensor's kept count of existing masks and shuffles their positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from xlab.prune.topk import Masks, WeightSource, masks_from_scores, named_weights, prunable_names


def random_masks(
    weights: WeightSource,
    rate: float,
    seed: int = 0,
    scope: str = "global",
    names: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> Masks:
    """Masks pruning exactly ``floor(rate * n)`` uniformly random weights (over all, or per tensor)."""
    all_weights = named_weights(weights)
    names = list(names) if names is not None else prunable_names(weights, include, exclude)
    gen = torch.Generator().manual_seed(seed)
    # Random scores on CPU with a seeded generator: the same seed gives the same mask on any device.
    scores = {n: torch.rand(all_weights[n].shape, generator=gen, dtype=torch.float64) for n in names}
    masks = masks_from_scores(scores, rate, scope)
    return {n: m.to(all_weights[n].device) for n, m in masks.items()}


def shuffled_masks(masks: Mapping[str, torch.Tensor], seed: int = 0) -> Masks:
    """Each mask with its kept positions permuted at random (same per-tensor density)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for n, m in masks.items():
        perm = torch.randperm(m.numel(), generator=gen)
        out[n] = m.detach().flatten().cpu()[perm].view(m.shape).to(m.device)
    return out
