"""TokenLearner (Ryoo et al. 2021): compress a frame's spatial feature map to a few learned tokens.

Each output token is a weighted sum over the spatial positions of the feature map, with weights
from a per-token attention map: a small MLP over each position's features gives one logit per
output token, a softmax over space turns the logits into a map (RT-1's TokenLearner v1.1 layout:
LayerNorm -> MLP -> softmax over positions)::

    tl = TokenLearner(d_model=512, num_tokens=8)
    tokens = tl(fmap)            # [N, 512, 9, 9] (or [N, 81, 512]) -> [N, 8, 512]

RT-1 uses 8 tokens per frame (from 81); the attention maps are available via ``return_maps``.
"""

from __future__ import annotations

import torch
from torch import nn


class TokenLearner(nn.Module):
    """Learned spatial attention pooling: ``[N, C, H, W]`` or ``[N, HW, C]`` -> ``[N, num_tokens, C]``."""

    def __init__(self, d_model: int, num_tokens: int, hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_tokens)
        )

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 4:  # [N, C, H, W] -> [N, HW, C]
            x = x.flatten(2).transpose(1, 2)
        logits = self.mlp(self.norm(x))  # [N, HW, num_tokens]
        maps = torch.softmax(logits.transpose(1, 2), dim=-1)  # [N, num_tokens, HW], sums to 1 over space
        tokens = maps @ x  # weighted sums of the (un-normalized) features: [N, num_tokens, C]
        return (tokens, maps) if return_maps else tokens
