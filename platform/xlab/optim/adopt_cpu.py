"""ADOPT's eager update on CPU: cache-sized blocks, in-place ops, no temporaries per step.

Why a CPU path of its own. Profile of one step of the general ``foreach`` code on CPU (10M
parameters in 20 tensors, one thread): ``torch._foreach_div`` and ``torch._foreach_sqrt`` took 44%
and 20% of the step, every in-place op (clamps, lerp, add, addcmul) 4-6%. The two ops that return
new tensors cost 4-8x an in-place op over the same data: on CPU ``torch._foreach_*`` has no
multi-tensor kernels (it loops over the tensors) and a multi-megabyte result is fresh memory from
the operating system, so every page of it faults on first write. ``torch.optim.Adam(foreach=True)``
has one such op per step, the general ADOPT path two, plus two more passes for the clip.

Here a tensor is cut into flat chunks of at most :data:`BLOCK` elements, and a chunk's update runs
in a scratch buffer of that size that is reused across chunks and steps (held by the optimizer):
nothing is allocated per step, and the scratch and the chunk's p, g, m, v stay in the CPU caches
between the update's elementwise ops, so main memory sees about one read of p, g, m, v and one
write of p, m, v per step. The ops are the reference loop's, in the same order, so the results are
the loop's (bitwise, up to how a vectorised kernel rounds the last few elements of a chunk).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["BLOCK", "foreach_update", "tensor_update"]

BLOCK = 1 << 18
"""Elements per chunk: 1 MiB of float32 per stream, so a chunk's working set (p, g, m, v and the
scratch) fits in the last-level cache of a core's share while the per-op dispatch cost (a few
microseconds for each of ~10 ops per chunk) stays at about 1% of the chunk's work."""

Scratch = dict[Any, Tensor]
"""Reusable scratch buffers by (device, dtype); the optimizer keeps one across steps."""


def _scratch(scratch: Scratch | None, like: Tensor, numel: int) -> Tensor:
    """A flat buffer of at least ``numel`` elements of ``like``'s device and dtype, reused if possible."""
    key = (like.device, like.dtype)
    buf = None if scratch is None else scratch.get(key)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=like.dtype, device=like.device)
        if scratch is not None:
            scratch[key] = buf
    return buf


def _flat(*tensors: Tensor) -> bool:
    return all(t.is_contiguous() for t in tensors)


def tensor_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    bound: float | None,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decouple: bool,
    maximize: bool,
    scratch: Scratch | None = None,
) -> None:
    """One real update (not the initialising call) of one tensor, in place, chunk by chunk.

    ``grad`` is ``p.grad`` as it is (never modified): the sign flip and the L2 term are applied in
    the scratch. ``bound`` is the clip bound ``c`` for this update, ``None`` for no clipping.
    """
    kw = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, decouple=decouple)
    effective_grad = maximize or (weight_decay != 0 and not decouple)
    width = 2 if effective_grad else 1  # normalised gradient [, effective gradient]
    tensors = (param, grad, exp_avg, exp_avg_sq)
    if _flat(*tensors):
        chunks: Any = zip(*(t.view(-1).split(BLOCK) for t in tensors), strict=True)
        size = min(param.numel(), BLOCK)
        buf = _scratch(scratch, param, width * size)
    else:  # strided tensors (e.g. channels_last): the whole tensor is one chunk, with a temporary
        chunks, size = [tensors], param.numel()
        buf = torch.empty(width * size, dtype=param.dtype, device=param.device)
    for p, g, m, v in chunks:
        k = p.numel()
        effective = buf[size : size + k].view(p.shape) if effective_grad else None
        _chunk_update(p, g, m, v, buf[:k].view(p.shape), effective, bound, maximize=maximize, **kw)


def _chunk_update(
    p: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    normed: Tensor,
    effective: Tensor | None,
    bound: float | None,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decouple: bool,
    maximize: bool,
) -> None:
    """The update of one chunk; ``normed`` and ``effective`` (the effective gradient, needed with
    ``maximize`` or an L2 term) are scratch of ``p``'s shape."""
    if effective is not None:
        g = _effective_grad(p, g, effective, weight_decay, decouple, maximize)
    torch.sqrt(v, out=normed).clamp_min_(eps)
    torch.div(g, normed, out=normed)  # n = g / max(sqrt(v), eps)
    if bound is not None:
        normed.clamp_(-bound, bound)
    m.lerp_(normed, 1 - beta1)
    if weight_decay != 0 and decouple:
        p.mul_(1 - lr * weight_decay)
    p.add_(m, alpha=-lr)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)


