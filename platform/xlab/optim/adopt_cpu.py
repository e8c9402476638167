"""ADOPT's eager update on CPU: in-place ops on a reused scratch buffer, no temporaries per step.

Why a CPU path of its own. Profile of one step of the general ``foreach`` code on CPU (10M
parameters in 20 tensors, one thread): ``torch._foreach_div`` and ``torch._foreach_sqrt`` took 44%
and 20% of the step, every in-place op (clamps, lerp, add, addcmul) 4-6%. The two ops that return
new tensors cost 4-8x an in-place op over the same data: on CPU ``torch._foreach_*`` has no
multi-tensor kernels (it loops over the tensors) and a multi-megabyte result is fresh memory from
the operating system, so every page of it faults on first write. ``torch.optim.Adam(foreach=True)``
has one such op per step, the general ADOPT path two, plus two more passes for the clip.

Here the normalised gradient is computed in a scratch buffer that the optimizer keeps across steps,
with ``out=`` and in-place ops in the reference loop's order, with one exception: the normaliser is
``g * min(rsqrt(v), 1 / eps)`` rather than ``g / max(sqrt(v), eps)``, within 2 ulp of it and cheaper
(the square root was the largest op of a step; see :func:`_inverse_norm`). The loop and foreach paths
on CPU both use it, so they agree with each other bitwise. A tensor larger than
:data:`BLOCK` is updated in chunks of that size, which bounds the scratch and keeps a chunk's working
set in the last-level cache between its ops. Small tensors are packed into blocks updated with
``torch._foreach_*`` ops; how the tensors of a group map onto blocks and scratch views is planned
once per set of shapes and cached, so a step makes no per-tensor torch call for packing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["BLOCK", "MIN_PACK", "SMALL", "Hyper", "foreach_update", "tensor_update"]

BLOCK = 1 << 20
"""Elements per chunk (4 MiB of float32 per stream). A chunk's working set (p, g, m, v and the
scratch) stays in the last-level cache, and the ~8 ops per chunk are few enough that their dispatch
cost, and with several threads the threads' synchronisation after each op, stays small (on a
shared 2-core machine, 64K-element chunks made a 2-thread step several times slower)."""

SMALL = 1 << 16
"""Tensors of at most this many elements are packed together into blocks of up to :data:`BLOCK`
elements and updated with ``torch._foreach_*`` ops, one call per op and block."""

MIN_PACK = 4
"""Fewer small tensors than this in a block are updated one by one, like larger ones."""

_MAX_PLANS = 16  # cached plans per device and dtype (a new set of updating tensors makes a new one)
_MAX_VIEWS = 1024  # cached scratch views per device and dtype, one per tensor shape

Scratch = dict[Any, Any]
"""Scratch buffers by (device, dtype) and the plans made on them; the optimizer keeps it across steps."""


class Hyper(NamedTuple):
    """A param group's hyperparameters for one step (``lr`` a float)."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decouple: bool
    maximize: bool

    @property
    def effective_grad(self) -> bool:
        """Whether the update needs ``-g`` or ``g + wd * p`` in place of ``p.grad``."""
        return self.maximize or (self.weight_decay != 0 and not self.decouple)


def _scratch(scratch: Scratch | None, like: Tensor, numel: int) -> Tensor:
    """A flat buffer of at least ``numel`` elements of ``like``'s device and dtype, reused if possible."""
    key = (like.device, like.dtype)
    buf = None if scratch is None else scratch.get(key)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=like.dtype, device=like.device)
        if scratch is not None:
            scratch[key] = buf
            scratch.pop(("plans", *key), None)  # their views are on the old buffer
            scratch.pop(("views", *key), None)
    return buf


def tensor_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    bound: float | None,
    hp: Hyper,
    scratch: Scratch | None = None,
) -> None:
    """One real update (not the initialising call) of one tensor, in place, chunk by chunk.

    ``grad`` is ``p.grad`` as it is (never modified): the sign flip and the L2 term are applied in
    the scratch. ``bound`` is the clip bound ``c`` for this update, ``None`` for no clipping.
    """
    width = 2 if hp.effective_grad else 1
    n = param.numel()
    if n <= BLOCK:
        normed, effective = _views(scratch, param, width)
        _chunk_update(param, grad, exp_avg, exp_avg_sq, normed, effective, bound, hp)
        return
    tensors = (param, grad, exp_avg, exp_avg_sq)
    if all(t.is_contiguous() for t in tensors):
        chunks: Any = zip(*(t.view(-1).split(BLOCK) for t in tensors), strict=True)
        n, shape = BLOCK, None
        buf = _scratch(scratch, param, width * n)
    else:  # a large strided tensor (e.g. channels_last): one chunk in a temporary
        chunks, shape = [tensors], param.shape
        buf = torch.empty(width * n, dtype=param.dtype, device=param.device)
    for p, g, m, v in chunks:
        k = p.numel()
        normed = buf[:k].view(shape or (k,))
        effective = buf[n : n + k].view(shape or (k,)) if width == 2 else None
        _chunk_update(p, g, m, v, normed, effective, bound, hp)


