"""Optimizers: ADOPT and a name-based registry used by job configs (``--optim.name adopt``)::

    from xlab.optim import ADOPT, OptimConfig, build_optimizer

    opt = ADOPT(model.parameters(), lr=1e-3)
    opt = build_optimizer(OptimConfig(name="adopt", lr=1e-3), model.parameters())

See :mod:`xlab.optim.adopt` for the update rule and :mod:`xlab.optim.registry` for adding optimizers.
"""

from xlab.optim.adopt import ADOPT, default_clip_lambda
from xlab.optim.registry import (
    OPTIMIZERS,
    ConfigValueError,
    OptimConfig,
    available_optimizers,
    build_optimizer,
    make_optimizer,
    register_optimizer,
)

__all__ = [
    "ADOPT",
    "OPTIMIZERS",
    "ConfigValueError",
    "OptimConfig",
    "available_optimizers",
    "build_optimizer",
    "default_clip_lambda",
    "make_optimizer",
    "register_optimizer",
]