def _effective_grad(
    p: Tensor, g: Tensor, out: Tensor, weight_decay: float, decouple: bool, maximize: bool
) -> Tensor:
    """``out = (-g if maximize else g) + weight_decay * p`` (L2 term only if not ``decouple``)."""
    if maximize:
        torch.neg(g, out=out)
        if weight_decay != 0 and not decouple:
            out.add_(p, alpha=weight_decay)
        return out
    return torch.add(g, p, alpha=weight_decay, out=out)


def foreach_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    bounds: list[float] | None,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decouple: bool,
    maximize: bool,
    scratch: Scratch | None = None,
) -> None:
    """One real update of tensors of one device and dtype with ``torch._foreach_*`` in-place ops.

    Chunks of all tensors are packed into blocks of at most :data:`BLOCK` elements (a large tensor
    spans several blocks, a block holds many small tensors), one ``torch._foreach_*`` call per op and
    block. ``bounds[i]`` is tensor ``i``'s clip bound (``None``: no clipping).
    """
    kw = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, decouple=decouple)
    pieces: tuple[list[Tensor], ...] = ([], [], [], [])
    piece_bounds: list[float] = []
    for i, tensors in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, strict=True)):
        bound = None if bounds is None else bounds[i]
        if not _flat(*tensors):  # rare: strided tensors take the per-tensor path
            tensor_update(*tensors, bound, maximize=maximize, scratch=scratch, **kw)
            continue
        n_chunks = 0
        for lst, t in zip(pieces, tensors, strict=True):
            chunks = t.view(-1).split(BLOCK)
            lst.extend(chunks)
            n_chunks = len(chunks)
        if bound is not None:
            piece_bounds.extend([bound] * n_chunks)
    if not pieces[0]:
        return
    clip: Any = None
    if bounds is not None:  # one scalar for the usual case of a group in step
        clip = piece_bounds[0] if len(set(piece_bounds)) == 1 else piece_bounds

    effective_grad = maximize or (weight_decay != 0 and not decouple)
    n_scratch = 3 if effective_grad else 2  # denominator, normalised gradient [, effective gradient]
    sizes = [p.numel() for p in pieces[0]]
    size = min(sum(sizes), BLOCK)
    buf = _scratch(scratch, params[0], n_scratch * size)
    for start, stop in _blocks(sizes):
        total = sum(sizes[start:stop])
        views = [list(buf[i * size : i * size + total].split(sizes[start:stop])) for i in range(n_scratch)]
        block = [lst[start:stop] for lst in pieces]
        if stop - start == 1:  # a chunk of a large tensor: out= ops need no copies into the scratch
            effective = views[2][0] if effective_grad else None
            bound = clip[start] if isinstance(clip, list) else clip
            _chunk_update(*(b[0] for b in block), views[0][0], effective, bound, maximize=maximize, **kw)
        else:
            block_clip = clip[start:stop] if isinstance(clip, list) else clip
            _foreach_block(*block, *views, clip=block_clip, maximize=maximize, **kw)


def _blocks(sizes: list[int]) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` index ranges of ``sizes`` that sum to at most :data:`BLOCK` each."""
    ranges, start, total = [], 0, 0
    for j, k in enumerate(sizes):
        if j > start and total + k > BLOCK:
            ranges.append((start, j))
            start, total = j, 0
        total += k
    ranges.append((start, len(sizes)))
    return ranges


def _foreach_block(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    denom: list[Tensor],
    normed: list[Tensor],
    effective: list[Tensor] | None = None,
    *,
    clip: float | list[float] | None,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decouple: bool,
    maximize: bool,
) -> None:
    """The update of one block; ``denom``, ``normed`` and ``effective`` are scratch views."""
    if effective is not None:  # effective gradient: sign flip and L2 term, as the reference loop
        torch._foreach_copy_(effective, grads)
        if maximize:
            torch._foreach_neg_(effective)
        if weight_decay != 0 and not decouple:
            torch._foreach_add_(effective, params, alpha=weight_decay)
        grads = effective
    torch._foreach_copy_(denom, exp_avg_sqs)
    torch._foreach_sqrt_(denom)
    torch._foreach_clamp_min_(denom, eps)
    torch._foreach_copy_(normed, grads)
    torch._foreach_div_(normed, denom)  # n = g / max(sqrt(v), eps)
    if clip is not None:
        torch._foreach_clamp_min_(normed, [-c for c in clip] if isinstance(clip, list) else -clip)
        torch._foreach_clamp_max_(normed, clip)
    torch._foreach_lerp_(exp_avgs, normed, 1 - beta1)
    if weight_decay != 0 and decouple:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_add_(params, exp_avgs, alpha=-lr)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
