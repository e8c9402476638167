"""RT-1's decoder-only transformer and its attention mask.

The token sequence of a window of ``T`` frames is, per frame, ``n`` image tokens followed by
``a`` action slots (``a = 11``)::

    [img_1 (n), act_1 (a), img_2 (n), act_2 (a), ..., img_T (n), act_T (a)]

:func:`rt1_attention_mask` builds the RT-1 mask (``True`` = may attend):

* an image token of frame ``t`` attends to the image tokens of frames ``<= t`` (all tokens of its
  own frame, causal across frames), never to action slots;
* an action slot of frame ``t`` attends to the image tokens of frames ``<= t`` and to no action
  slot at all (not even itself): action predictions are conditioned on what was seen, never on
  other predicted or previous actions (RT-1 avoids copying the previous action this way);
* with a pad mask, keys of padded (front-padding) frames are masked out for every query; a query
  left with nothing to attend to (inside a padded frame) attends to itself only so the softmax
  stays finite -- its output is never used.

The action slots' inputs are learned query embeddings (see :class:`~xlab.policies.rt1.RT1Policy`),
so the logits of frame ``t`` depend only on frames ``<= t``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def token_layout(history: int, num_image_tokens: int, num_action_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence position: its frame index ``[L]`` and whether it is an action slot ``[L]``."""
    per = num_image_tokens + num_action_tokens
    frame = torch.arange(history).repeat_interleave(per)
    is_action = (torch.arange(per) >= num_image_tokens).repeat(history)
    return frame, is_action


def rt1_attention_mask(
    history: int,
    num_image_tokens: int,
    num_action_tokens: int,
    pad_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """RT-1 attention mask, ``True`` = query (row) may attend to key (column).

    Without ``pad_mask``: ``[L, L]`` with ``L = history * (num_image_tokens + num_action_tokens)``.
    With ``pad_mask`` ``[B, T]`` (``True`` = real frame): ``[B, L, L]``.
    """
    frame, is_action = token_layout(history, num_image_tokens, num_action_tokens)
    # Keys are image tokens of the query's frame or earlier; action slots are never keys.
    mask = (frame[None, :] <= frame[:, None]) & ~is_action[None, :]
    if pad_mask is None:
        return mask
    pad_mask = pad_mask.to(torch.bool)
    if pad_mask.shape[-1] != history:
        raise ValueError(f"pad_mask has {pad_mask.shape[-1]} frames, expected {history}")
    key_real = pad_mask[:, frame.to(pad_mask.device)]  # [B, L]
    mask = mask.to(pad_mask.device)[None] & key_real[:, None, :]
    # Rows with no visible key (queries inside padded frames) attend to themselves: finite softmax.
    empty = ~mask.any(dim=-1)  # [B, L]
    eye = torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)
    return mask | (empty[:, :, None] & eye[None])


class Attention(nn.Module):
    """Multi-head self-attention whose head size need not be ``d_model / num_heads`` (RT-1: 8 x 128 on 512)."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.qkv = nn.Linear(d_model, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if mask.dim() == 3:  # [B, L, L] -> broadcast over heads
            mask = mask[:, None]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, length, -1))


class SwiGLU(nn.Module):
    """SwiGLU feed-forward ``W2 (silu(W1 x) * W3 x)`` (RT-1-X's JAX release)."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * ff_dim)
        self.down = nn.Linear(ff_dim, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.drop(F.silu(gate) * up))


def feed_forward(kind: str, d_model: int, ff_dim: int, dropout: float) -> nn.Module:
    """``gelu``: Linear-GELU-Linear; ``swiglu``: :class:`SwiGLU`; ``linear``: one Dense layer (RT-1's TF code)."""
    if kind == "gelu":
        return nn.Sequential(nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model))
    if kind == "swiglu":
        return SwiGLU(d_model, ff_dim, dropout)
    if kind == "linear":
        return nn.Linear(d_model, d_model)
    raise ValueError(f"unknown feed-forward {kind!r}; choose gelu, swiglu or linear")


class DecoderLayer(nn.Module):
    """Pre-norm transformer layer: masked self-attention and a feed-forward block, both residual."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, ff_dim: int, dropout: float,
                 ff: str = "gelu"):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, num_heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = feed_forward(ff, d_model, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.ff(self.norm2(x)))


class RT1Transformer(nn.Module):
    """Stack of :class:`DecoderLayer` with a final LayerNorm: ``[B, L, d]`` + mask -> ``[B, L, d]``."""

    def __init__(self, d_model: int, num_layers: int, num_heads: int, head_dim: int, ff_dim: int, dropout: float,
                 ff: str = "gelu"):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, head_dim, ff_dim, dropout, ff) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)
