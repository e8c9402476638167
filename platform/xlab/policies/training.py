"""Training RT-1-X policies with Ray Train: configs, the RLDS mixture, the worker loop and the driver.

The library half of ``jobs/train_policy.py`` (and of ``jobs/cross_embodiment.py``, which trains one
policy per mixture weight). :func:`build_dataset` makes the Ray Data mixture of tokenized windows
(:func:`xlab.rlds.read_rlds_windows`); :func:`fit_policy` hands it to the Ray Train harness
(:func:`xlab.train.distributed.launch`) as ``datasets={"train": ...}``. Each worker
(:func:`train_worker`) streams its shard (``ray.train.get_dataset_shard`` +
:func:`~xlab.rlds.iter_torch_window_batches`), trains the policy wrapped for DDP (gloo on CPU,
NCCL on GPU) or FSDP for ``train.steps`` optimizer steps (looping over epochs), and every
``train.log_every`` steps logs loss, token accuracy and token accuracy per dataset (averaged over all
workers) to MLflow from rank 0. Every ``train.checkpoint_every`` steps the harness checkpoints policy,
optimizer, step and data position (epoch, batches of it trained on); after a worker or node failure
(``train.max_failures``) the worker group restarts from the latest checkpoint and continues at its
step and data position (Ray Train registers a checkpoint when its controller next polls the workers,
every 2 s: a crash within that window falls back one checkpoint more); ``--train.resume auto``
continues after the driver died.

    from xlab.policies.training import PolicyTrainConfig, build_dataset, fit_policy
    ds, names, dirs = build_dataset(cfg.data, policy.config, seed=cfg.seed)
    out = fit_policy(cfg, ds, names, run_id=run_id, tracking_uri=uri)
    out["state"]["policy"]   # final state dict (and out["state"]["best_sim"] with train.eval_every)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlab.config import JobConfig, check
from xlab.errors import XlabError
from xlab.optim import OptimConfig
from xlab.rlds.complete import check_complete
from xlab.rlds.schema import RLDSError
from xlab.train.distributed import CHECKPOINT_FILE, WorkerContext, launch
from xlab.train.scale import ScaleConfig, run_key

if TYPE_CHECKING:
    from xlab.policies.rt1 import RT1Config

__all__ = ["CHECKPOINT_FILE", "DataConfig", "PolicyConfig", "PolicyJobConfig", "PolicyTrainConfig", "RegistryConfig",
           "build_dataset", "check_dataset_dirs", "dataset_names", "fit_policy", "lr_factor", "train_worker"]

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
class PolicyTrainConfig(ScaleConfig):
    """Steps, batch, schedule and evaluation of policy training; workers, checkpoints and resume from
    :class:`~xlab.train.scale.ScaleConfig` (other defaults below)."""

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
    log_every: int = 10
    """Report (and log) metrics every this many steps."""
    checkpoint_every: int = 50
    """Checkpoint every this many steps (a restarted worker group loses at most this many)."""
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

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")
        check(self.batch_size >= self.num_workers, "train.batch_size",
              f"must be >= train.num_workers ({self.num_workers}), got {self.batch_size}")
        check(self.log_every >= 1, "train.log_every", f"must be >= 1, got {self.log_every}")
        check(self.checkpoint_every >= 1, "train.checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        check(self.lr_schedule in ("constant", "cosine"), "train.lr_schedule",
              f"must be constant or cosine, got {self.lr_schedule!r}")
        check(self.warmup_steps >= 0 and self.augment_shift >= 0 and self.eval_every >= 0, "train",
              "warmup_steps, augment_shift and eval_every must be >= 0")
        check(not self.eval_every or self.eval_tasks, "train.eval_tasks",
              "name the env ids to evaluate when train.eval_every > 0")
        check(not (self.eval_every and self.parallel_strategy == "fsdp"), "train.eval_every",
              "evaluation during training copies rank 0's weights, which FSDP shards: use ddp, or evaluate after "
              "training (xlab run eval_policy)")
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


@dataclasses.dataclass
class PolicyJobConfig(JobConfig):
    """The sections every policy-training job has (train_policy, cross_embodiment, policy_ablation add theirs):
    what :func:`fit_policy` and :func:`xlab.policies.experiment.train_and_evaluate` read."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    optim: OptimConfig = dataclasses.field(
        default_factory=lambda: OptimConfig(name="adam", lr=1e-4, eps=1e-7)  # RT-1-X's optimizer
    )
    train: PolicyTrainConfig = dataclasses.field(default_factory=PolicyTrainConfig)


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


