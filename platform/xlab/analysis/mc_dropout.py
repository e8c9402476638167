"""Monte-Carlo dropout at inference: which dropout sites a model has, and extra sites by hook.

"MC dropout" means different things in different families. GPT-2 and GPT-NeoX have ``nn.Dropout``
modules on the embeddings, attention weights, attention output and MLP output; Llama and Mistral
have none: their only dropout is the attention-weight dropout (the float ``attention_dropout``
attribute of each attention module), so MC dropout on them perturbs attention weights only.
:func:`dropout_sites` lists a model's native sites; ``sites`` adds dropout where a family has none:

``native``  the model's own dropout (modules and ``attention_dropout`` attributes) at probability p;
``resid``   dropout on every block's output (the residual stream after the block), by forward hook;
``mlp``     dropout on every block's MLP output, by forward hook.

    with mc_dropout(model, 0.1, sites=("native", "mlp")) as active:
        ...                                      # active: the site names that drop units
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from torch import nn
from torch.nn import functional as F

from xlab.errors import XlabError

SITES = ("native", "resid", "mlp")


def dropout_sites(model: nn.Module) -> list[str]:
    """The model's own dropout sites: ``nn.Dropout`` module names and ``NAME.attention_dropout`` attributes."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout):
            out.append(name)
        if isinstance(getattr(module, "attention_dropout", None), float):
            out.append(f"{name}.attention_dropout")
    return out


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout probability of ``model`` to ``p``: ``nn.Dropout`` modules (GPT-2, NeoX) and
    float ``attention_dropout`` attributes (Llama/Mistral attention, which has no dropout modules)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p


def _drop_output(p: float):
    def hook(_m: nn.Module, _args: Any, out: Any) -> Any:
        if isinstance(out, tuple):
            return (F.dropout(out[0], p, training=True), *out[1:])
        return F.dropout(out, p, training=True)

    return hook


def check_sites(sites: Sequence[str]) -> None:
    bad = [s for s in sites if s not in SITES]
    if bad or not sites:
        raise XlabError(f"unknown MC dropout site(s) {bad or '(none)'}; use one or more of {', '.join(SITES)}")


@contextlib.contextmanager
def mc_dropout(model: nn.Module, p: float, sites: Sequence[str] = ("native",)) -> Iterator[list[str]]:
    """Dropout on at inference with probability ``p`` at ``sites`` (train mode), restored afterwards.

    Yields the names of the active sites (native site names, ``blocks.L.resid`` / ``blocks.L.mlp`` for hooks).
    """
    check_sites(sites)
    saved = {name: m.p for name, m in model.named_modules() if isinstance(m, nn.Dropout)}
    saved_attn = {name: m.attention_dropout for name, m in model.named_modules()
                  if isinstance(getattr(m, "attention_dropout", None), float)}
    was_training = model.training
    active: list[str] = []
    handles = []
    if "native" in sites:
        set_dropout(model, p)
        active += dropout_sites(model)
    else:
        set_dropout(model, 0.0)
    if "resid" in sites or "mlp" in sites:
        from xlab.analysis.hooks import module_map

        mm = module_map(model)
        for layer in range(mm.n_layers):
            for site, module in (("resid", mm.block(layer)), ("mlp", mm.mlp(layer))):
                if site in sites:
                    handles.append(module.register_forward_hook(_drop_output(p)))
                    active.append(f"blocks.{layer}.{site}")
    model.train()
    try:
        yield active
    finally:
        for h in handles:
            h.remove()
        modules = dict(model.named_modules())
        for name, value in saved.items():
            modules[name].p = value
        for name, value in saved_attn.items():
            modules[name].attention_dropout = value
        model.train(was_training)
