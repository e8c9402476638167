"""The one Ray Train harness: :func:`launch` builds the ``TorchTrainer``, every worker gets a :class:`WorkerContext`.

The grokking loop (:mod:`xlab.train.runner`), the policy trainer (:mod:`xlab.policies.training`) and
LM pretraining (:mod:`xlab.lm.pretrain`) keep only their steps, evaluation and data; this module does
the rest, the same way for all three:

* **Scaling** from a :class:`~xlab.train.scale.ScaleConfig` (workers, CPUs/GPUs, threads, DDP or
  FSDP, placement), inside a Ray Tune trial too (the trial's metrics are forwarded to Tune).
* **Checkpoints** in one format: ``state.pt`` in each Ray checkpoint directory, plain data written
  by :func:`xlab.checkpoint.save_checkpoint` and read with ``torch.load(weights_only=True)``; FSDP
  state dicts gathered with ``torch.distributed.checkpoint.state_dict.get_state_dict`` (full, on CPU).
* **Resume**: after a worker or node failure Ray restarts the worker group (``max_failures``) and
  :attr:`WorkerContext.restored` is the latest checkpoint; the same command with
  ``--train.resume auto`` after the driver died finds the latest run of the same config in storage
  (its Ray run name is ``<name>-<run key>-<time>``) and Ray restores it; ``--train.resume DIR``
  starts a new run from a checkpoint directory. Every resume is counted in the checkpoint
  (``restarts``, ``resumed_from``) and logged to MLflow (``train/restarts``, ``train/resumed_from_step``).
* **Failures**: a worker's :class:`~xlab.errors.XlabError` (bad data, NaN loss) fails the run at once
  (:mod:`xlab.train.ray_failures`); :meth:`WorkerContext.check_loss` turns a NaN/inf loss into one.
  ``inject_failure_at`` kills the last rank once, to test all of this.
* **Storage** checked up front on multi-node clusters (:func:`xlab.train.storage.check_shared`).

    def worker(ctx: WorkerContext, config: dict) -> None:
        model = build(); state = ctx.restored
        if state: model.load_state_dict(state["model"])
        net = ctx.wrap(model); ...
        for step in range(ctx.start_step + 1, steps + 1):
            ...; ctx.check_loss(float(loss), step)
            if step % every == 0:
                ctx.save({"model": ctx.full_state(net, model, opt)[0], "step": step}, {"loss": ...})

    result = launch(worker, {"lr": 1e-3}, cfg.train, name="toy", key=run_key(cfg))
    result.state["model"]
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from xlab.checkpoint import load_checkpoint, save_checkpoint
from xlab.errors import XlabError, check_finite_loss
from xlab.train.scale import ScaleConfig
from xlab.train.storage import check_shared, find_resumable, storage_path

CHECKPOINT_FILE = "state.pt"

WorkerFn = Callable[["WorkerContext", Any], None]


def in_tune_trial() -> bool:
    """True inside a Ray Tune function trial (where a Train run's metrics should also reach Tune)."""
    import warnings

    try:
        from ray import tune

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # outside Tune, get_trial_id() warns and returns None
            return tune.get_context().get_trial_id() is not None
    except Exception:
        return False


def quiet_train_logs() -> None:
    """Ray Train logs every report call at INFO from every rank; the trainers' progress lines say enough."""
    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
        logging.getLogger(context.__name__).setLevel(logging.WARNING)
    except ImportError:  # internal module moved: keep the noise rather than fail
        pass


def load_state(checkpoint: Any) -> dict[str, Any]:
    """The state dict inside a ``ray.train.Checkpoint`` (weights-only load)."""
    with checkpoint.as_directory() as d:
        return read_checkpoint(d)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The state in a checkpoint directory (local, or a URI Ray can read); a one-line error if there is none."""
    path = os.fspath(path)
    if "://" in path:
        import ray.train

        return load_state(ray.train.Checkpoint(path))
    file = Path(path) / CHECKPOINT_FILE
    if not file.is_file():
        raise XlabError(
            f"no checkpoint at {path} ({CHECKPOINT_FILE} missing): give a checkpoint directory of an "
            "xlab run (<storage>/<run>/checkpoint_...), or --train.resume auto"
        )
    return load_checkpoint(file, map_location="cpu")


def _failure_marker(storage: str, run_name: str) -> Path:
    # In shared storage when it is a path: a worker restarted on another node must see it too.
    base = Path(storage) / run_name if "://" not in storage else Path(tempfile.gettempdir())
    return base / f".xlab-injected-failure-{run_name}"


class WorkerContext:
    """What a training worker knows and does besides its own step (see the module docstring)."""

    def __init__(self, scale: ScaleConfig, meta: Mapping[str, Any]) -> None:
        import ray
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.scale = scale
        self.name: str = meta["name"]
        self.run_name: str = meta["run_name"]
        self.storage: str = meta["storage"]
        self.rank: int = ctx.get_world_rank()
        self.world_size: int = ctx.get_world_size()
        self.local_rank: int = ctx.get_local_rank()
        self.device: torch.device = ray.train.torch.get_device()
        self.node_id: str = ray.get_runtime_context().get_node_id()
        self.fsdp = scale.parallel_strategy == "fsdp"
        if scale.threads_per_worker:
            torch.set_num_threads(scale.threads_per_worker)
        quiet_train_logs()
        self.nodes: list[str] = self._gather(self.node_id)
        self.tracker = None
        if meta.get("run_id"):
            import mlflow

            from xlab.track.run import Tracker

            mlflow.set_tracking_uri(meta["tracking_uri"])
            self.tracker = Tracker(meta["run_id"], enabled=self.rank == 0)
        self.restored: dict[str, Any] | None = self._restore(meta.get("resume_from"))
        self.start_step = int(self.restored["step"]) if self.restored else 0
        self.restarts = int(self.restored.get("restarts", 0)) + 1 if self.restored else 0
        self.resumed_from = (
            list(self.restored.get("resumed_from", [])) + [self.start_step] if self.restored else []
        )
        if self.restored is not None and self.rank == 0:
            print(
                f"[{self.name}] resuming at step {self.start_step} (resume {self.restarts} of this run, "
                f"{self.world_size} workers on {len(set(self.nodes))} nodes)",
                flush=True,
            )
            self.log(
                {"train/restarts": float(self.restarts), "train/resumed_from_step": float(self.start_step)},
                self.start_step,
            )

    # ----------------------------------------------------------------------------------------- set-up

    def _gather(self, value: Any) -> list[Any]:
        import torch.distributed as dist

        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            out: list[Any] = [None] * self.world_size
            dist.all_gather_object(out, value)
            return out
        return [value]

    def _restore(self, resume_from: str | None) -> dict[str, Any] | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()  # a restarted worker group, or a resumed run (same name)
        if ckpt is not None:
            return load_state(ckpt)
        if resume_from:  # a new run continuing from a checkpoint directory
            return read_checkpoint(resume_from)
        return None

    def wrap(self, model: torch.nn.Module, **fsdp_kwargs: Any) -> torch.nn.Module:
        """``model`` moved to this worker's device and wrapped for data parallelism (DDP, or FSDP with ``fsdp_kwargs``)."""
        import ray.train.torch

        return ray.train.torch.prepare_model(
            model,
            parallel_strategy=self.scale.parallel_strategy,
            parallel_strategy_kwargs=fsdp_kwargs if self.fsdp else None,
        )

    # ------------------------------------------------------------------------------------- collectives

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over every worker (on CPU); ``t`` itself with one worker."""
        import torch.distributed as dist

        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            t = t.to(self.device)
            dist.all_reduce(t)
        return t.cpu()

    def full_state(
        self, net: torch.nn.Module, model: torch.nn.Module, optimizer: Any, prefix: str = ""
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Unsharded CPU state dicts of ``model`` and ``optimizer`` (:func:`full_state_dicts`); every worker calls it."""
        return full_state_dicts(net, model, optimizer, self.fsdp, prefix)

    def load_optimizer(self, net: torch.nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
        """Restore an optimizer state saved by :meth:`full_state` (FSDP: re-sharded from the full state)."""
        load_optimizer_state(net, optimizer, state, self.fsdp)

    # --------------------------------------------------------------------------------------- reporting

    def check_loss(
        self, value: float, step: int, hint: str = "lower the learning rate or clip gradients"
    ) -> None:
        """Fail the run (never retried, nothing registered) if the loss is NaN or infinite."""
        check_finite_loss(value, step, f"{self.name} (rank {self.rank})", hint)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Log to the job's MLflow run (rank 0 only)."""
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step)

    def report(self, metrics: Mapping[str, float]) -> None:
        """Report metrics to Ray Train (and Tune) without a checkpoint; every worker calls it (a barrier)."""
        import ray.train

        ray.train.report({k.replace("/", "_"): v for k, v in metrics.items()})

    def save(self, state: dict[str, Any], metrics: Mapping[str, float]) -> None:
        """Checkpoint ``state`` (plain data with a ``step``) with ``metrics``; every worker calls it, rank 0 writes."""
        import ray.train

        metrics = {k.replace("/", "_"): v for k, v in metrics.items()}
        with tempfile.TemporaryDirectory() as d:
            if self.rank == 0:
                full = {
                    **state,
                    "restarts": self.restarts,
                    "resumed_from": self.resumed_from,
                    "worker_nodes": self.nodes,
                }
                save_checkpoint(full, Path(d) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
            else:
                ray.train.report(metrics, checkpoint=None)

    def maybe_fail(self, step: int) -> None:
        """Fault injection (``inject_failure_at``): the last rank exits abruptly at that step, once per run."""
        if (
            not self.scale.inject_failure_at
            or step != self.scale.inject_failure_at
            or self.rank != self.world_size - 1
        ):
            return
        marker = _failure_marker(self.storage, self.run_name)
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        # Ray Train's controller registers reported checkpoints when it polls the workers (every
        # $RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s): a crash sooner after a report loses that checkpoint
        # too. Wait two polls, like a crash well after the checkpoint.
        time.sleep(2 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0)) + 1)
        print(f"[{self.name}] rank {self.rank}: injected failure at step {step}", flush=True)
        os._exit(1)


