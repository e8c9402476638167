"""Decoder-only language models built from ``transformers`` configs, with size presets.

Three architecture families (GPT-2, Llama, GPT-NeoX) share one table of sizes, from ``tiny``
(tests, seconds on a CPU) to the study's scale-up models; any family can take any size, and the
family-neutral ``d_model`` / ``n_layer`` / ``n_head`` / ``d_ff`` change a size's shape in every family
(GPT-2 ``n_embd``/``n_layer``/``n_head``/``n_inner``; Llama and GPT-NeoX ``hidden_size``/
``num_hidden_layers``/``num_attention_heads``/``intermediate_size``)::

    from xlab.lm.models import build_causal_lm
    model = build_causal_lm("gpt2", "smoke", vocab_size=tok.vocab_size)          # 4 layers, width 256
    model = build_causal_lm("llama", "llama-774m", vocab_size=50257, n_ctx=2048)
    model = build_causal_lm("gpt_neox", "tiny", vocab_size=1000, d_model=128, n_layer=4)

Models are plain ``transformers.PreTrainedModel``\\ s: ``save_pretrained`` / ``from_pretrained``,
``generate`` and the Hugging Face loss (``model(input_ids, labels=...)``) all work. Special-token ids
default to 0, the id :func:`xlab.lm.tokenizer.train_bpe` gives ``<|endoftext|>``.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers

from xlab.config import check
from xlab.errors import XlabError

ARCHS = ("gpt2", "llama", "gpt_neox")

SIZES: dict[str, dict[str, Any]] = {
    # Unit tests: a forward/backward pass takes milliseconds.
    "tiny": dict(n_layer=2, d_model=64, n_head=2, n_ctx=128),
    # The spec's tiny CPU protocol: 4 layers, width 256, context 512.
    "smoke": dict(n_layer=4, d_model=256, n_head=4, n_ctx=512),
    # The study's model: GPT-2 small (124M with the 50257-token GPT-2 vocabulary), context 2048.
    "gpt2-small": dict(n_layer=12, d_model=768, n_head=12, n_ctx=2048),
    # Scale-up runs (Python vs FineWeb): GPT-2 large, a Llama of the same size, GPT-2 XL.
    "gpt2-774m": dict(n_layer=36, d_model=1280, n_head=20, n_ctx=2048),
    # SwiGLU has three projections: an inner width of 8/3 x 1280 keeps the parameter count at GPT-2 large's.
    "llama-774m": dict(n_layer=36, d_model=1280, n_head=20, n_ctx=2048, d_ff=3456),
    "gpt2-1.5b": dict(n_layer=48, d_model=1600, n_head=25, n_ctx=2048),
}
"""Size presets: layers, width, heads, context, and optionally the MLP inner width ``d_ff``."""


def _config(arch: str, size: dict[str, Any], vocab_size: int, n_ctx: int, dropout: float) -> Any:
    d, n_layer, n_head = size["d_model"], size["n_layer"], size["n_head"]
    ids = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if arch == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab_size, n_positions=n_ctx, n_embd=d, n_layer=n_layer, n_head=n_head,
            n_inner=size.get("d_ff"), resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, **ids,
        )
    if arch == "llama":
        return transformers.LlamaConfig(
            vocab_size=vocab_size, hidden_size=d, intermediate_size=size.get("d_ff") or (8 * d // 3 + 63) // 64 * 64,
            num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_head,
            max_position_embeddings=n_ctx, attention_dropout=dropout, tie_word_embeddings=True, **ids,
        )
    return transformers.GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=d, intermediate_size=size.get("d_ff") or 4 * d,
        num_hidden_layers=n_layer, num_attention_heads=n_head, max_position_embeddings=n_ctx,
        hidden_dropout=dropout, attention_dropout=dropout, tie_word_embeddings=True, **ids,
    )


def shape(size: str, *, d_model: int | None = None, n_layer: int | None = None, n_head: int | None = None,
          d_ff: int | None = None) -> dict[str, Any]:
    """Preset ``size`` with family-neutral changes (None or 0 keeps the preset's value)."""
    check(size in SIZES, "model.size", f"unknown size {size!r}; choose one of: {', '.join(SIZES)}")
    spec = dict(SIZES[size])
    for key, value in (("d_model", d_model), ("n_layer", n_layer), ("n_head", n_head), ("d_ff", d_ff)):
        if value:
            check(value >= 1, f"model.{key}", f"must be >= 1, got {value}")
            spec[key] = int(value)
    if d_model and not d_ff:
        spec.pop("d_ff", None)  # a preset's inner width belongs to its own width
    check(spec["d_model"] % spec["n_head"] == 0, "model.n_head",
          f"width {spec['d_model']} does not split into {spec['n_head']} heads")
    return spec


def build_config(
    arch: str = "gpt2", size: str = "tiny", *, vocab_size: int, n_ctx: int | None = None,
    dropout: float | None = None, d_model: int | None = None, n_layer: int | None = None,
    n_head: int | None = None, d_ff: int | None = None, **overrides: Any,
) -> transformers.PretrainedConfig:
    """The ``transformers`` config :func:`build_causal_lm` would use: ``d_model``/``n_layer``/``n_head``/
    ``d_ff`` reshape the preset in any family (:func:`shape`); ``overrides`` set attributes of the family's
    own config class afterwards."""
    check(arch in ARCHS, "model.arch", f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    check(vocab_size > 0, "model.vocab_size", f"must be > 0, got {vocab_size}")
    spec = shape(size, d_model=d_model, n_layer=n_layer, n_head=n_head, d_ff=d_ff)
    ctx = int(n_ctx or spec["n_ctx"])
    check(ctx > 0, "model.n_ctx", f"must be > 0, got {ctx}")
    drop = 0.0 if dropout is None else float(dropout)
    check(0.0 <= drop < 1.0, "model.dropout", f"must be in [0, 1), got {drop}")
    config = _config(arch, spec, int(vocab_size), ctx, drop)
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise XlabError(f"bad config value for model.{key}: {type(config).__name__} has no field {key!r}")
        setattr(config, key, value)
    return config


def build_causal_lm(
    arch: str = "gpt2", size: str = "tiny", *, vocab_size: int, n_ctx: int | None = None,
    dropout: float | None = None, seed: int = 0, d_model: int | None = None, n_layer: int | None = None,
    n_head: int | None = None, d_ff: int | None = None, **overrides: Any,
) -> transformers.PreTrainedModel:
    """A freshly initialised causal LM of family ``arch`` and preset ``size`` (see :data:`SIZES`).

    ``n_ctx`` overrides the preset's context length, ``dropout`` (default 0) every dropout rate,
    ``d_model``/``n_layer``/``n_head``/``d_ff`` its shape (same names in every family), and ``overrides``
    any attribute of the ``transformers`` config. The same ``seed`` gives the same weights.
    """
    config = build_config(arch, size, vocab_size=vocab_size, n_ctx=n_ctx, dropout=dropout, d_model=d_model,
                          n_layer=n_layer, n_head=n_head, d_ff=d_ff, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model


def context_length(model: Any) -> int:
    """The longest sequence ``model`` takes (its position table)."""
    cfg = model.config
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise XlabError(f"cannot tell the context length of {type(model).__name__}")


def count_parameters(model: torch.nn.Module, *, non_embedding: bool = False) -> int:
    """Parameters of ``model`` (tied weights counted once); ``non_embedding`` drops token/position tables."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if non_embedding and isinstance(_owner(model, name), torch.nn.Embedding):
            continue
        total += p.numel()
    return total


def _owner(model: torch.nn.Module, param_name: str) -> torch.nn.Module:
    module = model
    for part in param_name.split(".")[:-1]:
        module = getattr(module, part)
    return module


def flops_per_token(model: Any, seq_len: int | None = None) -> float:
    """Training FLOPs per token, PaLM's MFU count: 6 x (non-embedding parameters + the output
    projection, vocab x width, which is real compute even when tied) + 12 x layers x width x context."""
    cfg = model.config
    n_layer = getattr(cfg, "n_layer", None) or cfg.num_hidden_layers
    width = getattr(cfg, "n_embd", None) or cfg.hidden_size
    ctx = seq_len or context_length(model)
    dense = count_parameters(model, non_embedding=True) + cfg.vocab_size * width
    return 6.0 * dense + 12.0 * n_layer * width * ctx
