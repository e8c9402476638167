"""Pruning at initialization (PaI): SNIP, GraSP and SynFlow scores, then a global top-k keep.

The tickets paper uses these as baselines that prune the *initial* network without training it
(they give no grokking speed-up). Score definitions follow the Synaptic-Flow code base that the
tickets code copies; higher scores are kept:

* SNIP (Lee et al. 2019): ``|g * w|``, the loss gradient times the weight on one batch.
* GraSP (Wang et al. 2020): ``w * (H g)``, Hessian-gradient product of the loss on logits divided
  by a temperature (200). GraSP removes the largest ``-w * Hg``, i.e. keeps the largest ``w * Hg``.
* SynFlow (Tanaka et al. 2020): ``|w * dR/dw|`` with ``R`` the summed output of the network whose
  weights are replaced by ``|w|``, computed in float64 on a copy. For float inputs the input is a
  single all-ones example, as in the paper; token inputs cannot be all-ones vectors, so the given
  batch of token ids is used, as the tickets code does. ``iterations > 1`` prunes iteratively with
  the paper's exponential schedule (the tickets code scores once).

SNIP and GraSP scores are divided by the sum (GraSP: |sum|) over all selected weights, as in the
reference code; this does not change which weights are kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from xlab.prune.topk import Masks, PruneError, check_rate, masks_from_scores, prunable_names

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]

PAI_METHODS = ("snip", "grasp", "synflow")


def _params(model: nn.Module, names: Sequence[str] | None) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    names = list(names) if names is not None else prunable_names(model)
    missing = [n for n in names if n not in params]
    if missing:
        raise PruneError(f"model has no parameters {missing}")
    return {n: params[n] for n in names}


def snip_scores(
    model: nn.Module, batch: Batch, loss_fn: LossFn = F.cross_entropy, names: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity ``|g * w|`` on one batch ``(x, y)``, normalised to sum 1."""
    params = _params(model, names)
    x, y = batch
    grads = torch.autograd.grad(loss_fn(model(x), y), list(params.values()), allow_unused=True)
    scores = {
        n: (torch.zeros_like(p) if g is None else (g * p).abs()).detach()
        for (n, p), g in zip(params.items(), grads, strict=True)
    }
    total = sum(float(s.sum()) for s in scores.values())
    return {n: s / total for n, s in scores.items()} if total > 0 else scores


def grasp_scores(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFn = F.cross_entropy,
    names: Sequence[str] | None = None,
    temperature: float = 200.0,
) -> dict[str, torch.Tensor]:
    """GraSP scores ``w * (H g)`` on one batch (keep the largest), normalised by ``|sum|``."""
    params = _params(model, names)
    plist = list(params.values())
    x, y = batch
    grads = torch.autograd.grad(loss_fn(model(x) / temperature, y), plist, allow_unused=True)
    stopped = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(plist, grads, strict=True)]
    grads = torch.autograd.grad(
        loss_fn(model(x) / temperature, y), plist, create_graph=True, allow_unused=True
    )
    z = sum((g * s).sum() for g, s in zip(grads, stopped, strict=True) if g is not None)
    if not isinstance(z, torch.Tensor) or not z.requires_grad:
        raise PruneError("GraSP needs a loss that depends on the selected weights")
    hg = torch.autograd.grad(z, plist, allow_unused=True)
    scores = {
        n: (torch.zeros_like(p) if h is None else p * h).detach()
        for (n, p), h in zip(params.items(), hg, strict=True)
    }
    total = abs(sum(float(s.sum()) for s in scores.values())) + 1e-10
    return {n: s / total for n, s in scores.items()}


def synflow_scores(
    model: nn.Module,
    example_input: torch.Tensor,
    names: Sequence[str] | None = None,
    masks: Masks | None = None,
) -> dict[str, torch.Tensor]:
    """SynFlow scores ``|w * dR/dw|`` (all >= 0) on a float64 copy with ``|w|``; ``masks`` zero weights first."""
    params = _params(model, names)
    net = copy.deepcopy(model).double()
    net_params = dict(net.named_parameters())
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        for n, m in (masks or {}).items():
            net_params[n].masked_fill_(~m.to(net_params[n].device), 0)
    x = example_input
    if x.is_floating_point():
        x = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    plist = [net_params[n] for n in params]
    grads = torch.autograd.grad(net(x).sum(), plist, allow_unused=True)
    return {
        n: (torch.zeros_like(q) if g is None else (g * q).abs()).detach().to(params[n].dtype)
        for n, q, g in zip(params, plist, grads, strict=True)
    }


def pai_masks(
    method: str,
    model: nn.Module,
    rate: float,
    batch: Batch,
    loss_fn: LossFn = F.cross_entropy,
    scope: str = "global",
    names: Sequence[str] | None = None,
    iterations: int = 1,
) -> Masks:
    """Masks from ``method`` in :data:`PAI_METHODS` scored at the model's current (initial) weights.

    ``batch`` is ``(x, y)``; SynFlow uses only ``x`` (see module doc). ``iterations`` applies to SynFlow.
    """
    rate = check_rate(rate)
    method = method.lower()
    if method == "snip":
        return masks_from_scores(snip_scores(model, batch, loss_fn, names), rate, scope)
    if method == "grasp":
        return masks_from_scores(grasp_scores(model, batch, loss_fn, names), rate, scope)
    if method != "synflow":
        raise PruneError(f"unknown pruning-at-init method {method!r}; allowed: {', '.join(PAI_METHODS)}")
    if iterations < 1:
        raise PruneError(f"iterations must be >= 1, got {iterations}")
    masks: Masks | None = None
    for i in range(1, iterations + 1):
        scores = synflow_scores(model, batch[0], names, masks)
        if masks is not None:  # already-pruned weights must stay pruned
            scores = {n: s.masked_fill(~masks[n], float("-inf")) for n, s in scores.items()}
        # Exponential schedule: the kept fraction shrinks geometrically to 1 - rate.
        masks = masks_from_scores(scores, 1.0 - (1.0 - rate) ** (i / iterations), scope)
    return masks
