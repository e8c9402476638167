"""Pretraining a causal LM from scratch on packed token blocks with Ray Train (DDP or FSDP).

:func:`fit_pretrain` starts a ``TorchTrainer`` whose workers each build the model, wrap it
(``prepare_model``: DDP over gloo on CPU / NCCL on GPU, or FSDP for large presets), stream their
shard of the memory-mapped training blocks (:func:`xlab.lm.packing.iter_block_batches`) and run the
shared optimizer loop :func:`xlab.lm.loop.train_steps` (gradient accumulation, bf16 autocast on GPU,
warm-up + cosine, AdamW or ADOPT). Every ``eval_every`` steps all workers evaluate their share of
each validation set (loss and perplexity per corpus, summed over workers) and rank 0 logs to MLflow;
checkpoints (model, optimizer, schedule, step, history) go through ``ray.train.report`` so a
restarted worker group (``max_failures``) or a later run (``resume_from``) continues at the same step
and batch. Ray keeps the latest checkpoint and the one with the best validation loss; the result
holds the best weights (the study keeps the best-validation checkpoint). Tokens/s, and MFU on GPU,
are logged with the training loss.

    result = fit_pretrain(ModelSpec("gpt2", "smoke", vocab_size=8192), "blocks/python/train.npy",
                          {"python": "blocks/python/test.npy"}, PretrainConfig(steps=300, batch_size=16))
    model = result.model()        # a transformers model with the best weights
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from xlab.checkpoint import load_checkpoint, save_checkpoint
from xlab.config import check, check_max_failures
from xlab.lm.loop import LMTrainConfig

CHECKPOINT_FILE = "lm_state.pt"

# Dense bf16 peak FLOP/s per GPU (vendor figures), for MFU. Unknown GPUs: set train.peak_tflops.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "V100": 125.0, "T4": 65.0}


@dataclasses.dataclass
class PretrainConfig(LMTrainConfig):
    """The shared loop's settings plus epochs, evaluation, checkpoints and scaling."""

    steps: int = 0
    """Optimizer steps; 0 = as many as ``epochs`` passes over the training blocks take."""
    epochs: float = 1.0
    """Passes over the training blocks when steps = 0 (the paper: 3)."""
    eval_every: int = 50
    """Steps between validation passes (and best-checkpoint decisions)."""
    val_blocks: int = 0
    """Validation blocks per corpus (0 = all)."""
    checkpoint_every: int = 0
    """Steps between checkpoints; 0 = at every validation."""
    stop_at_step: int = 0
    """Stop (with a checkpoint) after this step although the schedule runs to ``steps`` (resume later)."""
    keep_best: bool = True
    """Return the weights of the best validation loss (else the last)."""
    num_workers: int = 1
    """Ray Train workers (data parallel)."""
    cpus_per_worker: float = 1.0
    threads_per_worker: int = 0
    """torch intra-op threads per worker (0 = torch's default)."""
    use_gpu: bool = False
    parallel_strategy: Literal["ddp", "fsdp"] = "ddp"
    """ddp, or fsdp (FSDP1 with use_orig_params, one unit per transformer block; for 774M+ models on GPUs)."""
    max_failures: int = 1
    """Worker-group restarts from the latest checkpoint after a worker or node failure."""
    peak_tflops: float = 0.0
    """Peak bf16 TFLOP/s of one accelerator for MFU (0 = from the GPU's name; none on CPU)."""

    def _check_steps(self) -> None:
        check(self.steps >= 0, "train.steps", f"must be >= 0 (0 = from epochs), got {self.steps}")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.epochs > 0, "train.epochs", f"must be > 0, got {self.epochs}")
        check(self.eval_every >= 1, "train.eval_every", f"must be >= 1, got {self.eval_every}")
        check(self.val_blocks >= 0, "train.val_blocks", f"must be >= 0, got {self.val_blocks}")
        check(self.checkpoint_every >= 0, "train.checkpoint_every", "must be >= 0 (0 = at every validation)")
        check(self.num_workers >= 1, "train.num_workers", f"must be >= 1, got {self.num_workers}")
        check(self.cpus_per_worker > 0, "train.cpus_per_worker", "must be > 0")
        check(self.parallel_strategy in ("ddp", "fsdp"), "train.parallel_strategy",
              f"must be ddp or fsdp, got {self.parallel_strategy!r}")
        check_max_failures(self.max_failures)

    def resolved(self, n_train_blocks: int) -> PretrainConfig:
        """A copy with ``steps`` fixed (from ``epochs`` when 0) and the batch split checked."""
        self.micro_batch(self.num_workers)
        steps = self.steps or max(1, int(self.epochs * n_train_blocks // self.batch_size))
        return dataclasses.replace(self, steps=steps)


@dataclasses.dataclass
class ModelSpec:
    """What every worker builds: :func:`xlab.lm.models.build_causal_lm` arguments."""

    arch: str = "gpt2"
    size: str = "tiny"
    vocab_size: int = 4096
    n_ctx: int | None = None
    dropout: float | None = None
    seed: int = 0

    def build(self) -> Any:
        from xlab.lm.models import build_causal_lm

        return build_causal_lm(self.arch, self.size, vocab_size=self.vocab_size, n_ctx=self.n_ctx,
                               dropout=self.dropout, seed=self.seed)


@dataclasses.dataclass
class PretrainResult:
    history: list[dict[str, float]]
    """Training rows (train/loss, lr, tokens/s, ...) every log_every steps."""
    evals: list[dict[str, float]]
    """Validation rows: step, val/<corpus>/loss, val/<corpus>/ppl, val_loss (the primary corpus)."""
    state: dict[str, torch.Tensor]
    """Weights: best validation loss when keep_best, else the last step's."""
    spec: ModelSpec
    step: int
    """Last step trained."""
    best_step: int
    best_val_loss: float
    seconds: float
    checkpoint_path: str
    """The latest checkpoint (``resume_from`` of a later run)."""

    def model(self) -> Any:
        m = self.spec.build()
        m.load_state_dict(self.state)
        return m.eval()


def peak_flops(cfg: PretrainConfig, device: torch.device) -> float | None:
    """Peak FLOP/s of one worker's accelerator (None on CPU: MFU is a GPU measure)."""
    if cfg.peak_tflops > 0:
        return cfg.peak_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def _fsdp_kwargs(model: Any) -> dict[str, Any]:
    import functools

    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    block_types = {type(m) for m in model.modules() if type(m).__name__ in
                   ("GPT2Block", "LlamaDecoderLayer", "GPTNeoXLayer")}
    return {"use_orig_params": True,
            "auto_wrap_policy": functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=block_types)}


def _states(net: Any, model: Any, opt: Any, fsdp: bool) -> tuple[dict, dict]:
    """Full (unsharded, CPU) model and optimizer state dicts; with FSDP only rank 0's are complete."""
    if not fsdp:
        return ({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, opt.state_dict())
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(net, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _load_optimizer(net: Any, opt: Any, state: dict, fsdp: bool) -> None:
    if not fsdp:
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(net, opt, model_state_dict={}, optim_state_dict=state,
                   options=StateDictOptions(full_state_dict=True, strict=False))


def _read_checkpoint(config: dict[str, Any]) -> dict[str, Any] | None:
    import ray.train

    ckpt = ray.train.get_checkpoint()  # a restarted worker group
    if ckpt is not None:
        with ckpt.as_directory() as d:
            return load_checkpoint(Path(d) / CHECKPOINT_FILE, map_location="cpu")
    if config["resume_from"]:  # a new run continuing an earlier one
        return load_checkpoint(Path(config["resume_from"]) / CHECKPOINT_FILE, map_location="cpu")
    return None


@torch.no_grad()
def _validate(model: Any, net: Any, val: Mapping[str, Any], rank: int, world: int, micro: int, device: Any,
              reduce: Any, bf16: bool) -> dict[str, float]:
    """Loss and perplexity per validation set; each worker takes every world-th block, sums are all-reduced."""
    import math

    import numpy as np

    from xlab.lm.packing import blocks_to_batch

    net.eval()
    out: dict[str, float] = {}
    for name, blocks in val.items():
        mine = np.arange(rank, blocks.shape[0], world)
        sums = torch.zeros(2, dtype=torch.float64)
        for i in range(0, len(mine), micro):
            batch = blocks_to_batch(np.asarray(blocks[mine[i:i + micro]]))
            ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(input_ids=ids).logits
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(),
                                                    ignore_index=-100, reduction="sum")
            sums[0] += float(nll)
            sums[1] += float((labels[:, 1:] != -100).sum())
        sums = reduce(sums)
        loss = float(sums[0] / max(float(sums[1]), 1.0))
        out[f"val/{name}/loss"] = loss
        out[f"val/{name}/ppl"] = math.exp(min(loss, 50.0))
    net.train()
    return out


def pretrain_worker(config: dict[str, Any]) -> None:
    """Body of every Ray Train worker (see module docstring)."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    from xlab.lm.loop import build_optimizer_and_schedule, train_steps, use_bf16
    from xlab.lm.models import flops_per_token
    from xlab.lm.packing import iter_block_batches, load_blocks
    from xlab.track import Tracker

    cfg: PretrainConfig = config["cfg"]
    spec: ModelSpec = config["spec"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if cfg.threads_per_worker:
        torch.set_num_threads(cfg.threads_per_worker)
    _quiet_reports()
    fsdp = cfg.parallel_strategy == "fsdp"
    model = spec.build()
    state = _read_checkpoint(config)
    if state is not None:
        model.load_state_dict(state["model"])
    device = ray.train.torch.get_device()
    net = ray.train.torch.prepare_model(model, parallel_strategy=cfg.parallel_strategy,
                                        parallel_strategy_kwargs=_fsdp_kwargs(model) if fsdp else None)
    opt, sched = build_optimizer_and_schedule(net if fsdp else model, cfg)
    start, history, evals = 0, [], []
    best = {"val_loss": float("inf"), "step": 0}
    if state is not None:
        _load_optimizer(net, opt, state["optimizer"], fsdp)
        sched.load_state_dict(state["scheduler"])
        start, history, evals, best = int(state["step"]), list(state["history"]), list(state["evals"]), state["best"]
    torch.manual_seed(spec.seed * 1000 + rank + start)

    tracker = None
    if config["run_id"]:
        import mlflow

        mlflow.set_tracking_uri(config["tracking_uri"])
        tracker = Tracker(config["run_id"], enabled=rank == 0)
        if state is not None and rank == 0:
            print(f"[{config['name']}] resuming at step {start}/{cfg.steps}", flush=True)
            tracker.log_metrics({"train/resumed_from_step": float(start)}, start)

    micro = cfg.micro_batch(world)
    blocks = load_blocks(config["train_path"])
    batches = iter_block_batches(blocks, micro, seed=cfg.seed, rank=rank, world_size=world,
                                 skip_batches=start * cfg.grad_accum)
    val = {}
    for name, path in config["val_paths"].items():
        vb = load_blocks(path)
        val[name] = vb[: cfg.val_blocks] if cfg.val_blocks else vb

    def reduce(t: torch.Tensor) -> torch.Tensor:
        if dist.is_available() and dist.is_initialized() and world > 1:
            t = t.to(device)
            dist.all_reduce(t)
        return t.cpu()

    name, t_print = config["name"], [0.0]

    def log_fn(step: int, metrics: dict[str, float]) -> None:
        if tracker is not None:
            tracker.log_metrics(metrics, step)
        now = time.monotonic()
        if rank == 0 and (now - t_print[0] > 15 or step == cfg.steps):
            t_print[0] = now
            print(f"[{name}] step {step}/{cfg.steps}  loss {metrics['train/loss']:.4f}  lr {metrics['train/lr']:.2e}  "
                  f"{metrics['train/tokens_per_s']:.0f} tok/s", flush=True)

    bf16 = use_bf16(cfg, device)
    stop_at = cfg.stop_at_step or cfg.steps
    if start == 0 and val:  # the untrained model: curves start at chance (perplexity ~ vocabulary size)
        row0 = {"step": 0.0, **_validate(model, net, val, rank, world, cfg.micro_batch(world), device, reduce, bf16)}
        row0["val_loss"] = row0[f"val/{config['primary_val']}/loss"]
        evals.append(row0)
        if tracker is not None:
            tracker.log_metrics({k: v for k, v in row0.items() if k != "step"}, 0)

    def on_step(step: int, row: dict[str, float] | None) -> bool:
        last = step >= stop_at
        evaluate = step % cfg.eval_every == 0 or last
        metrics: dict[str, float] = {"step": float(step)}
        if evaluate and val:
            metrics.update(_validate(model, net, val, rank, world, micro, device, reduce, bf16))
            metrics["val_loss"] = metrics[f"val/{config['primary_val']}/loss"]
            evals.append(dict(metrics))
            if tracker is not None:
                tracker.log_metrics({k: v for k, v in metrics.items() if k != "step"}, step)
            if rank == 0:
                shown = "  ".join(f"{k[4:-4]} ppl {v:.1f}" for k, v in metrics.items() if k.endswith("/ppl"))
                print(f"[{name}] step {step} validation: {shown}", flush=True)
            if metrics["val_loss"] < best["val_loss"]:
                best.update(val_loss=metrics["val_loss"], step=step)
        due = last or (step % cfg.checkpoint_every == 0 if cfg.checkpoint_every else evaluate)
        if due:
            model_state, optim_state = _states(net, model, opt, fsdp)
            report = {"step": step, "val_loss": metrics.get("val_loss", float("nan")),
                      "train_loss": history[-1]["train/loss"] if history else float("nan")}
            with tempfile.TemporaryDirectory() as d:
                if rank == 0:
                    save_checkpoint({"model": model_state, "optimizer": optim_state, "scheduler": sched.state_dict(),
                                "step": step, "history": history, "evals": evals, "best": dict(best),
                                "spec": dataclasses.asdict(spec), "steps": cfg.steps}, Path(d) / CHECKPOINT_FILE)
                    ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(d))
                else:
                    ray.train.report(report, checkpoint=None)
        return last

    train_steps(
        model, batches, cfg, optimizer=opt, scheduler=sched, net=net, device=device, start_step=start,
        history=history, log_fn=log_fn, reduce=reduce, on_step=on_step,
        flops_per_token=flops_per_token(model, cfg.block_size), peak_flops=peak_flops(cfg, torch.device(device)),
    )


def _quiet_reports() -> None:
    """Ray Train logs every report call at INFO from every rank; the progress lines say enough."""
    import logging

    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass


def fit_pretrain(
    spec: ModelSpec,
    train_path: str | Path,
    val_paths: Mapping[str, str | Path],
    cfg: PretrainConfig,
    *,
    primary_val: str | None = None,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    name: str = "pretrain",
    resume_from: str | Path | None = None,
    storage: str | None = None,
) -> PretrainResult:
    """Pretrain ``spec`` on the blocks at ``train_path`` with Ray Train (see module docstring).

    ``cfg.steps`` must be resolved (:meth:`PretrainConfig.resolved`). ``val_paths`` maps corpus name to
    validation blocks; ``primary_val`` (default: the first) picks the best checkpoint. Inside a Ray
    Tune trial the workers' checkpoint reports are forwarded to Tune.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    from xlab.errors import XlabError
    from xlab.track.store import resolve_tracking_uri
    from xlab.train.ray_failures import XlabTorchTrainer as TorchTrainer
    from xlab.train.runner import _in_tune_trial
    from xlab.tune.sweep import storage_path

    check(cfg.steps >= 1, "train.steps", "resolve steps first (PretrainConfig.resolved)")
    if resume_from is not None and not (Path(resume_from) / CHECKPOINT_FILE).exists():
        raise XlabError(f"no pretraining checkpoint at {resume_from} ({CHECKPOINT_FILE} missing)")
    callbacks = []
    if _in_tune_trial():
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    val_paths = {k: str(v) for k, v in val_paths.items()}
    run_name = f"{name}-{uuid.uuid4().hex[:8]}"  # a reused (storage, name) would resume an old run
    trainer = TorchTrainer(
        pretrain_worker,
        train_loop_config={
            "cfg": cfg, "spec": spec, "train_path": str(train_path), "val_paths": val_paths,
            "primary_val": primary_val or next(iter(val_paths), ""), "run_id": run_id,
            "tracking_uri": resolve_tracking_uri(tracking_uri) if run_id else None, "name": name,
            "resume_from": str(resume_from) if resume_from else None,
        },
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name, storage_path=storage or storage_path(),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            # Ray keeps the latest checkpoint (for restarts) and the best by validation loss.
            checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="val_loss",
                                               checkpoint_score_order="min"),
            callbacks=callbacks,
        ),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        last = load_checkpoint(Path(d) / CHECKPOINT_FILE, map_location="cpu")
    state = last["model"]
    best = last["best"]
    if cfg.keep_best and best["step"] and best["step"] != last["step"]:
        for ckpt, metrics in result.best_checkpoints or []:
            if int(metrics.get("step", -1)) == int(best["step"]):
                with ckpt.as_directory() as d:
                    state = load_checkpoint(Path(d) / CHECKPOINT_FILE, map_location="cpu")["model"]
                break
        else:  # the best step's checkpoint was not kept (checkpoint_every not at validations): the last
            best = {"step": last["step"], "val_loss": last["evals"][-1]["val_loss"] if last["evals"] else float("nan")}
    return PretrainResult(
        history=last["history"], evals=last["evals"], state=state, spec=spec, step=int(last["step"]),
        best_step=int(best["step"] or last["step"]), best_val_loss=float(best["val_loss"]),
        seconds=time.perf_counter() - t0, checkpoint_path=result.checkpoint.path,
    )
