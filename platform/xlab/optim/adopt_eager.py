"""Eager ADOPT updates: the per-tensor reference loop and the ``torch._foreach_*`` path.

Both compute the update rule in :mod:`xlab.optim.adopt`. On CPU, where ``torch._foreach_*`` has no
multi-tensor kernels and every freshly allocated temporary is paid in page faults, the blocked paths
of :mod:`xlab.optim.adopt_cpu` take over (see there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from xlab.optim import adopt_cpu

ClipLambda = Callable[[Any], Any]
"""Maps the update count ``s`` (1 at the first real update; a float, or a 0-dim tensor when
``capturable``/``fused``) to the clip bound ``c``."""


def _clip_bound(clip_lambda: ClipLambda, step: Tensor, keep_tensor: bool) -> Any:
    # Off the capture path the bound is computed in Python double precision from the CPU step, the
    # same number in the loop and foreach paths; with capturable the step never leaves the device.
    return clip_lambda(step) if keep_tensor else clip_lambda(step.item())


def _clip_bounds(
    clip_lambda: ClipLambda, steps: list[Tensor], initializing: list[bool] | None = None
) -> list[float | None]:
    """``clip_lambda(s)`` for each CPU step tensor (``None`` where ``initializing``), computed once per
    distinct step value and with one read of all the steps."""
    values = torch.stack(steps).tolist()
    wanted = {s for i, s in enumerate(values) if not (initializing and initializing[i])}
    cache = {s: clip_lambda(s) for s in wanted}
    return [cache.get(s) for s in values]


def _single_tensor_adopt(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    initializing: list[bool],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    clip_lambda: ClipLambda | None,
    weight_decay: float,
    decouple: bool,
    maximize: bool,
    capturable: bool,
    differentiable: bool = False,
    scratch: adopt_cpu.Scratch | None = None,
) -> None:
    """One tensor at a time: the reference, and the only path for ``differentiable``.

    A real update of a CPU tensor (off the capturable and differentiable paths) runs the same ops
    in place in cache-sized chunks (:func:`xlab.optim.adopt_cpu.tensor_update`).
    """
    blocked = not (capturable or differentiable)
    # Off the capturable and differentiable paths ``lr`` is a float (ADOPT.step reads a tensor lr).
    hp = adopt_cpu.Hyper(float(lr), beta1, beta2, eps, weight_decay, decouple, maximize) if blocked else None
    bounds = None
    if blocked and clip_lambda is not None and state_steps:
        bounds = _clip_bounds(clip_lambda, state_steps, initializing)
    for i, param in enumerate(params):
        grad, exp_avg, exp_avg_sq, step_t = grads[i], exp_avgs[i], exp_avg_sqs[i], state_steps[i]
        if torch.is_complex(param):
            param, grad = torch.view_as_real(param), torch.view_as_real(grad)
            exp_avg, exp_avg_sq = torch.view_as_real(exp_avg), torch.view_as_real(exp_avg_sq)

        if blocked and not initializing[i] and param.device.type == "cpu":
            bound = None if bounds is None else bounds[i]
            adopt_cpu.tensor_update(param, grad, exp_avg, exp_avg_sq, bound, hp, scratch)
            step_t += 1
            continue

        if maximize:
            grad = -grad
        if weight_decay != 0 and not decouple:
            grad = grad.add(param, alpha=weight_decay)

        if initializing[i]:
            # v is still zero, so this sets v = g*g: the first gradient only seeds the second moment.
            exp_avg_sq.addcmul_(grad, grad)
            step_t += 1
            continue

        if weight_decay != 0 and decouple:
            param.mul_(1 - lr * weight_decay)

        # v is from the *previous* steps: the current gradient is not in its own denominator.
        normed = grad / exp_avg_sq.sqrt().clamp_(min=eps)
        if clip_lambda is not None:
            bound = _clip_bound(clip_lambda, step_t, keep_tensor=capturable)
            normed = torch.clamp(normed, -bound, bound)
        exp_avg.lerp_(normed, 1 - beta1)
        if isinstance(lr, Tensor):
            # Under autograd, ``exp_avg * lr`` saves exp_avg for d/dlr; the next step's lerp_ would
            # then modify a saved tensor, so give autograd a copy.
            param.sub_((exp_avg.clone() if differentiable else exp_avg) * lr)
        else:
            param.add_(exp_avg, alpha=-lr)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_t += 1


def _split(flags: list[bool], *lists: list[Tensor]) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
    """Partition parallel lists into (flag true, flag false) parts."""
    if not any(flags):  # the usual step: nothing initialising
        return [[] for _ in lists], [list(lst) for lst in lists]
    yes = [[x for x, f in zip(lst, flags, strict=True) if f] for lst in lists]
    no = [[x for x, f in zip(lst, flags, strict=True) if not f] for lst in lists]
    return yes, no


def _view_complex_as_real(*lists: list[Tensor]) -> None:
    params = lists[0]
    for i, p in enumerate(params):
        if torch.is_complex(p):
            for lst in lists:
                lst[i] = torch.view_as_real(lst[i])


def _prepare_grads(
    params: list[Tensor], grads: list[Tensor], *, weight_decay: float, decouple: bool, maximize: bool
) -> list[Tensor]:
    """Effective gradients (sign flip, L2 term) as new tensors; ``p.grad`` is never modified."""
    if maximize:
        grads = torch._foreach_neg(grads)
        if weight_decay != 0 and not decouple:
            torch._foreach_add_(grads, params, alpha=weight_decay)
    elif weight_decay != 0 and not decouple:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    return grads


_ONE = torch.tensor(1.0)  # read only: made once, creating a tensor per step costs more than the add


def _increment_steps(steps: list[Tensor]) -> None:
    if not steps:
        return
    if steps[0].device.type == "cpu":
        # A CPU tensor as the scalar avoids a slow per-tensor Python-scalar wrap (as in torch.optim.Adam).
        torch._foreach_add_(steps, _ONE, alpha=1.0)
    else:
        torch._foreach_add_(steps, 1.0)


def _multi_tensor_adopt(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    initializing: list[bool],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    clip_lambda: ClipLambda | None,
    weight_decay: float,
    decouple: bool,
    maximize: bool,
    capturable: bool,
    scratch: adopt_cpu.Scratch | None = None,
) -> None:
    """``torch._foreach_*`` implementation over tensors grouped by device and dtype.

    A group of CPU tensors (off the capturable path) is updated in place in cache-sized blocks
    (:func:`xlab.optim.adopt_cpu.foreach_update`), elsewhere with whole-tensor foreach ops.
    """
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, exp_avgs, exp_avg_sqs, state_steps],  # type: ignore[list-item]
        with_indices=True,
    )
    grad_kw = dict(weight_decay=weight_decay, decouple=decouple, maximize=maximize)
    for (d_params, d_grads, d_exp_avgs, d_exp_avg_sqs, d_steps), indices in grouped.values():
        d_params, d_grads = list(d_params), list(d_grads)
        d_exp_avgs, d_exp_avg_sqs, d_steps = list(d_exp_avgs), list(d_exp_avg_sqs), list(d_steps)
        _view_complex_as_real(d_params, d_grads, d_exp_avgs, d_exp_avg_sqs)

        # The first-step rule is per tensor: a tensor seeing its first gradient only seeds v, even
        # when the rest of the group is mid-training (the reference implementation gets this wrong).
        init, upd = _split(
            [initializing[i] for i in indices], d_params, d_grads, d_exp_avg_sqs, d_exp_avgs, d_steps
        )
        i_params, i_grads, i_exp_avg_sqs, _, _ = init
        if i_grads:
            i_grads = _prepare_grads(i_params, i_grads, **grad_kw)
            torch._foreach_addcmul_(i_exp_avg_sqs, i_grads, i_grads)  # v is zero: v = g*g

        u_params, u_grads, u_exp_avg_sqs, u_exp_avgs, u_steps = upd
        if u_params and not capturable and u_params[0].device.type == "cpu":
            bounds = None if clip_lambda is None else _clip_bounds(clip_lambda, u_steps)
            hp = adopt_cpu.Hyper(float(lr), beta1, beta2, eps, weight_decay, decouple, maximize)
            adopt_cpu.foreach_update(u_params, u_grads, u_exp_avgs, u_exp_avg_sqs, bounds, hp, scratch)
        elif u_params:
            u_grads = _prepare_grads(u_params, u_grads, **grad_kw)
            if weight_decay != 0 and decouple:
                torch._foreach_mul_(u_params, 1 - lr * weight_decay)

            denom = torch._foreach_sqrt(u_exp_avg_sqs)
            torch._foreach_clamp_min_(denom, eps)
            normed = torch._foreach_div(u_grads, denom)  # n = g / max(sqrt(v), eps)
            del denom

            if clip_lambda is not None:
                bounds = [_clip_bound(clip_lambda, s, capturable) for s in u_steps]
                if capturable:  # device-tensor bounds: no foreach overload takes a list of them
                    for n, c in zip(normed, bounds, strict=True):
                        n.clamp_(-c, c)
                else:
                    torch._foreach_clamp_min_(normed, [-c for c in bounds])
                    torch._foreach_clamp_max_(normed, bounds)

            torch._foreach_lerp_(u_exp_avgs, normed, 1 - beta1)
            del normed
            if isinstance(lr, Tensor):
                torch._foreach_sub_(u_params, torch._foreach_mul(u_exp_avgs, lr))
            else:
                torch._foreach_add_(u_params, u_exp_avgs, alpha=-lr)
            torch._foreach_mul_(u_exp_avg_sqs, beta2)
            torch._foreach_addcmul_(u_exp_avg_sqs, u_grads, u_grads, value=1 - beta2)

        _increment_steps(d_steps)
