"""Train an RT-1-X policy on a weighted mixture of RLDS datasets with Ray Train (data-parallel DDP).

The driver builds the Ray Data mixture pipeline of tokenized windows (:func:`xlab.data.rlds.read_rlds_windows`)
and hands it to a ``TorchTrainer`` as ``datasets={"train": ...}``; each worker streams its shard
(``ray.train.get_dataset_shard`` + :func:`~xlab.data.rlds.iter_torch_window_batches`), trains the
policy wrapped by ``ray.train.torch.prepare_model`` (DDP; gloo on CPU, NCCL on GPU) for
``train.steps`` optimizer steps (looping over epochs), and every ``train.log_every`` steps reports
loss, token accuracy and token accuracy per dataset (averaged over all workers). Every
``train.checkpoint_every`` steps rank 0 checkpoints policy + optimizer + step through
``ray.train.report``; after a worker failure (``train.max_failures``) the worker group restarts from
the latest checkpoint and continues at its step (Ray Train registers a checkpoint when its controller
next polls the workers, every 2 s: a crash within that window falls back one checkpoint more). Rank 0 logs metrics to the job's MLflow run. At the
end the driver loads the final checkpoint, logs the policy as an MLflow model (policy, config, action
bounds and the datasets' ``dataset_statistics.json``) and registers it as
``registry.model_name@registry.alias`` (:mod:`xlab.policies.mlflow_model`).

    xlab run collect_demos --preset smoke            # first: writes data/rlds/xlab_{sawyer,fetch}/0.1.0
    xlab run train_policy --preset smoke             # rt1x-tiny, 48 px, 2 CPU workers, ~300 steps
    xlab run train_policy --preset paper             # rt1x-paper on GPU workers (see PRESETS)
    xlab run train_policy --train.steps 1000 --optim.name adopt --data.weights 1 3
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from xlab.config import JobConfig, check
from xlab.errors import XlabError
from xlab.optim import OptimConfig

CHECKPOINT_FILE = "policy_state.pt"


@dataclasses.dataclass
class DataConfig:
    dataset_dirs: tuple[str, ...] = ("data/rlds/xlab_sawyer/0.1.0", "data/rlds/xlab_fetch/0.1.0")
    """RLDS builder directories (what `xlab run collect_demos` writes); one dataset each."""
    weights: tuple[float, ...] = ()
    """Mixture weight of each dataset, in dataset_dirs order (empty: equal weights)."""
    window: int = 0
    """Frames per training window (0: the policy's history)."""
    image_size: int = 0
    """Square image size fed to the policy (0: the policy's image_size)."""
    embedding_backend: str | None = None
    """Instruction embedding backend for datasets without stored embeddings (None: the default)."""
    shuffle_buffer: int = 256
    """Rows in each worker's local shuffle buffer (0: no extra shuffle)."""

    def __post_init__(self) -> None:
        check(len(self.dataset_dirs) >= 1, "data.dataset_dirs", "name at least one RLDS dataset directory")
        check(not self.weights or len(self.weights) == len(self.dataset_dirs), "data.weights",
              f"give one weight per dataset dir ({len(self.dataset_dirs)}), got {len(self.weights)}")
        check(all(w >= 0 for w in self.weights) and (not self.weights or sum(self.weights) > 0), "data.weights",
              "weights must be >= 0 and not all zero")
        check(self.window >= 0, "data.window", f"must be >= 0, got {self.window}")
        check(self.image_size == 0 or 16 <= self.image_size <= 512, "data.image_size",
              f"must be 0 or in [16, 512], got {self.image_size}")


@dataclasses.dataclass
class PolicyConfig:
    preset: str = "rt1x-tiny"
    """Policy preset of xlab.policies.build_policy: rt1x-tiny, rt1x-small or rt1x-paper."""
    history: int = 0
    """Override of the preset's history (frames per window; 0: keep the preset's)."""
    image_size: int = 0
    """Override of the preset's image size (0: keep the preset's)."""
    dropout: float = -1.0
    """Override of the preset's dropout (-1: keep the preset's)."""

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.history:
            out["history"] = self.history
        if self.image_size:
            out["image_size"] = self.image_size
        if self.dropout >= 0:
            out["dropout"] = self.dropout
        return out


@dataclasses.dataclass
class TrainConfig:
    steps: int = 300
    """Optimizer steps in total (the loop runs over epochs of the mixture until it reaches them)."""
    batch_size: int = 16
    """Global batch size (split evenly over the workers)."""
    num_workers: int = 2
    """Ray Train workers (data-parallel, DDP)."""
    cpus_per_worker: float = 0.5
    """CPUs reserved per worker; leave some for the Ray Data read tasks."""
    threads_per_worker: int = 1
    """torch intra-op threads per worker (0: torch's default)."""
    use_gpu: bool = False
    parallel_strategy: str = "ddp"
    """ddp, or fsdp (FSDP1 through ray.train.torch.prepare_model; for large policies on GPUs)."""
    log_every: int = 10
    """Report (and log) metrics every this many steps."""
    checkpoint_every: int = 50
    """Checkpoint every this many steps (a restarted worker group loses at most this many)."""
    max_failures: int = 2
    """Worker-group restarts allowed after a worker or node failure (Ray Train FailureConfig)."""
    storage: str = ""
    """Where Ray Train keeps checkpoints (default: $XLAB_STORAGE_PATH or ./ray_results; shared on clusters)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    inject_failure_at: int = 0
    """Fault-tolerance check: the last rank exits abruptly at this step, once per run (0: never)."""

    def __post_init__(self) -> None:
        check(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")
        check(self.num_workers >= 1, "train.num_workers", f"must be >= 1, got {self.num_workers}")
        check(self.batch_size >= self.num_workers, "train.batch_size",
              f"must be >= train.num_workers ({self.num_workers}), got {self.batch_size}")
        check(self.log_every >= 1, "train.log_every", f"must be >= 1, got {self.log_every}")
        check(self.checkpoint_every >= 1, "train.checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        check(self.max_failures >= -1, "train.max_failures", "must be >= 0 (or -1: unlimited)")
        check(self.parallel_strategy in ("ddp", "fsdp"), "train.parallel_strategy",
              f"must be ddp or fsdp, got {self.parallel_strategy!r}")
        check(self.cpus_per_worker > 0, "train.cpus_per_worker", "must be > 0")


@dataclasses.dataclass
class RegistryConfig:
    model_name: str = "rt1x-policy"
    """Registered MLflow model name ('' skips logging the model)."""
    alias: str = "latest-train"
    """Alias set on the new version (serving loads models:/NAME@ALIAS)."""


@dataclasses.dataclass
class Config(JobConfig):
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    optim: OptimConfig = dataclasses.field(
        default_factory=lambda: OptimConfig(name="adam", lr=1e-4, eps=1e-7)  # RT-1-X's optimizer
    )
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    registry: RegistryConfig = dataclasses.field(default_factory=RegistryConfig)


PRESETS = {
    # Minutes on 2 cores: tiny policy, 48 px frames, 2 CPU workers sharing the machine with Ray Data.
    "smoke": Config(
        policy=PolicyConfig(preset="rt1x-tiny", image_size=48),
        optim=OptimConfig(name="adamw", lr=1e-3, eps=1e-7, weight_decay=0.01),
        train=TrainConfig(steps=300, batch_size=16, num_workers=2, cpus_per_worker=0.5, log_every=10,
                          checkpoint_every=100),
    ),
    # RT-1-X as published: 15-frame history, 300 px, Adam 1e-4 (eps 1e-7), large global batch on GPU
    # workers (global batch 1024 and 1M+ steps in the paper: scale steps/batch to the cluster). For
    # policies that do not fit one GPU use --train.parallel_strategy fsdp.
    "paper": Config(
        policy=PolicyConfig(preset="rt1x-paper"),
        optim=OptimConfig(name="adam", lr=1e-4, eps=1e-7),
        train=TrainConfig(steps=100_000, batch_size=256, num_workers=8, cpus_per_worker=4, threads_per_worker=0,
                          use_gpu=True, log_every=100, checkpoint_every=2000, max_failures=5),
    ),
}
KEY_METRICS = ["train/loss", "train/token_acc", "final_step"]


# --------------------------------------------------------------------------------------------- data

def dataset_names(dirs: tuple[str, ...] | list[str]) -> list[str]:
    """A unique name per dataset directory (the builder name, e.g. ``xlab_sawyer`` for ``.../xlab_sawyer/0.1.0``)."""
    names = []
    for d in dirs:
        p = Path(d)
        name = p.parent.name if p.name[:1].isdigit() else p.name
        while name in names:
            name += "_"
        names.append(name)
    return names


def check_dataset_dirs(dirs: tuple[str, ...] | list[str]) -> list[Path]:
    """Absolute dataset dirs; a missing one is an XlabError naming ``data.dataset_dirs``."""
    out = []
    for d in dirs:
        p = Path(d).expanduser().resolve()
        if not (p / "dataset_info.json").exists():
            raise XlabError(
                f"bad config value for data.dataset_dirs: no RLDS dataset at {p} (dataset_info.json missing); "
                "run `xlab run collect_demos --preset smoke` first, or point --data.dataset_dirs at RLDS builder dirs"
            )
        out.append(p)
    return out


def build_dataset(cfg: Config, window: int, image_size: int) -> tuple[Any, list[str], list[Path]]:
    """The Ray Data mixture of tokenized windows; returns (dataset, dataset names, dataset dirs)."""
    from xlab.data.rlds import read_rlds_windows

    dirs = check_dataset_dirs(cfg.data.dataset_dirs)
    names = dataset_names(cfg.data.dataset_dirs)
    weights = cfg.data.weights or (1.0,) * len(dirs)
    ds = read_rlds_windows(
        {n: str(d) for n, d in zip(names, dirs, strict=True)},
        mixture=list(zip(names, weights, strict=True)),
        window=window, image_size=(image_size, image_size), seed=cfg.seed,
        embedding_backend=cfg.data.embedding_backend,
    )
    return ds, names, dirs


# ------------------------------------------------------------------------------------------- worker

def _loss_module(policy: Any) -> Any:
    """``policy.loss`` as a module's forward, so DDP's forward hook runs (gradients get all-reduced)."""
    import torch

    class PolicyLoss(torch.nn.Module):
        def __init__(self, policy: torch.nn.Module) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            return self.policy.loss(batch)

    return PolicyLoss(policy)


def _failure_marker(run_name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"xlab-train-policy-{run_name}.failed-once"


def train_worker(config: dict[str, Any]) -> None:
    """Body of every Ray Train worker (see module docstring)."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from xlab.data.rlds import iter_torch_window_batches
    from xlab.optim import build_optimizer
    from xlab.policies import build_policy
    from xlab.track import Tracker

    tc: TrainConfig = config["train"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if tc.threads_per_worker:
        torch.set_num_threads(tc.threads_per_worker)
    _quiet_reports()
    torch.manual_seed(config["seed"])  # same init on every rank (DDP also broadcasts rank 0's weights)
    policy = build_policy(config["policy_preset"], **config["policy_overrides"])
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(_loss_module(policy), parallel_strategy=tc.parallel_strategy)
    optimizer = build_optimizer(config["optim"], model.parameters())

    step, resumed_from, restarts = 0, [], 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device, weights_only=False)
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        step, resumed_from = int(state["step"]), list(state.get("resumed_from", [])) + [int(state["step"])]
        restarts = int(state.get("restarts", 0)) + 1
    tracker = None
    if config["run_id"]:
        import mlflow

        mlflow.set_tracking_uri(config["tracking_uri"])
        tracker = Tracker(config["run_id"], enabled=rank == 0)
        if ckpt is not None and rank == 0:
            tracker.log_metrics({"train/resumed_from_step": step}, step)
            print(f"[train_policy] worker group restarted: resuming at step {step}", flush=True)

    names: list[str] = config["dataset_names"]
    n_ds = len(names)
    per_worker = tc.batch_size // world
    shard = ray.train.get_dataset_shard("train")
    # Interval accumulators: loss sum, samples, token-acc sum; per dataset: acc sum, samples.
    acc = torch.zeros(3 + 2 * n_ds, dtype=torch.float64)
    samples_seen, t_start, t_steady, steady_step = 0, time.perf_counter(), None, None
    epoch = 0
    model.train()
    while step < tc.steps:
        batches = 0
        for batch in iter_torch_window_batches(
            shard, batch_size=per_worker, drop_last=True,
            local_shuffle_buffer_size=config["shuffle_buffer"] or None,
            local_shuffle_seed=config["seed"] * 1000 + epoch * 10 + rank if config["shuffle_buffer"] else None,
        ):
            batches += 1
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, metrics = model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            step += 1
            n = batch["window_tokens"].shape[0]
            samples_seen += n
            per_sample = metrics["token_acc_per_sample"].detach().double().cpu()
            ids = batch["dataset_id"].long().cpu()
            acc[0] += float(loss.detach()) * n
            acc[1] += n
            acc[2] += float(per_sample.sum())
            acc[3:3 + n_ds] += torch.bincount(ids, weights=per_sample, minlength=n_ds)[:n_ds]
            acc[3 + n_ds:] += torch.bincount(ids, minlength=n_ds)[:n_ds].double()
            if t_steady is None and step - (resumed_from[-1] if resumed_from else 0) >= config["warmup_steps"]:
                t_steady, steady_step, samples_at_steady = time.perf_counter(), step, samples_seen

            if tc.inject_failure_at and step == tc.inject_failure_at and rank == world - 1:
                marker = _failure_marker(config["run_name"])
                if not marker.exists():
                    marker.touch()
                    # Ray Train's controller collects reported checkpoints when it polls the workers
                    # (every $RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s): a crash sooner after a report
                    # loses that checkpoint too. Wait two polls, like a crash well after the checkpoint.
                    time.sleep(2 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0)) + 1)
                    print(f"[train_policy] rank {rank}: injected failure at step {step}", flush=True)
                    os._exit(1)

            if step % tc.log_every == 0 or step == tc.steps or step % tc.checkpoint_every == 0:
                total = acc.clone()
                if dist.is_available() and dist.is_initialized():
                    dist.all_reduce(total)  # metrics over the global batch, not rank 0's share
                acc.zero_()
                row = {"train/loss": total[0].item() / max(total[1].item(), 1),
                       "train/token_acc": total[2].item() / max(total[1].item(), 1),
                       "train/epoch": float(epoch)}
                for i, name in enumerate(names):
                    if total[3 + n_ds + i] > 0:
                        row[f"train/token_acc/{name}"] = total[3 + i].item() / total[3 + n_ds + i].item()
                if t_steady is not None and step > steady_step:
                    row["train/samples_per_s"] = (samples_seen - samples_at_steady) * world / (
                        time.perf_counter() - t_steady)
                if tracker is not None:
                    tracker.log_metrics(row, step)
                if rank == 0 and (step % (tc.log_every * 5) == 0 or step == tc.steps):
                    shown = "  ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in row.items())
                    print(f"[train_policy] step {step}/{tc.steps}  {shown}", flush=True)
            # ray.train.report is a barrier through Ray Train's controller and cost ~1 s per call here
            # (10x the step time of a small policy), so metrics go to MLflow directly above and Ray Train
            # only hears about checkpoints (with the metrics of that step).
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                report = {k.replace("/", "_"): v for k, v in row.items()} | {"step": step, "restarts": restarts}
                with tempfile.TemporaryDirectory() as d:
                    if rank == 0:
                        state = {
                            "policy": policy.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                            "resumed_from": resumed_from, "restarts": restarts,
                            "policy_preset": config["policy_preset"],
                            "policy_overrides": config["policy_overrides"],
                            "seconds": time.perf_counter() - t_start,
                        }
                        torch.save(state, Path(d) / CHECKPOINT_FILE)
                        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(d))
                    else:
                        ray.train.report(report, checkpoint=None)
            if step >= tc.steps:
                break
        if batches == 0:
            raise RuntimeError(
                f"rank {rank}: an epoch of the training data gave no batch of {per_worker}; "
                "the datasets are too small for train.batch_size / train.num_workers"
            )
        epoch += 1


