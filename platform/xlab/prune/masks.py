"""Binary weight masks that stay applied while a model trains.

:func:`apply_masks` keeps the invariant ``W == W * mask`` for every masked parameter, so the forward
pass computes with ``W * mask`` while parameter names, state-dict keys and ``model.embed.weight``
stay those of the dense model (checkpoints of masked and dense models are interchangeable):

* pruned entries are zeroed when the masks are applied;
* a gradient hook multiplies every gradient by the mask, so pruned entries get exactly zero grads;
* after every step of an attached optimizer the pruned entries are zeroed again (decoupled weight
  decay and Adam-type updates already leave exact zeros at zero when their state starts at zero,
  but an optimizer with state from before pruning, or any other update rule, might not);
* after ``model.load_state_dict`` the pruned entries are zeroed again, so rewinding a masked model
  to its initial weights keeps the mask.

We use hooks rather than ``torch.nn.utils.parametrize`` / ``torch.nn.utils.prune`` because those
rename the parameters (``weight_orig``, ``parametrizations.weight.original``), which would break
checkpoint loading, the Fourier helpers and name-based pruning selections.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from xlab.prune.topk import Masks, PruneError, mask_density

_ATTR = "_xlab_masked_params"


class MaskedParams:
    """The masks applied to one model, with the hooks that keep them applied.

    Use :func:`apply_masks` to create one; :meth:`attach` an optimizer so weights are re-masked after
    each of its steps; :meth:`state_dict` gives the masks (bool, CPU) to save with a checkpoint.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        unknown = [n for n in masks if n not in params]
        if unknown:
            raise PruneError(f"masks name parameters the model lacks: {unknown}; it has {list(params)}")
        self.model = model
        self.masks: Masks = {}
        self.params: dict[str, nn.Parameter] = {}
        for name, mask in masks.items():
            param = params[name]
            if tuple(mask.shape) != tuple(param.shape):
                raise PruneError(
                    f"mask {name!r} has shape {tuple(mask.shape)}, parameter {tuple(param.shape)}"
                )
            self.masks[name] = mask.detach().to(device=param.device, dtype=torch.bool).clone()
            self.params[name] = param
        self._handles: list = []
        for name, param in self.params.items():
            self._handles.append(param.register_hook(self._grad_hook(name)))
        self._handles.append(model.register_load_state_dict_post_hook(lambda module, keys: self.apply_()))

    def _grad_hook(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            mask = self.masks[name]
            if mask.device != grad.device:  # the model moved to another device after masking
                mask = self.masks[name] = mask.to(grad.device)
            return grad.masked_fill(~mask, 0)

        return hook

    @torch.no_grad()
    def apply_(self) -> None:
        """Zero the pruned entries of every masked parameter (in place)."""
        for name, param in self.params.items():
            mask = self.masks[name]
            if mask.device != param.device:
                mask = self.masks[name] = mask.to(param.device)
            param.masked_fill_(~mask, 0)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-mask the weights after every ``optimizer.step()``."""
        self._handles.append(optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply_()))

    def remove(self) -> None:
        """Remove every hook; the weights keep their current (masked) values."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if getattr(self.model, _ATTR, None) is self:
            delattr(self.model, _ATTR)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The masks as bool CPU tensors, ready for ``torch.save``."""
        return {n: m.detach().cpu().clone() for n, m in self.masks.items()}

    def density(self) -> float:
        """Fraction of masked-parameter entries kept."""
        return mask_density(self.masks)

    def check(self) -> bool:
        """Whether every pruned entry is exactly zero."""
        return all(bool((p[~self.masks[n]] == 0).all()) for n, p in self.params.items())


def apply_masks(
    model: nn.Module, masks: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer | None = None
) -> MaskedParams:
    """Apply ``masks`` to ``model`` (replacing masks applied before) and keep them applied; see module doc."""
    remove_masks(model)
    masked = MaskedParams(model, masks)
    masked.apply_()
    setattr(model, _ATTR, masked)
    if optimizer is not None:
        masked.attach(optimizer)
    return masked


def get_masks(model: nn.Module) -> MaskedParams | None:
    """The masks currently applied to ``model``, if any."""
    return getattr(model, _ATTR, None)


def remove_masks(model: nn.Module) -> Masks:
    """Stop masking ``model`` (weights keep their values) and return the masks that were applied."""
    masked = get_masks(model)
    if masked is None:
        return {}
    masked.remove()
    return masked.state_dict()
