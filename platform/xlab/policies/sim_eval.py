"""Success in simulation while a policy trains: rollouts in Ray tasks, the best policy kept.

Token accuracy says little about whether a policy does its task (a policy can fit its training
windows and still fail every rollout). :class:`SimEvaluator` runs on the rank-0 training worker:
every ``train.eval_every`` steps :meth:`submit` ships a copy of the weights through the object store
to one Ray task per task (:func:`~xlab.policies.rollout.evaluate_in_ray`, scheduled outside the
training workers' placement group), and training goes on; :meth:`poll` collects finished
evaluations as ``sim/success`` metrics at the step they were taken, and keeps the weights of the
best one (``best``: step, success, state dict) for the ``@best-sim`` registry alias.

Episode seeds are ``seed * 100000 + task * 1000 + i`` with ``seed = train seed + 50``: never the
demonstrations' seeds, nor ``eval_policy``'s (123 by default), so picking the best checkpoint on these
episodes does not inflate the final evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EVAL_SEED_OFFSET = 50


class SimEvaluator:
    """Non-blocking evaluations in simulation of a training policy (see the module docstring)."""

    def __init__(self, tasks: tuple[str, ...] | list[str], episodes: int, execution: str, config: dict[str, Any],
                 seed: int = 0, num_cpus: float = 1.0, encoder: str | None = None) -> None:
        self.tasks, self.episodes, self.execution, self.num_cpus = list(tasks), int(episodes), execution, num_cpus
        self.encoder = encoder  # the training data's instruction encoder
        self.config = dict(config)
        self.seed = int(seed) + EVAL_SEED_OFFSET
        self.pending: list[tuple[int, list[Any], dict[str, Any]]] = []
        #: The best evaluation so far: ``{"step", "success", "policy"}`` (empty before the first).
        self.best: dict[str, Any] = {}

    def restore(self, best: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's ``best`` (after a worker-group restart)."""
        self.best = dict(best or {})

    def submit(self, step: int, policy: Any) -> None:
        """Start evaluating ``policy``'s current weights (returns at once)."""
        from xlab.policies.rollout import evaluate_in_ray

        state = {k: v.detach().to("cpu", copy=True) for k, v in policy.state_dict().items()}
        refs = evaluate_in_ray(self.config, self.tasks, self.episodes, seed=self.seed, execution=self.execution,
                               state=state, wait=False, num_cpus=self.num_cpus, encoder=self.encoder)
        self.pending.append((step, refs, state))

    def poll(self, wait: bool = False) -> list[tuple[int, dict[str, float]]]:
        """``[(step, metrics)]`` of the evaluations finished since the last call, oldest first; ``wait``
        blocks until every submitted one has finished."""
        import ray

        from xlab.policies.rollout import merge_results

        done = []
        while self.pending:
            step, refs, state = self.pending[0]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=None if wait else 0)
            if len(ready) < len(refs):
                break
            self.pending.pop(0)
            results = merge_results(ray.get(refs))
            metrics = {f"sim/success/{env_id.split('/', 1)[-1].removesuffix('-v0')}": float(r["success_rate"])
                       for env_id, r in results.items()}
            metrics["sim/success"] = float(np.mean(list(metrics.values())))
            # Ties go to the later step: same success, more training.
            if not self.best or metrics["sim/success"] >= self.best["success"]:
                self.best = {"step": step, "success": metrics["sim/success"], "policy": state}
            done.append((step, metrics))
        return done
