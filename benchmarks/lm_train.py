"""Training tokens/s of the xlab LM loop (in process, Ray Train 1 and 2 workers) vs a bare PyTorch loop,
and generation / few-shot evaluation throughput.

Same model (GPT-2 family, ``--size``), same packed blocks and batches, same optimizer (AdamW with the
warm-up + cosine schedule) in the same run:

* ``bare``: forward with labels, backward, clip, step, schedule step; nothing else.
* ``xlab loop``: :func:`xlab.lm.loop.train_steps` in this process (the loop the fine-tuning API uses).
* ``ray 1w`` / ``ray 2w``: :func:`xlab.lm.pretrain.fit_pretrain` (Ray Train, DDP over gloo on CPU;
  NCCL on GPU) with 1 and 2 workers at the same global batch; steady-state tokens/s from the workers'
  own rows (start-up, validation and checkpoints excluded), and the wall time including start-up.

Threads are matched: the in-process loops use ``--threads``; each of N Ray workers uses threads/N.
Each xlab measurement runs between two bare runs and its ratio is against their mean, so load that
drifts during the run (a shared machine) hits both sides.
Generation: greedy ``HFGenerator.generate`` of 8 tokens for 64 prompts; evaluation: 3-shot FLD and
bAbI items per second (generation mode).

    python benchmarks/lm_train.py                    # CPU, gpt2 "tiny", about 3 minutes on 2 idle cores
    python benchmarks/lm_train.py --size smoke --block 256 --steps 40
    python benchmarks/lm_train.py --gpu --size gpt2-small --block 1024 --batch 16   # GPU node: bf16 + MFU
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from xlab.lm.loop import build_optimizer_and_schedule, train_steps, use_bf16  # noqa: E402
from xlab.lm.models import flops_per_token  # noqa: E402
from xlab.lm.packing import iter_block_batches, save_blocks  # noqa: E402
from xlab.lm.pretrain import ModelSpec, PretrainConfig, fit_pretrain, peak_flops  # noqa: E402


def bare_loop(spec: ModelSpec, blocks: np.ndarray, cfg: PretrainConfig, device: str, warmup: int) -> float:
    """Tokens/s of a plain PyTorch loop over the same batches (after ``warmup`` steps)."""
    model = spec.build().to(device)
    opt, sched = build_optimizer_and_schedule(model, cfg)
    batches = iter_block_batches(blocks, cfg.batch_size, seed=cfg.seed)
    bf16 = use_bf16(cfg, device)
    model.train()
    for step in range(cfg.steps):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        batch = {k: v.to(device) for k, v in next(batches).items()}
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return (cfg.steps - warmup) * cfg.batch_size * cfg.block_size / (time.perf_counter() - t0)


def xlab_loop(spec: ModelSpec, blocks: np.ndarray, cfg: PretrainConfig, device: str) -> tuple[float, float | None]:
    """Steady tokens/s (and MFU on GPU) of the shared loop in this process."""
    model = spec.build().to(device)
    opt, sched = build_optimizer_and_schedule(model, cfg)
    batches = iter_block_batches(blocks, cfg.batch_size, seed=cfg.seed)
    history = train_steps(model, batches, cfg, optimizer=opt, scheduler=sched, device=device,
                          flops_per_token=flops_per_token(model, cfg.block_size),
                          peak_flops=peak_flops(cfg, torch.device(device)))
    rows = history[1:] or history
    mfu = [r["train/mfu"] for r in rows if "train/mfu" in r]
    return statistics.median(r["train/tokens_per_s"] for r in rows), (statistics.median(mfu) if mfu else None)


def ray_loop(spec: ModelSpec, train_path: Path, val_path: Path, cfg: PretrainConfig) -> tuple[float, float]:
    """(steady tokens/s over all workers, wall seconds including start-up) of a Ray Train run."""
    t0 = time.perf_counter()
    res = fit_pretrain(spec, train_path, {"val": val_path}, cfg, name=f"bench-{cfg.num_workers}w")
    wall = time.perf_counter() - t0
    rows = res.history[1:] or res.history
    return statistics.median(r["train/tokens_per_s"] for r in rows), wall


def generation(spec: ModelSpec, n_prompts: int, device: str) -> dict[str, float]:
    from xlab.evals import HFGenerator, babi_examples, evaluate_fewshot, fld_examples
    from xlab.lm.tokenizer import train_bpe

    texts = [" ".join([x.hypothesis, *x.facts, x.label]) for x in fld_examples(40, seed=1)]
    texts += [f"{x.passage} {x.question} {x.answer}" for x in babi_examples(1, 40, seed=1)]
    tok = train_bpe(texts, vocab_size=spec.vocab_size)
    model = ModelSpec(spec.arch, spec.size, vocab_size=len(tok), n_ctx=spec.n_ctx).build().to(device)
    gen = HFGenerator(model, tok, device=device, batch_size=16)
    prompts = ["Passage: Mary went to the kitchen.\nQuestion: Where is Mary?\nAnswer:"] * n_prompts
    t0 = time.perf_counter()
    gen.generate(prompts, max_new_tokens=8, stop=())
    gen_s = time.perf_counter() - t0
    out = {"generate prompts/s (8 new tokens)": n_prompts / gen_s,
           "generate new tokens/s": n_prompts * 8 / gen_s}
    fld = evaluate_fewshot(gen, "fld", fld_examples(48, depth=(1, 2), distractors=(0, 3), seed=2), shots=3)
    babi = evaluate_fewshot(gen, "babi", babi_examples(1, 48, seed=2), shots=3)
    out["FLD 3-shot items/s"] = fld["items_per_s"]
    out["bAbI 3-shot items/s"] = babi["items_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="tiny", help="xlab.lm.models.SIZES preset (GPT-2 family)")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="global sequences per step")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpu", action="store_true", help="bf16 on one GPU per worker (MFU reported)")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()

    device = "cuda" if args.gpu else "cpu"
    torch.set_num_threads(args.threads)
    spec = ModelSpec("gpt2", args.size, vocab_size=args.vocab, n_ctx=max(args.block, 2))
    rng = np.random.default_rng(0)
    # Random token blocks: throughput does not depend on the text, and no corpus is needed.
    blocks = rng.integers(1, args.vocab, (args.batch * (args.steps + 2), args.block)).astype(np.int32)
    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch, block_size=args.block, lr=1e-3, warmup_steps=5,
                         log_every=max(args.steps // 6, 1), eval_every=10**9, use_gpu=args.gpu,
                         precision="bf16" if args.gpu else "fp32", max_failures=0)
    warmup = max(args.steps // 6, 1)
    n_params = sum(p.numel() for p in spec.build().parameters())
    print(f"gpt2 {args.size}: {n_params / 1e6:.2f}M parameters, {args.batch} x {args.block} tokens per step, "
          f"{args.steps} steps, {args.threads} threads, device {device}")

    figures: dict[str, float] = {}
    ratios: dict[str, float] = {}

    def bracketed(name: str, measure) -> float:
        """``measure()`` between two bare runs: the ratio is against their mean (load drifts on shared machines)."""
        before = bare_loop(spec, blocks, cfg, device, warmup)
        value = measure()
        after = bare_loop(spec, blocks, cfg, device, warmup)
        figures[f"{name} tokens/s"] = value
        figures.setdefault("bare PyTorch tokens/s", 0.0)  # first row of the table; set at the end
        ratios[f"{name} tokens/s"] = value / ((before + after) / 2)
        bare_runs.extend([before, after])
        return value

    bare_runs: list[float] = []
    mfus: list[float] = []

    def in_process() -> float:
        tps, mfu = xlab_loop(spec, blocks, cfg, device)
        if mfu is not None:
            mfus.append(mfu)
        return tps

    bracketed("xlab loop (in process)", in_process)
    if mfus:
        figures["xlab loop MFU"] = mfus[0]
    if not args.skip_ray:
        from xlab.runtime import init_ray

        init_ray(num_cpus=max(args.threads, 2), object_store_memory=256 * 1024**2, include_dashboard=False)
        with tempfile.TemporaryDirectory() as d:
            os.environ.setdefault("XLAB_STORAGE_PATH", str(Path(d) / "ray_results"))
            train_path = save_blocks(blocks, Path(d) / "train.npy")
            val_path = save_blocks(blocks[: args.batch], Path(d) / "val.npy")
            for workers in (1, 2):
                wcfg = PretrainConfig(**{**cfg.__dict__, "num_workers": workers,
                                         "cpus_per_worker": max(args.threads // workers, 1) * 0.9,
                                         "threads_per_worker": max(args.threads // workers, 1)})
                walls: list[float] = []

                def on_ray(wcfg=wcfg, walls=walls) -> float:
                    tps, wall = ray_loop(spec, train_path, val_path, wcfg)
                    walls.append(wall)
                    return tps

                bracketed(f"ray train {workers}w", on_ray)
                figures[f"ray train {workers}w wall s (with start-up)"] = walls[0]
    figures["bare PyTorch tokens/s"] = statistics.median(bare_runs)
    ratios["bare PyTorch tokens/s"] = 1.0
    figures.update(generation(spec, 64, device))

    print(f"\n{'measure':44s} {'value':>12s} {'vs bare':>8s}  (ratio: against the bare runs just before and after)")
    for k, v in figures.items():
        ratio = f"{ratios[k]:8.2f}" if k in ratios else ""
        print(f"{k:44s} {v:12.4g} {ratio}")


if __name__ == "__main__":
    main()
