"""Pretraining a causal LM from scratch on packed token blocks with Ray Train (DDP or FSDP).

:func:`fit_pretrain` runs the Ray Train harness (:func:`xlab.train.distributed.launch`), whose
workers each build the model, wrap it (DDP over gloo on CPU / NCCL on GPU, or FSDP for large presets), stream their
shard of the memory-mapped training blocks (:func:`xlab.lm.packing.iter_block_batches`) and run the
shared optimizer loop :func:`xlab.lm.loop.train_steps` (gradient accumulation, bf16 autocast on GPU,
warm-up + cosine, AdamW or ADOPT). Every ``eval_every`` steps all workers evaluate their share of
each validation set (loss and perplexity per corpus, summed over workers) and rank 0 logs to MLflow;
checkpoints (model, optimizer, schedule, step, history; FSDP state gathered in full) go through the
harness, so a restarted worker group (``max_failures``), the same command with ``--train.resume auto``
or a later run (``resume_from``) continues at the same step and batch. Ray keeps the latest checkpoint and the one with the best validation loss; the result
holds the best weights (the study keeps the best-validation checkpoint). Tokens/s, and MFU on GPU,
are logged with the training loss.

    result = fit_pretrain(ModelSpec("gpt2", "smoke", vocab_size=8192), "blocks/python/train.npy",
                          {"python": "blocks/python/test.npy"}, PretrainConfig(steps=300, batch_size=16))
    model = result.model()        # a transformers model with the best weights
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xlab.config import check
from xlab.lm.loop import LMTrainConfig
from xlab.train.distributed import WorkerContext, launch, load_state
from xlab.train.scale import ScaleConfig, run_key

# Dense bf16 peak FLOP/s per GPU (vendor figures), for MFU. Unknown GPUs: set train.peak_tflops.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "V100": 125.0, "T4": 65.0}


@dataclasses.dataclass
class PretrainConfig(LMTrainConfig, ScaleConfig):
    """The shared loop's settings plus epochs and evaluation; workers, checkpoints and resume from
    :class:`~xlab.train.scale.ScaleConfig` (``checkpoint_every`` 0: at every validation)."""

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
    max_failures: int = 1
    """Worker-group restarts from the latest checkpoint after a worker or node failure."""
    peak_tflops: float = 0.0
    """Peak bf16 TFLOP/s of one accelerator for MFU (0 = from the GPU's name; none on CPU)."""

    def _check_steps(self) -> None:
        check(self.steps >= 0, "train.steps", f"must be >= 0 (0 = from epochs), got {self.steps}")

    def __post_init__(self) -> None:
        LMTrainConfig.__post_init__(self)
        ScaleConfig.__post_init__(self)
        check(self.epochs > 0, "train.epochs", f"must be > 0, got {self.epochs}")
        check(self.eval_every >= 1, "train.eval_every", f"must be >= 1, got {self.eval_every}")
        check(self.val_blocks >= 0, "train.val_blocks", f"must be >= 0, got {self.val_blocks}")

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
    restarts: int = 0
    """Resumes of this run (worker-group restarts, ``--train.resume``)."""
    resumed_from: list[int] = dataclasses.field(default_factory=list)
    """The step of each resume."""
    worker_nodes: list[str] = dataclasses.field(default_factory=list)
    """Ray node id of each worker (by rank) when the last checkpoint was written."""

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


def pretrain_worker(ctx: WorkerContext, config: dict[str, Any]) -> None:
    """Body of every Ray Train worker (see module docstring); the harness gives rank, device, checkpoints."""
    from xlab.lm.loop import build_optimizer_and_schedule, train_steps, use_bf16
    from xlab.lm.models import flops_per_token
    from xlab.lm.packing import iter_block_batches, load_blocks

    cfg: PretrainConfig = config["cfg"]
    spec: ModelSpec = config["spec"]
    rank, world, device = ctx.rank, ctx.world_size, ctx.device
    model = spec.build()
    state = ctx.restored
    if state is not None:  # full (unsharded) weights: loaded before wrapping, DDP or FSDP
        model.load_state_dict(state["model"])
    net = ctx.wrap(model, **(_fsdp_kwargs(model) if ctx.fsdp else {}))
    opt, sched = build_optimizer_and_schedule(net if ctx.fsdp else model, cfg)
    start, history, evals = 0, [], []
    best = {"val_loss": float("inf"), "step": 0}
    if state is not None:
        ctx.load_optimizer(net, opt, state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, history, evals, best = ctx.start_step, list(state["history"]), list(state["evals"]), state["best"]
    torch.manual_seed(spec.seed * 1000 + rank + start)

    micro = cfg.micro_batch(world)
    blocks = load_blocks(config["train_path"])
    batches = iter_block_batches(blocks, micro, seed=cfg.seed, rank=rank, world_size=world,
                                 skip_batches=start * cfg.grad_accum)  # the data position of the checkpoint
    val = {}
    for name, path in config["val_paths"].items():
        vb = load_blocks(path)
        val[name] = vb[: cfg.val_blocks] if cfg.val_blocks else vb

    reduce = ctx.all_reduce
    name, t_print = ctx.name, [0.0]

    def log_fn(step: int, metrics: dict[str, float]) -> None:
        ctx.log(metrics, step)
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
        ctx.log({k: v for k, v in row0.items() if k != "step"}, 0)

    def on_step(step: int, row: dict[str, float] | None) -> bool:
        last = step >= stop_at
        evaluate = step % cfg.eval_every == 0 or last
        metrics: dict[str, float] = {"step": float(step)}
        if evaluate and val:
            metrics.update(_validate(model, net, val, rank, world, micro, device, reduce, bf16))
            metrics["val_loss"] = metrics[f"val/{config['primary_val']}/loss"]
            evals.append(dict(metrics))
            ctx.log({k: v for k, v in metrics.items() if k != "step"}, step)
            if rank == 0:
                shown = "  ".join(f"{k[4:-4]} ppl {v:.1f}" for k, v in metrics.items() if k.endswith("/ppl"))
                print(f"[{name}] step {step} validation: {shown}", flush=True)
            if metrics["val_loss"] < best["val_loss"]:
                best.update(val_loss=metrics["val_loss"], step=step)
        due = last or (step % cfg.checkpoint_every == 0 if cfg.checkpoint_every else evaluate)
        if due:
            model_state, optim_state = ctx.full_state(net, model, opt)
            report = {"step": step, "val_loss": metrics.get("val_loss", float("nan")),
                      "train_loss": history[-1]["train/loss"] if history else float("nan")}
            ctx.save({"model": model_state, "optimizer": optim_state, "scheduler": sched.state_dict(), "step": step,
                      "history": history, "evals": evals, "best": dict(best), "spec": dataclasses.asdict(spec),
                      "steps": cfg.steps}, report)
        ctx.maybe_fail(step)
        return last

    train_steps(
        model, batches, cfg, optimizer=opt, scheduler=sched, net=net, device=device, start_step=start,
        history=history, log_fn=log_fn, reduce=reduce, on_step=on_step,
        flops_per_token=flops_per_token(model, cfg.block_size), peak_flops=peak_flops(cfg, torch.device(device)),
    )


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
    check(cfg.steps >= 1, "train.steps", "resolve steps first (PretrainConfig.resolved)")
    val_paths = {k: str(v) for k, v in val_paths.items()}
    config = {"cfg": cfg, "spec": spec, "train_path": str(train_path), "val_paths": val_paths,
              "primary_val": primary_val or next(iter(val_paths), "")}
    # Ray keeps the latest checkpoint (for restarts) and the best by validation loss.
    out = launch(pretrain_worker, config, dataclasses.replace(cfg, storage=storage or cfg.storage), name=name,
                 key=run_key(cfg, spec, {"train": str(train_path), "val": val_paths}), run_id=run_id,
                 tracking_uri=tracking_uri, keep=1, score="val_loss", score_order="min",
                 resume_from=str(resume_from) if resume_from else None)
    last = out.state
    state = last["model"]
    best = last["best"]
    if cfg.keep_best and best["step"] and best["step"] != last["step"]:
        for ckpt, metrics in out.best_checkpoints:
            if int(metrics.get("step", -1)) == int(best["step"]):
                state = load_state(ckpt)["model"]
                break
        else:  # the best step's checkpoint was not kept (checkpoint_every not at validations): the last
            best = {"step": last["step"], "val_loss": last["evals"][-1]["val_loss"] if last["evals"] else float("nan")}
    return PretrainResult(
        history=last["history"], evals=last["evals"], state=state, spec=spec, step=int(last["step"]),
        best_step=int(best["step"] or last["step"]), best_val_loss=float(best["val_loss"]),
        seconds=out.seconds, checkpoint_path=out.checkpoint_path, restarts=int(last.get("restarts", 0)),
        resumed_from=list(last.get("resumed_from", [])), worker_nodes=list(last.get("worker_nodes", [])),
    )
