"""Image augmentation for policy training windows: random shift (DrQ; RT-1's pad-and-crop).

A policy trained on a few dozen demonstrations memorises pixel positions; shifting every training
window by a few pixels (replicate-pad by ``pad``, crop back at a random offset) makes it rely on
where things are *relative to each other* (Kostrikov et al. 2020, DrQ; Octo and RT-1 random-crop
their frames the same way). The whole window shares one offset, so motion between its frames is
unchanged::

    images = random_shift(batch["image"], pad=4, generator=g)   # uint8 [B, T, H, W, 3] -> same shape
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each window of ``images`` ``[B, T, H, W, C]`` by a random offset in ``[-pad, pad]`` pixels."""
    if pad <= 0:
        return images
    b, t, h, w, c = images.shape
    x = images.permute(0, 1, 4, 2, 3).reshape(b, t * c, h, w)
    dtype = x.dtype
    x = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).tolist()
    out = torch.stack([x[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    return out.to(dtype).reshape(b, t, c, h, w).permute(0, 1, 3, 4, 2).contiguous()
