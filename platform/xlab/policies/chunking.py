"""Executing action chunks: one action per control step from policies that predict the next K steps.

A chunking policy (``RT1Config.action_chunk = K``) returns, for each query, the actions of the next
``K`` steps (:meth:`~xlab.policies.rt1.RT1Policy.act_chunk`). :class:`ChunkExecutor` turns those
chunks into one action per step for each of ``num_envs`` environments, in one of three ways:

* ``ensemble`` -- temporal ensembling (ACT, Zhao et al. 2023): query every step; the action for step
  ``s`` is the weighted mean of every prediction made for ``s`` so far, weight ``exp(-decay * i)``
  with ``i = 0`` for the oldest prediction (ACT's rule: older predictions count more, which smooths
  the motion). Float keys are averaged; ``terminate_episode`` takes the argmax of the weighted
  one-hots.
* ``open-loop`` -- query once, execute the ``K`` actions, query again (Octo/OpenVLA-OFT/pi0 style).
  This cuts the policy requests per step by ``K``.
* ``first`` -- query every step and execute only the first action (RT-1's behaviour when ``K = 1``).

::

    executor = ChunkExecutor(num_envs=8, chunk=policy.config.action_chunk, mode="ensemble")
    for each control step:
        query = executor.needs_query()                  # bool [8]: which envs need a new chunk
        executor.add(np.flatnonzero(query), policy.act_chunk(windows[query], emb[query]))
        actions = [executor.next(i) for i in range(8)]  # RT-1 dicts
    executor.reset(i)                                   # environment i started a new episode
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from xlab.errors import XlabError

EXECUTIONS = ("ensemble", "open-loop", "first")


class ChunkExecutor:
    """Per-environment buffers of predicted chunks (see the module docstring for the modes)."""

    def __init__(self, num_envs: int, chunk: int, mode: str = "ensemble", decay: float = 0.1):
        if mode not in EXECUTIONS:
            raise XlabError(f"unknown chunk execution {mode!r}; choose one of {list(EXECUTIONS)}")
        if num_envs < 1 or chunk < 1:
            raise XlabError(f"num_envs and chunk must be >= 1, got {num_envs}, {chunk}")
        self.num_envs, self.chunk, self.mode, self.decay = num_envs, chunk, mode, float(decay)
        # Predictions per env, oldest first: (steps until the predicted chunk starts, chunk dict [K, ...]).
        self._pending: list[list[tuple[int, dict[str, np.ndarray]]]] = [[] for _ in range(num_envs)]

    def reset(self, env: int | Sequence[int] | None = None) -> None:
        """Forget the predictions of environment ``env`` (an index, indices, or ``None`` = all)."""
        for i in range(self.num_envs) if env is None else np.atleast_1d(env):
            self._pending[int(i)] = []

    def needs_query(self) -> np.ndarray:
        """``[num_envs]`` bool: the environments whose next action needs a new policy query."""
        if self.mode == "open-loop":
            return np.array([not p for p in self._pending])
        return np.ones(self.num_envs, bool)

    def add(self, envs: Sequence[int] | np.ndarray, chunks: Mapping[str, np.ndarray]) -> None:
        """Store the chunks ``{key: [len(envs), K, ...]}`` predicted now for ``envs``."""
        for j, i in enumerate(np.asarray(envs, dtype=np.int64)):
            chunk = {k: np.asarray(v[j]) for k, v in chunks.items()}
            if self.mode == "ensemble":
                self._pending[i].append((0, chunk))
            else:  # open-loop and first: the newest chunk replaces what was left
                self._pending[i] = [(0, chunk)]

    def next(self, env: int) -> dict[str, np.ndarray]:
        """The action of environment ``env`` for this step; advances its buffers by one step."""
        pending = self._pending[env]
        if not pending:
            raise XlabError(f"environment {env} has no predicted action: add a chunk first")
        if self.mode == "ensemble":
            # Every kept prediction still covers this step (offset < K): see the trimming below.
            preds = [c for _, c in pending]
            steps = [offset for offset, _ in pending]
            weights = np.exp(-self.decay * np.arange(len(preds)))
            weights /= weights.sum()
            action = {}
            for key in preds[0]:
                stacked = np.stack([c[key][s] for c, s in zip(preds, steps, strict=True)]).astype(np.float64)
                mean = np.tensordot(weights, stacked, axes=1)
                if key == "terminate_episode":
                    action[key] = np.eye(stacked.shape[-1], dtype=np.int32)[int(np.argmax(mean))]
                else:
                    action[key] = mean.astype(np.float32)
            self._pending[env] = [(s + 1, c) for s, c in pending if s + 1 < self.chunk]
            return action
        offset, chunk = pending[0]
        action = {k: v[offset] for k, v in chunk.items()}
        if self.mode == "open-loop" and offset + 1 < self.chunk:
            self._pending[env] = [(offset + 1, chunk)]
        else:
            self._pending[env] = []
        return action