def _quiet_reports() -> None:
    """Ray Train logs each report call at INFO from every rank; our progress lines say enough."""
    import logging

    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass


# ------------------------------------------------------------------------------------------- driver

def fit_policy(
    cfg: Config,
    ds: Any,
    dataset_names_: list[str],
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    warmup_steps: int = 5,
) -> dict[str, Any]:
    """Run the ``TorchTrainer`` on dataset ``ds``; returns the final checkpoint state and the last metrics."""
    import torch
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from xlab.tune.sweep import storage_path

    tc = cfg.train
    run_name = f"train_policy-{uuid.uuid4().hex[:8]}"  # a reused (storage, name) would resume an old run
    storage = str(Path(tc.storage).resolve()) if tc.storage and "://" not in tc.storage else (tc.storage or storage_path())
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "train": tc, "optim": cfg.optim, "seed": cfg.seed,
            "policy_preset": cfg.policy.preset, "policy_overrides": cfg.policy.overrides(),
            "dataset_names": dataset_names_, "shuffle_buffer": cfg.data.shuffle_buffer,
            "run_id": run_id, "tracking_uri": tracking_uri, "run_name": run_name, "warmup_steps": warmup_steps,
        },
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                     resources_per_worker={"CPU": tc.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name, storage_path=storage,
            failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={"train": ds},
    )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        _failure_marker(run_name).unlink(missing_ok=True)
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    return {"state": state, "metrics": dict(result.metrics or {}), "seconds": time.perf_counter() - t0,
            "checkpoint_path": result.checkpoint.path, "storage": storage, "run_name": run_name}


