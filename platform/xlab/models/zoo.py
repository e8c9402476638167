"""The model zoo of the grokking studies (spec ``adopt-grokking.md`` sections 2 and 3), with size presets.

* :class:`ModularTransformer`: the 1-layer, no-LayerNorm, no-bias transformer of the grokking
  literature (presets ``grok-transformer`` and ``ticket-transformer``).
* :class:`TicketMLP`: the grokking-tickets MLP on two tokens (preset ``ticket-mlp``).
* :class:`ImageMLP`: the bias-free ReLU MLP of the tickets image experiment (preset ``ticket-image-mlp``).

Weight layout: every matrix is an ``nn.Embedding`` or bias-free ``nn.Linear``, so ``embed.weight``
is ``W_E`` with one row per token (``[d_vocab, d_model]``) and ``unembed.weight`` is ``W_U`` with
one row per output token (``[n_out, d_model]``, the transpose of the reference code's ``W_U``).
Keeping every weight a plain parameter named ``*.weight`` lets the pruning code treat all matrices
alike and keeps state dicts readable.

Initialisation (explicit, Gaussian, mean 0, reproducible from ``torch.manual_seed``): each matrix has
standard deviation ``init_scale / sqrt(fan_in)``, where the fan-in of an embedding is its vocabulary
(one-hot input). The transformer follows the polynomial study's reference code, which uses
``1 / sqrt(d_model)`` for every attention and MLP matrix (so also for ``W_O`` and the MLP output).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from xlab.errors import XlabError


class ModelConfigError(XlabError, ValueError):
    """A bad model request (unknown preset, inconsistent sizes)."""


def _normal_(weight: torch.Tensor, std: float) -> None:
    with torch.no_grad():
        weight.normal_(0.0, std)


def _linear(d_in: int, d_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=False)
    _normal_(layer.weight, std)
    return layer


def _embedding(d_vocab: int, d_model: int, std: float) -> nn.Embedding:
    emb = nn.Embedding(d_vocab, d_model)
    _normal_(emb.weight, std)
    return emb


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention without biases (``q``, ``k``, ``v``, ``o`` projections)."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        std = init_scale / math.sqrt(d_model)
        self.q = _linear(d_model, n_heads * d_head, std)
        self.k = _linear(d_model, n_heads * d_head, std)
        self.v = _linear(d_model, n_heads * d_head, std)
        self.o = _linear(n_heads * d_head, d_model, std)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``[B, S, d]`` -> ``[B, S, d]``, or ``[B, 1, d]`` for the last query only (``last_only``)."""
        b, s, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, self.n_heads, self.d_head).transpose(1, 2)

        q = heads(self.q(x[:, -1:] if last_only else x))
        k, v = heads(self.k(x)), heads(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        if not last_only:  # the last query sees every position: nothing to mask
            causal = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        z = scores.softmax(dim=-1) @ v
        return self.o(z.transpose(1, 2).reshape(b, q.shape[2], self.n_heads * self.d_head))


class ReluMLP(nn.Module):
    """Bias-free ``w_out(relu(w_in(x)))``."""

    def __init__(self, d_model: int, d_mlp: int, init_scale: float = 1.0) -> None:
        super().__init__()
        std = init_scale / math.sqrt(d_model)
        self.w_in = _linear(d_model, d_mlp, std)
        self.w_out = _linear(d_mlp, d_model, std)  # reference code: 1/sqrt(d_model), not 1/sqrt(d_mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_out(F.relu(self.w_in(x)))


class Block(nn.Module):
    """Residual attention then residual MLP, no LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, d_mlp: int, init_scale: float) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(d_model, n_heads, d_head, init_scale)
        self.mlp = ReluMLP(d_model, d_mlp, init_scale)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        x = (x[:, -1:] if last_only else x) + self.attn(x, last_only)
        return x + self.mlp(x)


class ModularTransformer(nn.Module):
    """Transformer for modular arithmetic: no LayerNorm, no biases, ReLU MLP, causal attention.

    ``forward(x)`` maps tokens ``[B, S]`` to logits at the last position ``[B, n_out]``
    (``all_positions=True`` gives ``[B, S, n_out]``). Positional embeddings are off by default, as
    in both reference implementations.
    """

    def __init__(
        self,
        d_vocab: int,
        d_model: int = 128,
        n_heads: int = 4,
        d_head: int | None = None,
        d_mlp: int = 512,
        n_layers: int = 1,
        n_out: int | None = None,
        n_ctx: int = 3,
        pos_embed: bool = False,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if d_head is None:
            if d_model % n_heads:
                raise ModelConfigError(
                    f"d_model={d_model} is not divisible by n_heads={n_heads}; pass d_head"
                )
            d_head = d_model // n_heads
        self.d_vocab, self.d_model, self.n_ctx = d_vocab, d_model, n_ctx
        self.n_out = d_vocab if n_out is None else n_out
        self.embed = _embedding(d_vocab, d_model, init_scale / math.sqrt(d_vocab))
        self.pos_embed = nn.Embedding(n_ctx, d_model) if pos_embed else None
        if self.pos_embed is not None:
            _normal_(self.pos_embed.weight, init_scale / math.sqrt(d_model))
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_head, d_mlp, init_scale) for _ in range(n_layers)
        )
        self.unembed = _linear(d_model, self.n_out, init_scale / math.sqrt(d_model))

    def _residual(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        h = self.embed(x)
        if self.pos_embed is not None:
            h = h + self.pos_embed.weight[: x.shape[1]]
        for block in self.blocks[:upto]:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor, all_positions: bool = False) -> torch.Tensor:
        if all_positions:
            return self.unembed(self._residual(x))
        # Only the last position is read out, so the last block computes its query, MLP and
        # unembedding there alone (same result as slicing, about 2.5x cheaper for 1 layer on CPU).
        h = self.blocks[-1](self._residual(x, upto=-1), last_only=True)
        return self.unembed(h[:, -1])

    def neuron_activations(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Post-ReLU MLP activations of ``layer`` at every position, ``[B, S, d_mlp]``."""
        layer = layer % len(self.blocks)
        h = self._residual(x, upto=layer)
        block = self.blocks[layer]
        h = h + block.attn(h)
        return F.relu(block.mlp.w_in(h))

    def neuron_logit_map(self, layer: int = -1) -> torch.Tensor:
        """``W_U @ W_out`` of ``layer``: the direct effect of each neuron on each logit, ``[n_out, d_mlp]``."""
        return self.unembed.weight @ self.blocks[layer].mlp.w_out.weight


class TicketMLP(nn.Module):
    """The grokking-tickets MLP: ``W_E`` -> per-token ``inproj`` -> sum over tokens -> ReLU -> ``outproj`` -> ``W_U``.

    No biases, no LayerNorm, init ``N(0, init_scale^2 / fan_in)``. ``n_layers`` extra hidden
    ``d_hidden x d_hidden`` ReLU layers (0 in the paper) sit between the sum and ``outproj``.
    """

    def __init__(
        self,
        d_vocab: int = 67,
        d_emb: int = 500,
        d_hidden: int = 48,
        n_out: int | None = None,
        n_layers: int = 0,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.d_vocab = d_vocab
        self.n_out = d_vocab if n_out is None else n_out
        self.embed = _embedding(d_vocab, d_emb, init_scale / math.sqrt(d_vocab))
        self.inproj = _linear(d_emb, d_hidden, init_scale / math.sqrt(d_emb))
        self.hidden = nn.ModuleList(
            _linear(d_hidden, d_hidden, init_scale / math.sqrt(d_hidden)) for _ in range(n_layers)
        )
        self.outproj = _linear(d_hidden, d_emb, init_scale / math.sqrt(d_hidden))
        self.unembed = _linear(d_emb, self.n_out, init_scale / math.sqrt(d_emb))

    def neuron_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Post-ReLU activations of the last hidden layer, ``[B, d_hidden]``."""
        h = F.relu(self.inproj(self.embed(x)).sum(dim=1))
        for layer in self.hidden:
            h = F.relu(layer(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unembed(self.outproj(self.neuron_activations(x)))

    def neuron_logit_map(self) -> torch.Tensor:
        """``W_U @ W_out``: each hidden neuron's direct effect on each logit, ``[n_out, d_hidden]``."""
        return self.unembed.weight @ self.outproj.weight


class ImageMLP(nn.Module):
    """Bias-free ReLU MLP ``d_in -> hidden... -> n_out``; init ``N(0, (init_scale / sqrt(fan_in))^2)``.

    The tickets paper scales the initialisation x8 (``init_scale=8``) to make the image task grok.
    """

    def __init__(
        self,
        d_in: int = 784,
        hidden: tuple[int, ...] | list[int] = (200, 200),
        n_out: int = 10,
        init_scale: float = 8.0,
    ) -> None:
        super().__init__()
        sizes = [d_in, *hidden, n_out]
        self.layers = nn.ModuleList(
            _linear(a, b, init_scale / math.sqrt(a)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.layers[:-1]:
            h = F.relu(layer(h))
        return self.layers[-1](h)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry entry: the class, its preset keyword arguments and a one-line description."""

    cls: Callable[..., nn.Module]
    defaults: dict[str, Any]
    description: str


MODELS: dict[str, ModelSpec] = {
    "grok-transformer": ModelSpec(
        ModularTransformer,
        dict(d_vocab=97 + 5, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_layers=1, n_ctx=3),
        "polynomial study (spec section 3): width 128, 4 heads of 32, MLP 512; d_vocab = p + 5",
    ),
    "ticket-transformer": ModelSpec(
        ModularTransformer,
        dict(d_vocab=67, d_model=128, n_heads=1, d_head=128, d_mlp=128, n_layers=1, n_ctx=2),
        "grokking tickets (spec section 2): width 128, 1 head, MLP 128, inputs [a, b]; d_vocab = p",
    ),
    "ticket-mlp": ModelSpec(
        TicketMLP,
        dict(d_vocab=67, d_emb=500, d_hidden=48),
        "grokking tickets (spec section 2): W_E 500 x p, 500 -> 48, sum, ReLU, 48 -> 500, W_U",
    ),
    "ticket-image-mlp": ModelSpec(
        ImageMLP,
        dict(d_in=784, hidden=(200, 200), n_out=10, init_scale=8.0),
        "tickets image task: 784-200-200-10, init x8 (d_in=64 for load_digits)",
    ),
}
"""Model presets by name; :func:`build_model` overrides any preset argument."""


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build preset ``name`` with ``kwargs`` overriding its defaults (e.g. ``d_vocab=data.vocab_size``)."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise ModelConfigError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}") from None
    return spec.cls(**{**spec.defaults, **kwargs})
