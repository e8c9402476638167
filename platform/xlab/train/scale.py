"""How a training run scales and survives failures: the fields every trainer's ``train`` section shares.

:class:`ScaleConfig` is the base of the grokking (:class:`xlab.train.TrainConfig`), policy
(:class:`xlab.policies.training.PolicyTrainConfig`) and LM (:class:`xlab.lm.pretrain.PretrainConfig`)
configs, so the dotted names are the same in every job: ``--train.num_workers 2``,
``--train.resume auto``, ``--train.max_failures 3``. A trainer redeclares a field only to change its
default. :func:`run_key` names a run by its config, so the same command finds its own checkpoints
again (``--train.resume auto``).

    class TrainConfig(ScaleConfig):
        steps: int = 1000
        num_workers: int = 2      # another default, same meaning
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from xlab.config import check, check_max_failures

PLACEMENTS = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")

# Fields that do not change what is trained: a run resumed with other values is the same run.
_NOT_IDENTITY = {
    "resume",
    "max_failures",
    "inject_failure_at",
    "storage",
    "placement",
    "preset",
    "cpus_per_worker",
    "threads_per_worker",
}
_NOT_IDENTITY_SECTIONS = ("tracking.", "ray.")


@dataclasses.dataclass
class ScaleConfig:
    """Workers, resources, checkpoints, restarts and resume of a Ray Train run."""

    num_workers: int = 1
    """Ray Train workers (data parallel); 1 may train in this process (grokking) or in one worker."""
    use_gpu: bool = False
    """One GPU per worker (NCCL); CPU workers use gloo."""
    cpus_per_worker: float = 1.0
    """CPUs each worker reserves (fractions let several workers share a small machine)."""
    threads_per_worker: int = 0
    """torch intra-op threads per worker (0: torch's default)."""
    parallel_strategy: str = "ddp"
    """ddp, or fsdp (FSDP1 through ray.train.torch.prepare_model; full state dicts gathered for checkpoints)."""
    placement: str = "PACK"
    """Ray placement of the workers: PACK, SPREAD (one per node where possible), STRICT_PACK, STRICT_SPREAD."""
    max_failures: int = 2
    """Worker-group restarts from the latest checkpoint after a worker or node dies (deterministic errors:
    never retried)."""
    checkpoint_every: int = 0
    """Steps between checkpoints (a restart loses at most this many); 0: the trainer's default."""
    storage: str = ""
    """Where checkpoints live: a path every node sees, or s3://...; default $XLAB_STORAGE_PATH, else ./ray_results."""
    resume: str = ""
    """'' starts afresh; 'auto' continues the latest run of this config found in storage; or a checkpoint dir."""
    inject_failure_at: int = 0
    """Fault-tolerance check: the last rank exits abruptly at this step, once per run (0: never)."""

    def __post_init__(self) -> None:
        check(self.num_workers >= 1, "train.num_workers", f"must be >= 1, got {self.num_workers}")
        check(self.cpus_per_worker > 0, "train.cpus_per_worker", f"must be > 0, got {self.cpus_per_worker}")
        check(self.threads_per_worker >= 0, "train.threads_per_worker", "must be >= 0 (0: torch's default)")
        check(
            self.parallel_strategy in ("ddp", "fsdp"),
            "train.parallel_strategy",
            f"must be ddp or fsdp, got {self.parallel_strategy!r}",
        )
        check(
            self.placement in PLACEMENTS,
            "train.placement",
            f"must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}",
        )
        check_max_failures(self.max_failures)
        check(
            self.checkpoint_every >= 0, "train.checkpoint_every", f"must be >= 0, got {self.checkpoint_every}"
        )
        check(
            self.inject_failure_at >= 0,
            "train.inject_failure_at",
            f"must be >= 0, got {self.inject_failure_at}",
        )


def run_key(*configs: Any) -> str:
    """8 hex digits naming what ``configs`` train (dataclasses or plain data), blind to how it is run.

    Resume settings, restart budget, storage, placement, tracking and Ray address do not enter the key,
    so ``--train.resume auto`` (or a different ``--train.max_failures``) finds the run of the same command.
    """
    from xlab.config import flatten

    parts = []
    for c in configs:
        flat = flatten(c) if dataclasses.is_dataclass(c) else {"": c}
        parts.append(
            {
                k: v
                for k, v in flat.items()
                if k.rsplit(".", 1)[-1] not in _NOT_IDENTITY and not k.startswith(_NOT_IDENTITY_SECTIONS)
            }
        )
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]
