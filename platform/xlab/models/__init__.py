"""Models, by preset name: ``build_model(name, **overrides)``; ``MODELS`` lists the presets."""

from xlab.models.zoo import (
    MODELS,
    ImageMLP,
    ModelConfigError,
    ModelSpec,
    ModularTransformer,
    TicketMLP,
    build_model,
)

__all__ = [
    "MODELS",
    "ImageMLP",
    "ModelConfigError",
    "ModelSpec",
    "ModularTransformer",
    "TicketMLP",
    "build_model",
]
