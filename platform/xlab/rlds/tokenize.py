"""RT-1 action tokenization: 11 tokens per step, 256 bins per dimension, numpy or torch.

Each continuous dimension is clipped to its bounds and binned as RT-1 does,
``token = int((a - lo) / (hi - lo) * (vocab - 1))``, and detokenized to the bin's lower edge,
``a' = token / (vocab - 1) * (hi - lo) + lo``, so a round trip is within one bin width
``(hi - lo) / (vocab - 1)``. ``terminate_episode`` (one-hot of 3: terminate / arm / base) is
tokenized as its argmax (0..2) and detokenized back to a one-hot. Token order follows
:data:`~xlab.rlds.schema.ACTION_SPEC` (terminate, world_vector x3, rotation_delta x3, gripper,
base rotation, base displacement x2)::

    from xlab.rlds import ActionTokenizer, RT1X_BOUNDS
    tok = ActionTokenizer()                 # RT-1-X bounds, 256 bins
    tokens = tok.tokenize(action_dict)      # [..., 11] int64 (np) or long (torch)
    action = tok.detokenize(tokens)         # RT-1 dict, same leading dims

Bounds (``ActionBounds``): ``world_vector`` [-1, 1] in RT-1 (Google robot data only) and
[-2, 2] in RT-1-X, whose mixture includes Bridge actions rescaled to +-1.75; the default here is
RT-1-X because the platform trains on mixtures. ``rotation_delta`` [-pi/2, pi/2], gripper
[-1, 1] (+1 closes), ``base_displacement_vector`` [-1, 1], ``base_displacement_vertical_rotation``
[-pi, pi].

A value less than ``EDGE_EPS`` (1e-4 of a bin) below a bin edge counts as on the edge, so
detokenized float32 values tokenize back to the same tokens (float32 rounding otherwise puts some
a hair below their bin's lower edge).

Inputs may be numpy arrays or torch tensors (any leading batch/time dims); outputs are the same
kind, on the same device for torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from xlab.rlds.schema import ACTION_SPEC, NUM_ACTION_TOKENS, RLDSError


@dataclasses.dataclass(frozen=True)
class ActionBounds:
    """Clipping bounds ``(lo, hi)`` of each continuous RT-1 action key."""

    world_vector: tuple[float, float] = (-2.0, 2.0)
    rotation_delta: tuple[float, float] = (-math.pi / 2, math.pi / 2)
    gripper_closedness_action: tuple[float, float] = (-1.0, 1.0)
    base_displacement_vertical_rotation: tuple[float, float] = (-math.pi, math.pi)
    base_displacement_vector: tuple[float, float] = (-1.0, 1.0)

    def of(self, key: str) -> tuple[float, float]:
        return getattr(self, key)


RT1_BOUNDS = ActionBounds(world_vector=(-1.0, 1.0))
RT1X_BOUNDS = ActionBounds()

# (key, size, tokens) per slot of the token sequence, precomputed once.
_SLOTS: tuple[tuple[str, int], ...] = tuple((k, n) for k, n in ACTION_SPEC)
EDGE_EPS = 1e-4  # in bins: above float32 rounding (<= ~3e-5 bins here), far below a bin


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class ActionTokenizer:
    """Tokenize / detokenize RT-1 action dicts (see the module docstring for the scheme)."""

    def __init__(self, bounds: ActionBounds = RT1X_BOUNDS, vocab_size: int = 256):
        if vocab_size < 2:
            raise RLDSError(f"vocab_size must be >= 2, got {vocab_size}")
        self.bounds = bounds
        self.vocab_size = int(vocab_size)
        self.num_tokens = NUM_ACTION_TOKENS

    def bin_width(self, key: str) -> float:
        """Width of one bin of ``key`` (the round-trip error bound)."""
        lo, hi = self.bounds.of(key)
        return (hi - lo) / (self.vocab_size - 1)

    def tokenize(self, action: Mapping[str, Any]) -> Any:
        """RT-1 action dict ``{key: [..., size]}`` -> tokens ``[..., 11]`` (int64 / torch.long)."""
        missing = [k for k, _ in _SLOTS if k not in action]
        if missing:
            raise RLDSError(f"action dict lacks {missing}; complete it with xlab.rlds.complete_action")
        torch_mode = any(_is_torch(action[k]) for k, _ in _SLOTS)
        if torch_mode:
            import torch

            ref = next(action[k] for k, _ in _SLOTS if _is_torch(action[k]))
            parts = []
            for key, size in _SLOTS:
                a = torch.as_tensor(action[key], device=ref.device)
                if key == "terminate_episode":
                    parts.append(torch.argmax(a.reshape(*a.shape[:-1], 3), dim=-1, keepdim=True).long())
                    continue
                lo, hi = self.bounds.of(key)
                a = a.to(torch.float64).reshape(*a.shape[:-1], size).clamp(lo, hi)
                t = torch.floor((a - lo) / (hi - lo) * (self.vocab_size - 1) + EDGE_EPS).long()
                parts.append(t.clamp(0, self.vocab_size - 1))
            return torch.cat(parts, dim=-1)
        parts = []
        for key, size in _SLOTS:
            a = np.asarray(action[key])
            if key == "terminate_episode":
                parts.append(np.argmax(a.reshape(*a.shape[:-1], 3), axis=-1)[..., None].astype(np.int64))
                continue
            lo, hi = self.bounds.of(key)
            a = np.clip(a.astype(np.float64).reshape(*a.shape[:-1], size), lo, hi)
            t = np.floor((a - lo) / (hi - lo) * (self.vocab_size - 1) + EDGE_EPS).astype(np.int64)
            parts.append(np.clip(t, 0, self.vocab_size - 1))
        return np.concatenate(parts, axis=-1)

    def detokenize(self, tokens: Any) -> dict[str, Any]:
        """Tokens ``[..., 11]`` -> RT-1 action dict (float32; ``terminate_episode`` int32 one-hot).

        Out-of-range tokens are clipped into the vocabulary; a terminate token above 2 (a model
        can emit any of the vocabulary) counts as 2.
        """
        if tokens.shape[-1] != self.num_tokens:
            raise RLDSError(
                f"expected {self.num_tokens} action tokens on the last axis, got shape {tuple(tokens.shape)}"
            )
        out: dict[str, Any] = {}
        i = 0
        if _is_torch(tokens):
            import torch

            for key, size in _SLOTS:
                if key == "terminate_episode":
                    idx = tokens[..., i].long().clamp(0, 2)
                    out[key] = torch.nn.functional.one_hot(idx, 3).to(torch.int32)
                    i += 1
                    continue
                lo, hi = self.bounds.of(key)
                t = tokens[..., i : i + size].clamp(0, self.vocab_size - 1).to(torch.float32)
                out[key] = t / (self.vocab_size - 1) * (hi - lo) + lo
                i += size
            return out
        tokens = np.asarray(tokens)
        for key, size in _SLOTS:
            if key == "terminate_episode":
                idx = np.clip(tokens[..., i].astype(np.int64), 0, 2)
                out[key] = np.eye(3, dtype=np.int32)[idx]
                i += 1
                continue
            lo, hi = self.bounds.of(key)
            t = np.clip(tokens[..., i : i + size], 0, self.vocab_size - 1).astype(np.float32)
            out[key] = (t / (self.vocab_size - 1) * (hi - lo) + lo).astype(np.float32)
            i += size
        return out


_DEFAULT = ActionTokenizer()


def tokenize_action(action: Mapping[str, Any], tokenizer: ActionTokenizer | None = None) -> Any:
    """Tokens ``[..., 11]`` of an RT-1 action dict with the default (RT-1-X, 256-bin) tokenizer."""
    return (tokenizer or _DEFAULT).tokenize(action)


def detokenize_action(tokens: Any, tokenizer: ActionTokenizer | None = None) -> dict[str, Any]:
    """RT-1 action dict from tokens ``[..., 11]`` with the default tokenizer."""
    return (tokenizer or _DEFAULT).detokenize(tokens)