def main(cfg: Config) -> dict:
    from xlab.session import job_session
    from xlab.track import Tracker
    from xlab.track.store import resolve_tracking_uri

    check_dataset_dirs(cfg.data.dataset_dirs)  # before Ray starts: a one-line error
    from xlab.policies import build_policy

    with job_session("train_policy", cfg) as run:
        tracker = Tracker()
        policy = build_policy(cfg.policy.preset, **cfg.policy.overrides())
        pcfg = policy.config
        window = cfg.data.window or int(pcfg.history)
        image_size = cfg.data.image_size or int(pcfg.image_size)
        check(window == int(pcfg.history), "data.window",
              f"must equal the policy history ({pcfg.history}); set --policy.history instead")
        n_params = sum(p.numel() for p in policy.parameters())
        tracker.log_params({"policy.parameters": n_params, "policy.resolved_config": json.dumps(
            dataclasses.asdict(pcfg) if dataclasses.is_dataclass(pcfg) else str(pcfg), default=str)[:6000]})
        print(f"[train_policy] {cfg.policy.preset}: {n_params / 1e6:.2f}M parameters, window {window}, "
              f"{image_size}px, {cfg.train.num_workers} workers x batch {cfg.train.batch_size // cfg.train.num_workers}")
        ds, names, dirs = build_dataset(cfg, window, image_size)
        out = fit_policy(cfg, ds, names, run_id=run.info.run_id, tracking_uri=resolve_tracking_uri(cfg.tracking.uri))
        state, metrics = out["state"], out["metrics"]
        policy.load_state_dict(state["policy"])
        summary = {
            "final_step": int(state["step"]), "restarts": int(state.get("restarts", 0)),
            "resumed_from": list(state.get("resumed_from", [])), "seconds": out["seconds"],
            "train/loss": metrics.get("train_loss"), "train/token_acc": metrics.get("train_token_acc"),
            "checkpoint": out["checkpoint_path"],
        }
        tracker.log_metrics({"final_step": summary["final_step"], "restarts": summary["restarts"],
                             "train_seconds": out["seconds"]})
        model_uri = None
        if cfg.registry.model_name:
            from xlab.policies.mlflow_model import log_policy

            stats = {n: d / "dataset_statistics.json" for n, d in zip(names, dirs, strict=True)}
            model_uri = log_policy(policy, name="policy", registered_model_name=cfg.registry.model_name,
                                   alias=cfg.registry.alias, stats_paths=stats, run_id=run.info.run_id)
        summary["model_uri"] = model_uri
        tracker.log_dict({k: v for k, v in summary.items()}, "train_summary.json")
        print(f"[train_policy] done: step {summary['final_step']}/{cfg.train.steps} in {out['seconds']:.0f}s "
              f"(restarts {summary['restarts']}), loss {summary['train/loss']}, token_acc {summary['train/token_acc']}")
        print(f"[train_policy] checkpoint: {out['checkpoint_path']}")
        if model_uri:
            print(f"[train_policy] registered policy: {model_uri}  "
                  f"(load: xlab.policies.mlflow_model.load_registered_policy({model_uri!r}))")
        return {**summary, "run_id": run.info.run_id, "metrics": metrics}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("train_policy")
