"""Training RT-1-X policies with Ray Train: configs, the RLDS mixture, the worker loop and the driver.

The library half of ``jobs/train_policy.py`` (and of ``jobs/cross_embodiment.py``, which trains one
policy per mixture weight). :func:`build_dataset` makes the Ray Data mixture of tokenized windows
(:func:`xlab.data.rlds.read_rlds_windows`); :func:`fit_policy` hands it to a ``TorchTrainer`` as
``datasets={"train": ...}``. Each worker (:func:`train_worker`) streams its shard
(``ray.train.get_dataset_shard`` + :func:`~xlab.data.rlds.iter_torch_window_batches`), trains the
policy wrapped by ``ray.train.torch.prepare_model`` (DDP; gloo on CPU, NCCL on GPU) for
``train.steps`` optimizer steps (looping over epochs), and every ``train.log_every`` steps logs
loss, token accuracy and token accuracy per dataset (averaged over all workers) to MLflow from rank 0.
Every ``train.checkpoint_every`` steps rank 0 checkpoints policy + optimizer + step through
``ray.train.report``; after a worker failure (``train.max_failures``) the worker group restarts from
the latest checkpoint and continues at its step (Ray Train registers a checkpoint when its controller
next polls the workers, every 2 s: a crash within that window falls back one checkpoint more).

    from xlab.policies.training import PolicyTrainConfig, build_dataset, fit_policy
    ds, names, dirs = build_dataset(cfg.data, policy.config, seed=cfg.seed)
    out = fit_policy(cfg, ds, names, run_id=run_id, tracking_uri=uri)
    out["state"]["policy"]   # final state dict (and out["state"]["best_sim"] with train.eval_every)
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from xlab.config import check, check_max_failures
from xlab.data.rlds.complete import check_complete
from xlab.data.rlds.schema import RLDSError
from xlab.errors import NonFiniteLossError, XlabError

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
    """Square image size fed to the policy (0, or the policy's image_size: set --policy.image_size)."""
    embedding_backend: str | None = None
    """Instruction embedding backend for datasets without stored embeddings (None: the default)."""
    shuffle_buffer: int = 256
    """Rows in each worker's local shuffle buffer (0: no extra shuffle)."""
    drop_last: bool = True
    """Drop the window ending on each episode's last step (its action is not valid in RLDS; RT-1-X's notebook)."""
    cache: bool = False
    """Decode the windows once and keep them in Ray's object store for every epoch, instead of reading the
    RLDS files again each epoch. For mixtures that fit in memory (the demo's ~8k windows at 64 px take
    ~200 MB): decoding costs ~2.5 ms of CPU per window, about as much as a training step of rt1x-demo."""

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
    action_chunk: int = 0
    """Override of the preset's action chunk: predict the next k actions per frame (0: keep the preset's)."""
    state_dim: int = -1
    """Override of the preset's proprio input size (0: none, as RT-1; -1: keep the preset's)."""
    image_pos_embedding: str = ""
    """Override of the preset's feature-map position embedding: on, off ('': keep the preset's)."""

    def __post_init__(self) -> None:
        check(self.action_chunk >= 0, "policy.action_chunk", f"must be >= 0, got {self.action_chunk}")
        check(self.state_dim >= -1, "policy.state_dim", f"must be >= -1, got {self.state_dim}")
        check(self.image_pos_embedding in ("", "on", "off"), "policy.image_pos_embedding",
              f"must be on, off or '' (the preset's), got {self.image_pos_embedding!r}")

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.history:
            out["history"] = self.history
        if self.image_size:
            out["image_size"] = self.image_size
        if self.dropout >= 0:
            out["dropout"] = self.dropout
        if self.action_chunk:
            out["action_chunk"] = self.action_chunk
        if self.state_dim >= 0:
            out["state_dim"] = self.state_dim
        if self.image_pos_embedding:
            out["image_pos_embedding"] = self.image_pos_embedding == "on"
        return out


@dataclasses.dataclass
class PolicyTrainConfig:
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
    lr_schedule: str = "constant"
    """constant, or cosine (decay to 0 at train.steps); both after train.warmup_steps of linear warm-up."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps."""
    augment_shift: int = 0
    """Random-shift augmentation: pad each window's frames by this many pixels and crop back at a random
    offset (DrQ; RT-1 pads and randomly crops). 0: off."""
    eval_every: int = 0
    """Evaluate the policy in simulation every this many steps (0: never), in Ray tasks outside the workers'
    resources; success is logged as sim/success curves and the best policy is registered as @best-sim."""
    eval_tasks: tuple[str, ...] = ()
    """Env ids evaluated during training (the tasks of the training data)."""
    eval_episodes: int = 5
    """Episodes per task in each evaluation during training."""
    eval_execution: str = "ensemble"
    """How action chunks are executed in those evaluations: ensemble, open-loop or first."""
    eval_cpus: float = 1.0
    """CPUs each evaluation task reserves (below 1 on a laptop, where the workers and Ray Data hold the rest)."""
    inject_failure_at: int = 0
    """Fault-tolerance check: the last rank exits abruptly at this step, once per run (0: never)."""

    def __post_init__(self) -> None:
        check(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")
        check(self.num_workers >= 1, "train.num_workers", f"must be >= 1, got {self.num_workers}")
        check(self.batch_size >= self.num_workers, "train.batch_size",
              f"must be >= train.num_workers ({self.num_workers}), got {self.batch_size}")
        check(self.log_every >= 1, "train.log_every", f"must be >= 1, got {self.log_every}")
        check(self.checkpoint_every >= 1, "train.checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        check_max_failures(self.max_failures)
        check(self.parallel_strategy in ("ddp", "fsdp"), "train.parallel_strategy",
              f"must be ddp or fsdp, got {self.parallel_strategy!r}")
        check(self.cpus_per_worker > 0, "train.cpus_per_worker", "must be > 0")
        check(self.lr_schedule in ("constant", "cosine"), "train.lr_schedule",
              f"must be constant or cosine, got {self.lr_schedule!r}")
        check(self.warmup_steps >= 0 and self.augment_shift >= 0 and self.eval_every >= 0, "train",
              "warmup_steps, augment_shift and eval_every must be >= 0")
        check(not self.eval_every or self.eval_tasks, "train.eval_tasks",
              "name the env ids to evaluate when train.eval_every > 0")
        check(self.eval_episodes >= 1, "train.eval_episodes", f"must be >= 1, got {self.eval_episodes}")
        check(self.eval_cpus > 0, "train.eval_cpus", f"must be > 0, got {self.eval_cpus}")
        check(self.eval_execution in ("ensemble", "open-loop", "first"), "train.eval_execution",
              f"must be ensemble, open-loop or first, got {self.eval_execution!r}")


@dataclasses.dataclass
class RegistryConfig:
    model_name: str = "rt1x-policy"
    """Registered MLflow model name ('' skips logging the model)."""
    alias: str = "latest-train"
    """Alias set on the new version (serving loads models:/NAME@ALIAS)."""
    best_alias: str = "best-sim"
    """Alias of the version with the best success in simulation during training (train.eval_every > 0)."""


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
        try:
            check_complete(p)
        except RLDSError as e:
            raise XlabError(f"bad config value for data.dataset_dirs: {e}") from None
        out.append(p)
    return out


def build_dataset(data: DataConfig, policy: Any, seed: int = 0) -> tuple[Any, list[str], list[Path]]:
    """The Ray Data mixture of windows tokenized for ``policy`` (an :class:`~xlab.policies.RT1Config`);
    returns (dataset, dataset names, dataset dirs).

    Windows of ``history`` frames at ``image_size`` px with ``action_chunk`` action steps each, tokens
    with the policy's bounds and vocabulary (labels and decoding share one tokenizer), and the ``state``
    column when ``state_dim > 0``. Datasets whose mixture weight is 0 are left out (a single-embodiment
    run of the cross-embodiment experiment).
    """
    import ray

    from xlab.data.rlds import read_rlds_windows
    from xlab.policies.encoder import encoder_record
    from xlab.policies.rt1 import BOUNDS

    # Ray Data's progress bars redraw per tick in every worker's output; training logs its own progress.
    ray.data.DataContext.get_current().enable_progress_bars = False

    dirs = check_dataset_dirs(data.dataset_dirs)
    names = dataset_names(data.dataset_dirs)
    weights = data.weights or (1.0,) * len(dirs)
    kept = [i for i, w in enumerate(weights) if w > 0]
    names, dirs, weights = [names[i] for i in kept], [dirs[i] for i in kept], [weights[i] for i in kept]
    ds = read_rlds_windows(
        {n: str(d) for n, d in zip(names, dirs, strict=True)},
        mixture=list(zip(names, weights, strict=True)),
        window=int(policy.history), image_size=(int(policy.image_size), int(policy.image_size)), seed=seed,
        bounds=BOUNDS[policy.bounds], vocab_size=int(policy.vocab_size),
        embedding_backend=encoder_record(data.embedding_backend)["name"],  # one encoder for the whole mixture
        chunk=int(policy.action_chunk), drop_last=data.drop_last, state_dim=int(policy.state_dim),
    )
    if data.cache:
        ds = ds.materialize()  # every epoch reads the same draw of the mixture, so nothing changes but speed
    return ds, names, dirs


# ------------------------------------------------------------------------------------------- worker

def lr_factor(tc: PolicyTrainConfig) -> Any:
    """The learning-rate multiplier per step: linear warm-up, then constant or cosine decay to 0."""
    import math

    def factor(step: int) -> float:
        if step < tc.warmup_steps:
            return (step + 1) / tc.warmup_steps
        if tc.lr_schedule == "cosine":
            progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


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
    from xlab.data.rlds.windows import STATE_COLUMNS, TENSOR_COLUMNS
    from xlab.optim import build_optimizer
    from xlab.policies import build_policy
    from xlab.policies.augment import random_shift
    from xlab.track import Tracker

    tc: PolicyTrainConfig = config["train"]
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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(tc))
    sim_eval = None
    if rank == 0 and tc.eval_every:
        from xlab.policies.sim_eval import SimEvaluator

        sim_eval = SimEvaluator(tc.eval_tasks, tc.eval_episodes, tc.eval_execution, policy.config.to_dict(),
                                config["seed"], tc.eval_cpus, encoder=config.get("instruction_encoder"))
    shift_rng = torch.Generator().manual_seed(config["seed"] * 7919 + rank)

    step, resumed_from, restarts = 0, [], 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device, weights_only=True)
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        step, resumed_from = int(state["step"]), list(state.get("resumed_from", [])) + [int(state["step"])]
        restarts = int(state.get("restarts", 0)) + 1
        scheduler.last_epoch = step  # the schedule continues where the checkpoint was taken
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * lr_factor(tc)(step)
        if sim_eval is not None:
            sim_eval.restore(state.get("best_sim"))
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
    columns = STATE_COLUMNS if policy.config.state_dim else TENSOR_COLUMNS
    # Interval accumulators: loss sum, samples, token-acc sum; per dataset: acc sum, samples.
    acc = torch.zeros(3 + 2 * n_ds, dtype=torch.float64)
    token_acc, token_acc_batches = torch.zeros(11, dtype=torch.float64), 0
    samples_seen, t_start, t_steady, steady_step = 0, time.perf_counter(), None, None
    epoch = 0
    model.train()
    while step < tc.steps:
        batches = 0
        for batch in iter_torch_window_batches(
            shard, batch_size=per_worker, drop_last=True, columns=columns,
            local_shuffle_buffer_size=config["shuffle_buffer"] or None,
            local_shuffle_seed=config["seed"] * 1000 + epoch * 10 + rank if config["shuffle_buffer"] else None,
        ):
            batches += 1
            if tc.augment_shift:
                batch["image"] = random_shift(batch["image"], tc.augment_shift, shift_rng)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, metrics = model(batch)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"rank {rank}: the training loss is {loss.item()} at step {step + 1}; "
                                         "lower optim.lr or raise train.grad_clip (no policy is registered)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            token_acc += metrics["token_acc_per_token"].detach().double().cpu()
            token_acc_batches += 1
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
                       "train/epoch": float(epoch), "train/lr": optimizer.param_groups[0]["lr"]}
                if token_acc_batches:  # rank 0's share: the varying tokens, not the 8 constant ones
                    per_token = token_acc / token_acc_batches
                    row["train/token_acc/world_vector"] = per_token[1:4].mean().item()
                    row["train/token_acc/gripper"] = per_token[7].item()
                    token_acc.zero_()
                    token_acc_batches = 0
                for i, name in enumerate(names):
                    if total[3 + n_ds + i] > 0:
                        row[f"train/token_acc/{name}"] = total[3 + i].item() / total[3 + n_ds + i].item()
                if t_steady is not None and step > steady_step:
                    row["train/samples_per_s"] = (samples_seen - samples_at_steady) * world / (
                        time.perf_counter() - t_steady)
                if tracker is not None:
                    tracker.log_metrics(row, step)
                if rank == 0 and (step % (tc.log_every * 5) == 0 or step == tc.steps):
                    shown = "  ".join(f"{k.split('/', 1)[1]} {v:.3g}" for k, v in row.items()
                                      if k in ("train/loss", "train/token_acc", "train/token_acc/world_vector"))
                    print(f"[train_policy] step {step}/{tc.steps}  {shown}", flush=True)
            if sim_eval is not None:
                if step % tc.eval_every == 0 or step == tc.steps:
                    sim_eval.submit(step, policy)
                for done_step, success in sim_eval.poll(wait=step == tc.steps):
                    if tracker is not None:
                        tracker.log_metrics(success, done_step)
                    per_task = "  ".join(f"{k.split('/')[-1]} {v:.2f}" for k, v in success.items()
                                         if k.startswith("sim/success/"))
                    print(f"[train_policy] step {done_step}: success in simulation {success['sim/success']:.2f} "
                          f"({per_task})", flush=True)
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
                        if sim_eval is not None:
                            state["best_sim"] = sim_eval.best
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
    cfg: Any,
    ds: Any,
    dataset_names_: list[str],
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    warmup_steps: int = 5,
) -> dict[str, Any]:
    """Run the ``TorchTrainer`` on dataset ``ds``; returns the final checkpoint state and the last metrics.

    ``cfg`` is a job config with ``data``, ``policy`` (:class:`PolicyConfig`), ``optim``, ``train``
    (:class:`PolicyTrainConfig`) and ``seed``.
    """
    import torch
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    from xlab.policies.encoder import encoder_record
    from xlab.train.ray_failures import XlabTorchTrainer as TorchTrainer
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
            "instruction_encoder": encoder_record(cfg.data.embedding_backend)["name"],
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
        state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    return {"state": state, "metrics": dict(result.metrics or {}), "seconds": time.perf_counter() - t0,
            "checkpoint_path": result.checkpoint.path, "storage": storage, "run_name": run_name}
