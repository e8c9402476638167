"""EfficientNet-B3 with FiLM after every MBConv block: the image tokenizer of ``rt1x-paper``.

The architecture follows Tan & Le (2019): the EfficientNet-B0 stage table scaled by width 1.2 and
depth 1.4 (B3), MBConv blocks (1x1 expansion, depthwise conv, squeeze-and-excitation with ratio
0.25 of the block's input channels, 1x1 projection, residual when shapes allow), SiLU activations
and BatchNorm. As in RT-1, a :class:`~xlab.policies.film.FiLM` layer conditioned on the
instruction embedding follows every MBConv block, and the 1536-channel head conv is followed by a
1x1 conv to ``d_model`` channels (one token per spatial cell)::

    net = EfficientNetB3FiLM(embed_dim=384, d_model=512)
    fmap = net(images, embedding)       # [N, 3, 300, 300] -> [N, 512, 10, 10]

**No pretrained weights**: RT-1 starts from ImageNet weights, but none can be downloaded here, so
the network is randomly initialized (loading converted ImageNet weights into ``stem``/``blocks``
would need a key mapping; not done). Stochastic depth (drop-connect) is not implemented.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from xlab.policies.film import FiLM

# EfficientNet-B0 stages: (expand ratio, kernel, stride, in channels, out channels, repeats).
B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
B3_WIDTH, B3_DEPTH = 1.2, 1.4


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor`` (reference rule)."""
    c = channels * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if new < 0.9 * c:  # never round down by more than 10%
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's block count by ``depth``, rounding up (reference rule)."""
    return int(math.ceil(depth * repeats))


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> reduce -> SiLU -> expand -> sigmoid gate."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Mobile inverted bottleneck block with squeeze-excitation (EfficientNet's building block)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int, se_ratio: float = 0.25):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU()]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.SiLU(),
            SqueezeExcite(hidden, max(1, int(c_in * se_ratio))),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class EfficientNetB3FiLM(nn.Module):
    """EfficientNet-B3 feature extractor with FiLM after each of its 26 MBConv blocks.

    ``forward(images [N, 3, H, W], embedding [N, E]) -> [N, d_model, H/32, W/32]`` (ceil).
    """

    def __init__(self, embed_dim: int, d_model: int, width: float = B3_WIDTH, depth: float = B3_DEPTH):
        super().__init__()
        stem = round_filters(32, width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(stem), nn.SiLU()
        )
        blocks, films = [], []
        for expand, kernel, stride, c_in, c_out, repeats in B0_STAGES:
            c_in, c_out = round_filters(c_in, width), round_filters(c_out, width)
            for i in range(round_repeats(repeats, depth)):
                blocks.append(MBConv(c_in if i == 0 else c_out, c_out, expand, kernel, stride if i == 0 else 1))
                films.append(FiLM(embed_dim, c_out))
        self.blocks = nn.ModuleList(blocks)
        self.films = nn.ModuleList(films)
        head = round_filters(1280, width)
        self.head = nn.Sequential(nn.Conv2d(c_out, head, 1, bias=False), nn.BatchNorm2d(head), nn.SiLU())
        # RT-1 / RT-1-X: a bias-free 1x1 projection to the token width, FiLM-conditioned once more.
        self.out = nn.Conv2d(head, d_model, 1, bias=False)
        self.out_film = FiLM(embed_dim, d_model)

    def forward(self, images: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for block, film in zip(self.blocks, self.films, strict=True):
            x = film(block(x), embedding)
        return self.out_film(self.out(self.head(x)), embedding)