def _views(scratch: Scratch | None, p: Tensor, width: int) -> tuple[Tensor, Tensor | None]:
    """Scratch of ``p``'s shape for the normalised [and the effective] gradient, cached per shape."""
    key = ("views", p.device, p.dtype)
    cache = None if scratch is None else scratch.get(key)
    views = None if cache is None else cache.get((width, p.shape))
    if views is None:
        n = p.numel()
        buf = _scratch(scratch, p, width * n)  # may replace the buffer and drop the cached views
        views = buf[:n].view(p.shape), buf[n : 2 * n].view(p.shape) if width == 2 else None
        if scratch is not None:
            cache = scratch.setdefault(key, {})
            if len(cache) >= _MAX_VIEWS:
                cache.clear()
            cache[(width, p.shape)] = views
    return views


def _chunk_update(
    p: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    normed: Tensor,
    effective: Tensor | None,
    bound: float | None,
    hp: Hyper,
) -> None:
    """The update of one chunk; ``normed`` and ``effective`` (the effective gradient, needed with
    ``maximize`` or an L2 term) are scratch of ``p``'s shape."""
    if effective is not None:
        if hp.maximize:
            g = torch.neg(g, out=effective)
            if hp.weight_decay != 0 and not hp.decouple:
                g.add_(p, alpha=hp.weight_decay)
        else:
            g = torch.add(g, p, alpha=hp.weight_decay, out=effective)
    _inverse_norm(v, normed, hp.eps)
    torch.mul(normed, g, out=normed)  # n = g / max(sqrt(v), eps)
    if bound is not None:
        normed.clamp_(-bound, bound)
    m.lerp_(normed, 1 - hp.beta1)
    if hp.weight_decay != 0 and hp.decouple:
        p.mul_(1 - hp.lr * hp.weight_decay)
    p.add_(m, alpha=-hp.lr)
    v.mul_(hp.beta2).addcmul_(g, g, value=1 - hp.beta2)


def _inverse_norm(v: Tensor, out: Tensor, eps: float) -> None:
    """``out = 1 / max(sqrt(v), eps)``, as ``min(rsqrt(v), 1 / eps)``.

    Why not ``sqrt`` and a division: torch's CPU ``sqrt`` costs 1.5-2.3x its ``rsqrt`` here (1M floats,
    2 threads: sqrt + clamp + divide 303 us, rsqrt + clamp + multiply 225 us), and it is the largest
    op of the step. ``g * rsqrt(v)`` is within 2 ulp of ``g / sqrt(v)`` (rsqrt is within 0.75 ulp).
    ``v = 0`` gives ``1 / eps`` (with ``eps = 0``: inf, as the division by zero would).
    """
    torch.rsqrt(v, out=out)
    if eps > 0:
        out.clamp_max_(1 / eps)


class _Plan(NamedTuple):
    """How a list of tensor shapes maps onto update calls and scratch views."""

    large: list[int]
    """Tensors of more than :data:`BLOCK` elements: :func:`tensor_update`, chunk by chunk."""
    alone: list[tuple[int, Tensor, Tensor | None]]
    """``(i, normed, effective)``: a tensor of more than :data:`SMALL` elements and its scratch."""
    packs: list[tuple[list[int], list[Tensor], list[Tensor] | None]]
    """``(indices, normed, effective)``: small tensors updated together, and their scratch."""


