"""Optimizers by name, and the ``optim`` section of job configs.

Jobs pick their optimizer with a string so that it can be set on the command line
(``--optim.name adopt``) and searched over by Ray Tune (``{"optim.name": tune.choice([...])}``)::

    from xlab.optim import OptimConfig, build_optimizer, make_optimizer

    opt = build_optimizer(OptimConfig(name="adopt", lr=3e-4, beta2=0.9999, eps=1e-6), model.parameters())
    opt = make_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9)   # constructor kwargs directly

New optimizers are added with :func:`register_optimizer`; ``from_config`` says how an
:class:`OptimConfig` maps onto the constructor (by default: the fields the constructor accepts)::

    @register_optimizer("lion")
    class Lion(torch.optim.Optimizer): ...
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch

from xlab.errors import XlabError
from xlab.optim.adopt import ADOPT, default_clip_lambda

__all__ = [
    "OPTIMIZERS",
    "ConfigValueError",
    "OptimConfig",
    "available_optimizers",
    "build_optimizer",
    "make_optimizer",
    "register_optimizer",
]

OptimizerFactory = Callable[..., torch.optim.Optimizer]
"""``factory(params, **kwargs) -> Optimizer``: an optimizer class or a function building one."""
ConfigAdapter = Callable[["OptimConfig"], dict[str, Any]]
"""Turns an :class:`OptimConfig` into the factory's keyword arguments."""

F = TypeVar("F", bound=OptimizerFactory)

OPTIMIZERS: dict[str, OptimizerFactory] = {}
"""Registered optimizer factories by name; add to it with :func:`register_optimizer`."""
_ADAPTERS: dict[str, ConfigAdapter] = {}


class ConfigValueError(XlabError, ValueError):
    """A bad ``optim`` config value: a ``ValueError`` that the CLI also reports as a one-line XlabError."""


def register_optimizer(
    name: str, factory: F | None = None, *, from_config: ConfigAdapter | None = None
) -> Any:
    """Register ``factory`` under ``name``; usable as ``@register_optimizer(name)`` or called directly.

    ``from_config`` maps an :class:`OptimConfig` to the factory's keyword arguments; by default the
    fields ``lr``, ``betas`` (from ``beta1``/``beta2``), ``eps``, ``weight_decay`` and ``momentum``
    are passed where the factory's signature accepts them. Registering an existing name replaces it.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"optimizer name must be a non-empty string, got {name!r}")

    def register(f: F) -> F:
        OPTIMIZERS[name] = f
        _ADAPTERS[name] = from_config or _generic_adapter(f)
        return f

    return register if factory is None else register(factory)


def available_optimizers() -> list[str]:
    """Registered optimizer names, sorted."""
    return sorted(OPTIMIZERS)


def _unknown_name(field: str, name: object) -> ConfigValueError:
    return ConfigValueError(
        f"{field}={name!r} is not a known optimizer; choose one of: {', '.join(available_optimizers())}"
    )


@dataclasses.dataclass
class OptimConfig:
    """Which optimizer to train with, and its hyperparameters."""

    name: str = "adamw"
    """Optimizer: one of adam, adamw, adopt, amsgrad, sgd (see xlab.optim.available_optimizers())."""
    lr: float = 1e-3
    """Learning rate."""
    beta1: float = 0.9
    """First-moment (momentum) decay of adam/adamw/amsgrad/adopt."""
    beta2: float = 0.999
    """Second-moment decay of adam/adamw/amsgrad/adopt (the ADOPT paper uses 0.9999)."""
    eps: float = 1e-8
    """adam/adamw/amsgrad: added to sqrt(v); adopt: floor on sqrt(v) (the ADOPT paper uses 1e-6)."""
    weight_decay: float = 0.0
    """Weight decay: L2 for adam/amsgrad/sgd, decoupled for adamw, per `decouple` for adopt."""
    decouple: bool = True
    """adopt only: decoupled (AdamW-style) weight decay if True, else L2 added to the gradient."""
    clip: bool = True
    """adopt only: clip the normalised gradient to [-s**0.25, s**0.25] at update s (False: original ADOPT)."""
    momentum: float = 0.0
    """sgd only: momentum factor."""

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise _unknown_name("optim.name", self.name)
        for field in ("lr", "eps", "weight_decay", "momentum"):
            value = getattr(self, field)
            if not value >= 0:  # also rejects NaN
                raise ConfigValueError(f"optim.{field}={value!r} must be >= 0")
        for field in ("beta1", "beta2"):
            value = getattr(self, field)
            if not 0 <= value < 1:
                raise ConfigValueError(f"optim.{field}={value!r} must be in [0, 1)")


def _adam_like(cfg: OptimConfig) -> dict[str, Any]:
    return dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def _adopt_kwargs(cfg: OptimConfig) -> dict[str, Any]:
    return dict(_adam_like(cfg), decouple=cfg.decouple, clip_lambda=default_clip_lambda if cfg.clip else None)


def _sgd_kwargs(cfg: OptimConfig) -> dict[str, Any]:
    return dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _generic_adapter(factory: OptimizerFactory) -> ConfigAdapter:
    """Pass the config fields that ``factory``'s signature accepts."""
    try:
        accepted = set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):  # builtins / C callables without a signature
        accepted = set()

    def adapt(cfg: OptimConfig) -> dict[str, Any]:
        candidates = dict(
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
        )
        return {k: v for k, v in candidates.items() if k in accepted}

    return adapt


def _amsgrad(params: Iterable[Any], **kwargs: Any) -> torch.optim.Adam:
    """``torch.optim.Adam(amsgrad=True)``."""
    return torch.optim.Adam(params, amsgrad=True, **kwargs)


register_optimizer("adopt", ADOPT, from_config=_adopt_kwargs)
register_optimizer("adam", torch.optim.Adam, from_config=_adam_like)
register_optimizer("adamw", torch.optim.AdamW, from_config=_adam_like)
register_optimizer("amsgrad", _amsgrad, from_config=_adam_like)
register_optimizer("sgd", torch.optim.SGD, from_config=_sgd_kwargs)


def build_optimizer(cfg: OptimConfig, params: Iterable[Any]) -> torch.optim.Optimizer:
    """Build the optimizer that ``cfg`` describes over ``params`` (tensors or param-group dicts)."""
    if cfg.name not in OPTIMIZERS:  # registry changed since the config was made, or fields set later
        raise _unknown_name("optim.name", cfg.name)
    return OPTIMIZERS[cfg.name](params, **_ADAPTERS[cfg.name](cfg))


def make_optimizer(name: str, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """Build optimizer ``name`` over ``params`` with constructor keyword arguments ``kwargs``."""
    if name not in OPTIMIZERS:
        raise _unknown_name("name", name)
    return OPTIMIZERS[name](params, **kwargs)