def full_state_dicts(
    net: torch.nn.Module, model: torch.nn.Module, optimizer: Any, fsdp: bool, prefix: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Unsharded CPU state dicts of ``model`` (the module ``net`` wraps) and ``optimizer``.

    With FSDP this is the torch-documented ``get_state_dict(net, optimizer, options=StateDictOptions(
    full_state_dict=True, cpu_offload=True))``: a collective (every worker calls it) whose result is
    complete on rank 0, the one that saves; ``prefix`` is stripped from the model keys when ``net``
    wraps ``model`` inside another module (``"policy."``). Without FSDP: ``model``'s own state dicts.
    """
    if not fsdp:
        return ({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, optimizer.state_dict())
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    model_state, optim_state = get_state_dict(
        net, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    return {k.removeprefix(prefix): v for k, v in model_state.items()}, optim_state


def load_optimizer_state(net: torch.nn.Module, optimizer: Any, state: dict[str, Any], fsdp: bool) -> None:
    """Load an optimizer state from :func:`full_state_dicts` into ``optimizer`` of ``net`` (FSDP: re-sharded)."""
    if not fsdp:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(
        net,
        optimizer,
        model_state_dict={},
        optim_state_dict=state,
        options=StateDictOptions(full_state_dict=True, strict=False),
    )


def _worker_main(loop_config: dict[str, Any]) -> None:
    ctx = WorkerContext(loop_config["scale"], loop_config["meta"])
    loop_config["fn"](ctx, loop_config["config"])


@dataclasses.dataclass
class LaunchResult:
    """What a finished Ray Train run left: its latest checkpoint's state and where the run lives."""

    state: dict[str, Any]
    """The latest checkpoint (weights-only load)."""
    metrics: dict[str, Any]
    """The metrics reported with the latest checkpoint."""
    checkpoint_path: str
    run_name: str
    storage: str
    seconds: float
    best_checkpoints: list[tuple[Any, dict[str, Any]]]
    """Ray's kept ``(Checkpoint, metrics)`` pairs (read one with :func:`load_state`)."""


def _fresh_name(name: str, key: str) -> str:
    return f"{name}-{key}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def resolve_run(
    scale: ScaleConfig, storage: str, name: str, key: str, resume_from: str | None = None
) -> tuple[str, str | None]:
    """The Ray run name and the checkpoint directory to start from (see the module docstring)."""
    explicit = resume_from or (scale.resume if scale.resume not in ("", "auto") else None)
    if explicit:
        if "://" not in explicit and not (Path(explicit) / CHECKPOINT_FILE).is_file():
            read_checkpoint(explicit)  # raises the one-line error
        return _fresh_name(name, key), str(explicit)
    if scale.resume == "auto":
        found = find_resumable(storage, f"{name}-{key}-")
        if found is not None:
            print(f"[{name}] resuming run {found} from its latest checkpoint in {storage}", flush=True)
            return found, None
        print(
            f"[{name}] --train.resume auto: no earlier run of this config in {storage}; starting afresh",
            flush=True,
        )
    return _fresh_name(name, key), None