def build_dataset(data: DataConfig, policy: RT1Config, seed: int = 0) -> tuple[Any, list[str], list[Path]]:
    """The Ray Data mixture of windows tokenized for ``policy`` (an :class:`~xlab.policies.RT1Config`);
    returns (dataset, dataset names, dataset dirs).

    Windows of ``history`` frames at ``image_size`` px with ``action_chunk`` action steps each, tokens
    with the policy's bounds and vocabulary (labels and decoding share one tokenizer), and the ``state``
    column when ``state_dim > 0``. Datasets whose mixture weight is 0 are left out (a single-embodiment
    run of the cross-embodiment experiment).
    """
    import ray

    from xlab.policies.encoder import encoder_record
    from xlab.policies.rt1 import BOUNDS
    from xlab.rlds import WindowOptions, read_rlds_windows

    # Ray Data's progress bars redraw per tick in every worker's output; training logs its own progress.
    ray.data.DataContext.get_current().enable_progress_bars = False

    dirs = check_dataset_dirs(data.dataset_dirs)
    names = dataset_names(data.dataset_dirs)
    weights = data.weights or (1.0,) * len(dirs)
    kept = [i for i, w in enumerate(weights) if w > 0]
    names, dirs, weights = [names[i] for i in kept], [dirs[i] for i in kept], [weights[i] for i in kept]
    options = WindowOptions(
        window=int(policy.history), image_size=(int(policy.image_size), int(policy.image_size)), seed=seed,
        bounds=BOUNDS[policy.bounds], vocab_size=int(policy.vocab_size),
        embedding_backend=encoder_record(data.embedding_backend)["name"],  # one encoder for the whole mixture
        chunk=int(policy.action_chunk), drop_last=data.drop_last, state_dim=int(policy.state_dim),
    )
    ds = read_rlds_windows({n: str(d) for n, d in zip(names, dirs, strict=True)}, options,
                           mixture=list(zip(names, weights, strict=True)))
    if data.cache:
        ds = ds.materialize()  # every epoch reads the same draw of the mixture, so nothing changes but speed
    return ds, names, dirs


# ------------------------------------------------------------------------------------------- worker

def lr_factor(tc: PolicyTrainConfig) -> Callable[[int], float]:
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


