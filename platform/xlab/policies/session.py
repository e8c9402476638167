"""Step-by-step control of many environments with one policy: frame histories, states, chunk execution.

:class:`HistoryBuffer` keeps each environment's last ``T`` frames (front-padded, as training windows
are), :func:`fit_state` pads robots' proprio states to the policy's size, and :class:`PolicySession`
couples a policy to both and to a :class:`~xlab.policies.chunking.ChunkExecutor`::

    session = PolicySession(policy, num_envs=8)
    action = session.step(frames, embeddings)   # frames [8, H, W, 3] -> RT-1 dict, numpy [8, ...]
    session.reset(i)                            # environment i started a new episode
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xlab.policies.rt1 import PolicyError, RT1Policy


class HistoryBuffer:
    """Per-environment rolling window of the last ``history`` frames, front-padded with zeros.

    ::

        buf = HistoryBuffer(num_envs=8, history=policy.config.history)
        images, pad_mask = buf.push(frames)      # frames [8, H, W, 3] -> [8, T, H, W, 3], [8, T]
        action = policy.act(images, embeddings, pad_mask=pad_mask)
        buf.reset(3)                             # environment 3 started a new episode

    ``pad_mask[i, t]`` is ``True`` for real frames; after ``k`` pushes since a reset the last
    ``min(k, T)`` frames are real. Returned arrays are copies (uint8 numpy).
    """

    def __init__(self, num_envs: int, history: int):
        if num_envs < 1 or history < 1:
            raise PolicyError(f"num_envs and history must be >= 1, got {num_envs}, {history}")
        self.num_envs, self.history = num_envs, history
        self._frames: np.ndarray | None = None  # allocated on the first push (frame shape unknown before)
        self._count = np.zeros(num_envs, dtype=np.int64)

    def reset(self, env: int | Sequence[int] | None = None) -> None:
        """Forget the frames of environment ``env`` (an index, indices, or ``None`` = all)."""
        idx = slice(None) if env is None else np.atleast_1d(np.asarray(env, dtype=np.int64))
        self._count[idx] = 0
        if self._frames is not None:
            self._frames[idx] = 0

    def pad_mask(self) -> np.ndarray:
        """``[num_envs, T]`` bool, ``True`` where the window holds a real frame."""
        return np.arange(self.history)[None, :] >= (self.history - self._count)[:, None]

    def push(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """Append one frame per environment (``[num_envs, H, W, 3]``, or any ``[num_envs, ...]`` such as
        proprio states); return the windows ``[num_envs, T, ...]`` and the pad mask."""
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.asarray(images)
        if images.ndim < 2 or images.shape[0] != self.num_envs:
            raise PolicyError(f"push expects one frame per environment [{self.num_envs}, ...], got {images.shape}")
        if self._frames is None or self._frames.shape[2:] != images.shape[1:]:
            self._frames = np.zeros((self.num_envs, self.history, *images.shape[1:]), dtype=images.dtype)
            self._count[:] = 0  # a new frame shape means new episodes
        self._frames[:, :-1] = self._frames[:, 1:].copy()
        self._frames[:, -1] = images
        self._count = np.minimum(self._count + 1, self.history)
        # Shifted-in slots of environments with fewer real frames than T are stale; zero them.
        mask = self.pad_mask()
        self._frames[~mask] = 0
        return self._frames.copy(), mask


def fit_state(states: Any, dim: int) -> np.ndarray:
    """Proprio states ``[..., D]`` cut or zero-padded to ``[..., dim]`` float32 (how datasets of robots
    with different state sizes share one policy input; :func:`xlab.rlds.windows.episode_windows` pads
    training windows the same way)."""
    states = np.asarray(states, np.float32)
    out = np.zeros((*states.shape[:-1], dim), np.float32)
    d = min(dim, states.shape[-1])
    out[..., :d] = states[..., :d]
    return out


class PolicySession:
    """A policy plus per-environment history buffers and a chunk executor: call :meth:`step` once per
    control step for all envs.

    ::

        session = PolicySession(policy, num_envs=8)
        action = session.step(frames, embeddings)   # frames [8, H, W, 3] -> RT-1 dict, numpy [8, ...]
        session.reset(i)                            # when environment i's episode ends

    ``execution`` says how a chunking policy's chunks become actions
    (:class:`~xlab.policies.chunking.ChunkExecutor`; irrelevant when ``action_chunk == 1``).
    Policies with ``state_dim > 0`` need ``state`` ``[num_envs, D]`` at every step.
    """

    def __init__(self, policy: RT1Policy, num_envs: int, execution: str = "ensemble"):
        from xlab.policies.chunking import ChunkExecutor

        self.policy = policy
        self.buffer = HistoryBuffer(num_envs, policy.config.history)
        self.states = HistoryBuffer(num_envs, policy.config.history) if policy.config.state_dim else None
        self.executor = ChunkExecutor(num_envs, policy.config.action_chunk, execution)

    def reset(self, env: int | Sequence[int] | None = None) -> None:
        self.buffer.reset(env)
        self.executor.reset(env)
        if self.states is not None:
            self.states.reset(env)

    def step(self, images: Any, instruction_embedding: Any, mode: str = "argmax", temperature: float = 1.0,
             seed: int | None = None, state: Any = None) -> dict[str, np.ndarray]:
        window, pad_mask = self.buffer.push(images)
        state_window = None
        if self.states is not None:
            if state is None:
                raise PolicyError(f"this policy takes proprio state ({self.policy.config.state_dim}-d): pass state=")
            state_window, _ = self.states.push(fit_state(state, self.policy.config.state_dim))
        query = np.flatnonzero(self.executor.needs_query())
        if len(query):
            emb = np.asarray(instruction_embedding)
            chunk = self.policy.act_chunk(window[query], emb[query], mode=mode, temperature=temperature,
                                          pad_mask=pad_mask[query], seed=seed,
                                          state=None if state_window is None else state_window[query])
            self.executor.add(query, chunk)
        actions = [self.executor.next(i) for i in range(self.buffer.num_envs)]
        return {k: np.stack([a[k] for a in actions]) for k in actions[0]}