def launch(
    worker_fn: WorkerFn,
    config: Any,
    scale: ScaleConfig,
    *,
    name: str,
    key: str,
    datasets: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    keep: int = 2,
    score: str | None = None,
    score_order: str = "min",
    resume_from: str | None = None,
    report_to_tune: bool = True,
) -> LaunchResult:
    """Run ``worker_fn(ctx, config)`` on ``scale.num_workers`` Ray Train workers; the latest checkpoint's state.

    ``key`` (:func:`~xlab.train.scale.run_key`) names the config, so ``--train.resume auto`` finds this
    run again; ``run_id``: the MLflow run rank 0 logs to; ``keep``/``score``: Ray's checkpoint retention
    (the latest is always kept); ``resume_from``: a checkpoint directory to start from;
    ``report_to_tune``: inside a Tune trial, forward the workers' reports to Tune as the trial's results
    (off for a trial that reports its own metric after training, e.g. success in simulation: Tune
    rejects a result without the sweep's metric).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    from xlab.track.store import resolve_tracking_uri
    from xlab.train.ray_failures import XlabTorchTrainer

    storage = storage_path(scale.storage)
    check_shared(storage)
    run_name, start_from = resolve_run(scale, storage, name, key, resume_from)
    callbacks = []
    if report_to_tune and in_tune_trial():
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    meta = {
        "name": name,
        "run_name": run_name,
        "storage": storage,
        "run_id": run_id,
        "tracking_uri": resolve_tracking_uri(tracking_uri) if run_id else None,
        "resume_from": start_from,
    }
    trainer = XlabTorchTrainer(
        _worker_main,
        train_loop_config={"fn": worker_fn, "config": config, "scale": scale, "meta": meta},
        scaling_config=ScalingConfig(
            num_workers=scale.num_workers,
            use_gpu=scale.use_gpu,
            resources_per_worker={"CPU": scale.cpus_per_worker},
            placement_strategy=scale.placement,
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=scale.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=keep, checkpoint_score_attribute=score, checkpoint_score_order=score_order
            ),
            callbacks=callbacks,
        ),
        datasets=dict(datasets or {}),
    )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        _failure_marker(storage, run_name).unlink(missing_ok=True)
    if result.checkpoint is None:
        raise XlabError(f"Ray Train run {run_name} ended without a checkpoint (in {storage})")
    return LaunchResult(
        state=load_state(result.checkpoint),
        metrics=dict(result.metrics or {}),
        checkpoint_path=result.checkpoint.path,
        run_name=run_name,
        storage=storage,
        seconds=time.perf_counter() - t0,
        best_checkpoints=list(result.best_checkpoints or []),
    )