def train_worker(ctx: WorkerContext, config: dict[str, Any]) -> None:
    """Body of every Ray Train worker (see module docstring); the harness gives rank, device, checkpoints."""
    import ray.train
    import torch

    from xlab.optim import build_optimizer
    from xlab.policies import build_policy
    from xlab.policies.augment import random_shift
    from xlab.rlds import iter_torch_window_batches
    from xlab.rlds.windows import STATE_COLUMNS, TENSOR_COLUMNS

    tc: PolicyTrainConfig = config["train"]
    rank, world, device = ctx.rank, ctx.world_size, ctx.device
    torch.manual_seed(config["seed"])  # same init on every rank (DDP also broadcasts rank 0's weights)
    policy = build_policy(config["policy_preset"], **config["policy_overrides"])
    state = ctx.restored
    if state is not None:  # full (unsharded) weights: loaded before wrapping, DDP or FSDP
        policy.load_state_dict(state["policy"])
    model = ctx.wrap(_loss_module(policy))
    optimizer = build_optimizer(config["optim"], model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(tc))
    sim_eval = None
    if rank == 0 and tc.eval_every:
        from xlab.policies.sim_eval import SimEvaluator

        sim_eval = SimEvaluator(tc.eval_tasks, tc.eval_episodes, tc.eval_execution, policy.config.to_dict(),
                                config["seed"], tc.eval_cpus, encoder=config.get("instruction_encoder"))
    shift_rng = torch.Generator().manual_seed(config["seed"] * 7919 + rank)

    # Where the data stood at the checkpoint: the epoch and the batches of it already trained on.
    step, epoch, skip = ctx.start_step, 0, 0
    if state is not None:
        ctx.load_optimizer(model, optimizer, state["optimizer"])
        epoch, skip = int(state.get("epoch", 0)), int(state.get("epoch_batches", 0))
        scheduler.last_epoch = step  # the schedule continues where the checkpoint was taken
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * lr_factor(tc)(step)
        if sim_eval is not None:
            sim_eval.restore(state.get("best_sim"))

    names: list[str] = config["dataset_names"]
    n_ds = len(names)
    per_worker = tc.batch_size // world
    shard = ray.train.get_dataset_shard("train")
    columns = STATE_COLUMNS if policy.config.state_dim else TENSOR_COLUMNS
    # Interval accumulators: loss sum, samples, token-acc sum; per dataset: acc sum, samples.
    acc = torch.zeros(3 + 2 * n_ds, dtype=torch.float64)
    token_acc, token_acc_batches = torch.zeros(11, dtype=torch.float64), 0
    samples_seen, t_start, t_steady, steady_step = 0, time.perf_counter(), None, None
    model.train()
    while step < tc.steps:
        batches = 0
        for batch in iter_torch_window_batches(
            shard, batch_size=per_worker, drop_last=True, columns=columns,
            local_shuffle_buffer_size=config["shuffle_buffer"] or None,
            local_shuffle_seed=config["seed"] * 1000 + epoch * 10 + rank if config["shuffle_buffer"] else None,
        ):
            batches += 1
            if batches <= skip:  # trained on before the restart: the data position of the checkpoint
                continue
            if tc.augment_shift:
                batch["image"] = random_shift(batch["image"], tc.augment_shift, shift_rng)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, metrics = model(batch)
            loss_value = float(loss.detach())
            ctx.check_loss(loss_value, step + 1, "lower optim.lr or raise train.grad_clip (no policy is registered)")
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
            acc[0] += loss_value * n
            acc[1] += n
            acc[2] += float(per_sample.sum())
            acc[3:3 + n_ds] += torch.bincount(ids, weights=per_sample, minlength=n_ds)[:n_ds]
            acc[3 + n_ds:] += torch.bincount(ids, minlength=n_ds)[:n_ds].double()
            if t_steady is None and step - ctx.start_step >= config["warmup_steps"]:
                t_steady, steady_step, samples_at_steady = time.perf_counter(), step, samples_seen
            ctx.maybe_fail(step)

            if step % tc.log_every == 0 or step == tc.steps or step % tc.checkpoint_every == 0:
                total = ctx.all_reduce(acc.clone())  # metrics over the global batch, not rank 0's share
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
                ctx.log(row, step)
                if rank == 0 and (step % (tc.log_every * 5) == 0 or step == tc.steps):
                    shown = "  ".join(f"{k.split('/', 1)[1]} {v:.3g}" for k, v in row.items()
                                      if k in ("train/loss", "train/token_acc", "train/token_acc/world_vector"))
                    print(f"[train_policy] step {step}/{tc.steps}  {shown}", flush=True)
            if sim_eval is not None:
                if step % tc.eval_every == 0 or step == tc.steps:
                    sim_eval.submit(step, policy)
                for done_step, success in sim_eval.poll(wait=step == tc.steps):
                    ctx.log(success, done_step)
                    per_task = "  ".join(f"{k.split('/')[-1]} {v:.2f}" for k, v in success.items()
                                         if k.startswith("sim/success/"))
                    print(f"[train_policy] step {done_step}: success in simulation {success['sim/success']:.2f} "
                          f"({per_task})", flush=True)
            # ray.train.report is a barrier through Ray Train's controller and cost ~1 s per call here
            # (10x the step time of a small policy), so metrics go to MLflow directly above and Ray Train
            # only hears about checkpoints (with the metrics of that step).
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                policy_state, optim_state = ctx.full_state(model, policy, optimizer, prefix="policy.")
                state = {
                    "policy": policy_state, "optimizer": optim_state, "step": step,
                    "epoch": epoch, "epoch_batches": batches,
                    "policy_preset": config["policy_preset"], "policy_overrides": config["policy_overrides"],
                    "seconds": time.perf_counter() - t_start,
                }
                if sim_eval is not None:
                    state["best_sim"] = sim_eval.best
                ctx.save(state, {**row, "step": step, "restarts": ctx.restarts})
            if step >= tc.steps:
                break
        if batches == 0:
            raise XlabError(
                f"bad config value for train.batch_size: rank {rank} got no batch of {per_worker} in an epoch of "
                "the training data; the datasets are too small for train.batch_size / train.num_workers"
            )
        epoch, skip = epoch + 1, 0


# ------------------------------------------------------------------------------------------- driver

def fit_policy(
    cfg: PolicyJobConfig,
    ds: Any,
    dataset_names_: list[str],
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    warmup_steps: int = 5,
) -> dict[str, Any]:
    """Train on dataset ``ds`` with the Ray Train harness; returns the final checkpoint state and the last metrics.

    ``cfg`` is the job's config (its ``data``, ``policy``, ``optim``, ``train`` and ``seed`` are read);
    ``--train.resume auto`` continues the latest run of the same config found in storage.
    """
    from xlab.policies.encoder import encoder_record

    tc = cfg.train
    out = launch(
        train_worker,
        {
            "train": tc, "optim": cfg.optim, "seed": cfg.seed,
            "policy_preset": cfg.policy.preset, "policy_overrides": cfg.policy.overrides(),
            "dataset_names": dataset_names_, "shuffle_buffer": cfg.data.shuffle_buffer,
            "warmup_steps": warmup_steps, "instruction_encoder": encoder_record(cfg.data.embedding_backend)["name"],
        },
        tc, name="train_policy", key=run_key(cfg), datasets={"train": ds}, run_id=run_id, tracking_uri=tracking_uri,
        # Policy trials (cross_embodiment, policy_ablation) report success in simulation after training.
        report_to_tune=False,
    )
    return {"state": out.state, "metrics": out.metrics, "seconds": out.seconds,
            "checkpoint_path": out.checkpoint_path, "storage": out.storage, "run_name": out.run_name}
