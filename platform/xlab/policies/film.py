"""FiLM conditioning and the small FiLM conv net image tokenizer of the CPU presets.

FiLM (Perez et al. 2018) modulates a feature map with a per-channel scale and shift computed from
a conditioning vector -- here the instruction embedding -- so the image tokens already depend on
the instruction before the transformer sees them (RT-1 puts one FiLM layer after every
EfficientNet block)::

    film = FiLM(embed_dim=384, channels=64)
    y = film(x, embedding)            # x [N, 64, H, W], embedding [N, 384] -> [N, 64, H, W]

:class:`SmallFiLMConvNet` is the image tokenizer of the ``small-film`` backbone: a few strided
conv blocks with FiLM after each, ending in a bias-free 1x1 conv to ``d_model`` channels and one more FiLM (one token per
spatial cell, like RT-1's 1x1 conv + FiLM after EfficientNet).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FiLM(nn.Module):
    """Feature-wise linear modulation ``x * (1 + gamma(e)) + beta(e)``, identity at init.

    ``gamma`` and ``beta`` come from one linear layer whose weight and bias start at zero, as in
    RT-1: inserting FiLM layers into a (pretrained) conv net must not change its features before
    training has learned how the instruction should modulate them.
    """

    def __init__(self, embed_dim: int, channels: int):
        super().__init__()
        self.channels = channels
        self.proj = nn.Linear(embed_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """``x`` [N, C, H, W] (or [N, C]), ``embedding`` [N, E] -> same shape as ``x``."""
        gamma, beta = self.proj(embedding).chunk(2, dim=-1)
        shape = (x.shape[0], self.channels) + (1,) * (x.dim() - 2)
        return x * (1.0 + gamma.reshape(shape)) + beta.reshape(shape)


class _ConvBlock(nn.Module):
    """3x3 strided conv -> GroupNorm -> SiLU -> 3x3 conv -> GroupNorm -> SiLU, then FiLM."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, stride: int):
        super().__init__()
        # GroupNorm, not BatchNorm: batch statistics would make train/eval logits differ and
        # couple the samples of a small CPU batch.
        groups = min(8, c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.act = nn.SiLU()
        self.film = FiLM(embed_dim, c_out)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.film(x, embedding)


class SmallFiLMConvNet(nn.Module):
    """Small FiLM-conditioned conv net: images [N, 3, H, W] -> feature map [N, d_model, H/2^k, W/2^k].

    Every block halves the resolution (``k = len(channels)``); a 64x64 image with 3 blocks gives
    an 8x8 map = 64 spatial tokens, which :class:`~xlab.policies.token_learner.TokenLearner` then
    compresses.
    """

    def __init__(self, embed_dim: int, d_model: int, channels: Sequence[int] = (32, 64, 128)):
        super().__init__()
        blocks = []
        c_in = 3
        for c in channels:
            blocks.append(_ConvBlock(c_in, c, embed_dim, stride=2))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        # As in RT-1's and RT-1-X's tokenizers: a bias-free 1x1 projection, then FiLM once more.
        self.out = nn.Conv2d(c_in, d_model, 1, bias=False)
        self.out_film = FiLM(embed_dim, d_model)

    def forward(self, images: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x = images
        for block in self.blocks:
            x = block(x, embedding)
        return self.out_film(self.out(x), embedding)
