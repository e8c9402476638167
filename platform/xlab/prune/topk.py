"""Which weights are prunable, and how scores become masks (shared by every pruning method).

Conventions of the whole :mod:`xlab.prune` API:

* ``rate`` is the fraction **pruned** (0.6 = 60% of the prunable weights set to zero). The
  grokking-tickets code's ``sparsity`` argument is the fraction **kept**; convert with
  :func:`rate_from_sparsity` (its default ``sparsity=0.4`` is our ``rate=0.6``).
* A mask is a ``dict[str, torch.Tensor]`` from parameter name to a bool tensor of the parameter's
  shape, ``True`` where the weight is kept. Masks are plain tensors, so ``torch.save`` stores them
  beside a checkpoint.
* Prunable by default: every floating parameter with ``dim >= 2``, i.e. all weight matrices
  including the embedding and unembedding (the paper prunes them all); select with ``include`` /
  ``exclude`` glob patterns over names, or pass ``names`` explicitly.
* Exactly ``floor(rate * n)`` weights are pruned (``n`` counted globally or per layer); the lowest
  scores go first and ties are broken by position, so results are deterministic.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import nn

from xlab.errors import XlabError

Scope = Literal["global", "layer"]
Masks = dict[str, torch.Tensor]
WeightSource = nn.Module | Mapping[str, torch.Tensor]


class PruneError(XlabError, ValueError):
    """A bad pruning request (rate out of range, unknown scope, mask not matching the model...)."""


def rate_from_sparsity(sparsity: float) -> float:
    """Our ``rate`` (fraction pruned) from the tickets code's ``sparsity`` (fraction kept)."""
    return 1.0 - float(sparsity)


def check_rate(rate: float) -> float:
    if not 0.0 <= float(rate) < 1.0:
        raise PruneError(f"rate is the fraction pruned and must be in [0, 1), got {rate!r}")
    return float(rate)


def check_scope(scope: str) -> Scope:
    # "local" is the tickets code's name for layer-wise pruning.
    if scope in ("layer", "local", "layerwise"):
        return "layer"
    if scope == "global":
        return "global"
    raise PruneError(f"unknown pruning scope {scope!r}; allowed: global, layer")


def named_weights(source: WeightSource) -> dict[str, torch.Tensor]:
    """Parameters of a module, or the entries of a state dict, by name (detached)."""
    if isinstance(source, nn.Module):
        return {n: p.detach() for n, p in source.named_parameters()}
    return {n: t.detach() for n, t in source.items() if isinstance(t, torch.Tensor)}


def prunable_names(
    source: WeightSource,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> list[str]:
    """Names of the prunable weights: floating tensors with ``dim >= 2``, filtered by glob patterns.

    From a state dict every floating ``dim >= 2`` entry counts, buffers included, so models should
    keep matrix-shaped buffers non-persistent (ours have none) or callers pass ``exclude``.
    """
    names = [n for n, t in named_weights(source).items() if t.is_floating_point() and t.dim() >= 2]
    if include is not None:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in include)]
    if exclude is not None:
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, pat) for pat in exclude)]
    if not names:
        raise PruneError(f"no prunable weights selected (include={include!r}, exclude={exclude!r})")
    return names


def n_to_prune(rate: float, n: int) -> int:
    # floor as in the tickets code; the epsilon absorbs float noise such as 0.29 * 100 = 28.999...
    return math.floor(check_rate(rate) * n + 1e-9)


def _prune_lowest(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if n_prune > 0:
        order = torch.sort(flat, stable=True).indices
        keep[order[:n_prune]] = False
    return keep


def masks_from_scores(scores: Mapping[str, torch.Tensor], rate: float, scope: str = "global") -> Masks:
    """Keep the highest scores: prune ``floor(rate * n)`` lowest, over all tensors or per tensor."""
    scope = check_scope(scope)
    if not scores:
        raise PruneError("no scores given")
    if scope == "layer":
        return {
            n: _prune_lowest(s.detach().flatten(), n_to_prune(rate, s.numel())).view(s.shape)
            for n, s in scores.items()
        }
    flat = torch.cat([s.detach().flatten().to(torch.float64).cpu() for s in scores.values()])
    keep = _prune_lowest(flat, n_to_prune(rate, flat.numel()))
    masks, start = {}, 0
    for n, s in scores.items():
        masks[n] = keep[start : start + s.numel()].view(s.shape).to(s.device)
        start += s.numel()
    return masks


def mask_density(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of weights kept over all masks."""
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return kept / total if total else 1.0


def layer_densities(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction kept per tensor."""
    return {n: float(m.float().mean()) for n, m in masks.items()}