def _make_plan(params: list[Tensor], effective_grad: bool, scratch: Scratch | None) -> _Plan:
    large, alone, packs, pack, total = [], [], [], [], 0
    for i, p in enumerate(params):
        k = p.numel()
        if k > BLOCK:
            large.append(i)
        elif k > SMALL:
            alone.append(i)  # (the order of updates does not matter: each tensor's is independent)
        else:
            if pack and total + k > BLOCK:
                packs.append(pack)
                pack, total = [], 0
            pack.append(i)
            total += k
    if pack:
        packs.append(pack)
    # A foreach call costs several plain op calls (argument checks, scalars wrapped per call): a pack
    # of a few tensors is cheaper op by op.
    alone += [i for pack in packs if len(pack) < MIN_PACK for i in pack]
    packs = [pack for pack in packs if len(pack) >= MIN_PACK]
    sizes = [p.numel() for p in params]
    size = max([sizes[i] for i in alone] + [sum(sizes[i] for i in pack) for pack in packs] + [1])
    slots = 2 if effective_grad else 1
    buf = _scratch(scratch, params[0], slots * size)

    def views(slot: int, indices: list[int]) -> list[Tensor]:
        flat = buf[slot * size : slot * size + sum(sizes[i] for i in indices)]
        return [
            t.view(params[i].shape)
            for t, i in zip(flat.split([sizes[i] for i in indices]), indices, strict=True)
        ]

    return _Plan(
        large=large,
        alone=[(i, views(0, [i])[0], views(1, [i])[0] if effective_grad else None) for i in alone],
        packs=[(pack, views(0, pack), views(1, pack) if effective_grad else None) for pack in packs],
    )


def _plan(params: list[Tensor], effective_grad: bool, scratch: Scratch | None) -> _Plan:
    if scratch is None:
        return _make_plan(params, effective_grad, scratch)
    key = (effective_grad, *(p.shape for p in params))
    plans = scratch.get(("plans", params[0].device, params[0].dtype), {})
    plan = plans.get(key)
    if plan is None:
        plan = _make_plan(params, effective_grad, scratch)  # may replace the buffer and drop the plans
        plans = scratch.setdefault(("plans", params[0].device, params[0].dtype), {})
        if len(plans) >= _MAX_PLANS:
            plans.clear()
        plans[key] = plan
    return plan


def foreach_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    bounds: list[float] | None,
    hp: Hyper,
    scratch: Scratch | None = None,
) -> None:
    """One real update of tensors of one device and dtype, with ``torch._foreach_*`` for small ones.

    A tensor of more than :data:`SMALL` elements is updated on its own with the ops of
    :func:`tensor_update` (on CPU a ``torch._foreach_*`` op over one tensor is that tensor's op, and
    the ``out=`` forms spare two copies into the scratch); smaller tensors are packed into blocks of
    up to :data:`BLOCK` elements, one ``torch._foreach_*`` call per op and block. ``bounds[i]`` is
    tensor ``i``'s clip bound (``None``: no clipping).
    """
    plan = _plan(params, hp.effective_grad, scratch)
    uniform = bounds is None or len(set(bounds)) == 1
    for i in plan.large:
        bound = None if bounds is None else bounds[i]
        tensor_update(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], bound, hp, scratch)
    for i, normed, effective in plan.alone:
        bound = None if bounds is None else bounds[i]
        _chunk_update(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], normed, effective, bound, hp)
    for indices, normed, effective in plan.packs:
        clip = None if bounds is None else bounds[0] if uniform else [bounds[i] for i in indices]
        block = ([lst[i] for i in indices] for lst in (params, grads, exp_avgs, exp_avg_sqs))
        _foreach_block(*block, normed, effective, clip, hp)


def _foreach_block(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    normed: list[Tensor],
    effective: list[Tensor] | None,
    clip: float | list[float] | None,
    hp: Hyper,
) -> None:
    """The update of one block; ``normed`` and ``effective`` are scratch views."""
    if effective is not None:  # effective gradient: sign flip and L2 term, as the reference loop
        torch._foreach_copy_(effective, grads)
        if hp.maximize:
            torch._foreach_neg_(effective)
        if hp.weight_decay != 0 and not hp.decouple:
            torch._foreach_add_(effective, params, alpha=hp.weight_decay)
        grads = effective
    torch._foreach_copy_(normed, exp_avg_sqs)
    torch._foreach_rsqrt_(normed)  # 1 / max(sqrt(v), eps) as in _inverse_norm
    if hp.eps > 0:
        torch._foreach_clamp_max_(normed, 1 / hp.eps)
    torch._foreach_mul_(normed, grads)  # n = g / max(sqrt(v), eps)
    if clip is not None:
        torch._foreach_clamp_min_(normed, [-c for c in clip] if isinstance(clip, list) else -clip)
        torch._foreach_clamp_max_(normed, clip)
    torch._foreach_lerp_(exp_avgs, normed, 1 - hp.beta1)
    if hp.weight_decay != 0 and hp.decouple:
        torch._foreach_mul_(params, 1 - hp.lr * hp.weight_decay)
    torch._foreach_add_(params, exp_avgs, alpha=-hp.lr)
    torch._foreach_mul_(exp_avg_sqs, hp.beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - hp.beta2)
