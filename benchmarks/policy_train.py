"""Training samples/s of an RT-1-X policy: Ray Train with 1 and 2 workers vs a bare PyTorch loop.

All three train the same policy preset on the same synthetic windows (image, pad mask, action
tokens, embedding, as the RLDS pipeline emits them) with the same optimizer:

* **bare**: one process, batches pre-materialized as torch tensors, ``policy.loss`` + backward + step;
* **ray-1 / ray-2**: ``xlab.policies.training.fit_policy`` (the job's own worker loop: Ray Data shard
  iteration, DDP through ``prepare_model``, per-dataset metrics, one report every ``--log-every``
  steps, a checkpoint at the end) over a materialized ``ray.data`` dataset of the same rows.

Each worker keeps the bare loop's per-worker batch (2 workers: twice the global batch), so ray-2 /
bare near 2 means linear scaling. Warm-up steps are excluded everywhere. Ratios are printed last::

    python benchmarks/policy_train.py                          # rt1x-tiny, 32 px, batch 16, 60 steps
    python benchmarks/policy_train.py --preset rt1x-small --image 64 --batch 8 --steps 40
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def synthetic_rows(n: int, history: int, image: int, embed_dim: int, seed: int = 0) -> list[dict]:
    """Window rows with the columns of :mod:`xlab.rlds.windows` (tensor columns only)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pad = np.ones(history, bool)
        pad[: rng.integers(0, history)] = False
        tokens = rng.integers(0, 256, (history, 11)).astype(np.int64)
        rows.append({
            "image": rng.integers(0, 256, (history, image, image, 3), dtype=np.uint8),
            "pad_mask": pad, "window_tokens": tokens, "token_mask": pad.copy(), "tokens": tokens[-1],
            "action": rng.uniform(-1, 1, 13).astype(np.float32),
            "embedding": rng.normal(size=embed_dim).astype(np.float32),
            "dataset_id": np.int64(i % 2), "episode": np.int64(i // 10), "step": np.int64(i % 10),
        })
    return rows


def bare_loop(rows: list[dict], preset: str, overrides: dict, optim, batch: int, steps: int, warmup: int,
              threads: int) -> float:
    """Samples/s of a plain single-process loop over pre-materialized batches."""
    from xlab.optim import build_optimizer
    from xlab.policies import build_policy

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    policy = build_policy(preset, **overrides)
    opt = build_optimizer(optim, policy.parameters())
    keys = ("image", "pad_mask", "window_tokens", "embedding")
    batches = [
        {k: torch.from_numpy(np.stack([r[k] for r in rows[i:i + batch]])) for k in keys}
        for i in range(0, len(rows) - batch + 1, batch)
    ]
    policy.train()
    t0 = None
    for s in range(warmup + steps):
        if s == warmup:
            t0 = time.perf_counter()
        loss, _ = policy.loss(batches[s % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)  # as the job does
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def ray_train(rows: list[dict], args: argparse.Namespace, workers: int, overrides: dict,
              placement: str = "PACK") -> float:
    """Samples/s (steady state, all workers) of the train_policy job's Ray Train loop (``placement``: of the workers)."""
    import ray

    from jobs import train_policy
    from xlab.config import apply_overrides

    ds = ray.data.from_items(rows).materialize()
    cfg = apply_overrides(train_policy.PRESETS["smoke"], {
        "policy.preset": args.preset, "policy.image_size": args.image, "policy.history": args.history,
        "train.steps": args.warmup + args.steps, "train.batch_size": args.batch * workers,
        "train.num_workers": workers, "train.cpus_per_worker": args.cpus_per_worker,
        "train.threads_per_worker": args.threads, "train.log_every": args.log_every,
        "train.checkpoint_every": args.warmup + args.steps, "data.shuffle_buffer": 0, "train.placement": placement,
    })
    from xlab.policies.training import fit_policy

    out = fit_policy(cfg, ds, ["a", "b"], warmup_steps=args.warmup)
    return float(out["metrics"]["train_samples_per_s"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the run (shared with ``benchmarks/cluster_train.py``)."""
    p.add_argument("--preset", default="rt1x-tiny")
    p.add_argument("--image", type=int, default=32)
    p.add_argument("--history", type=int, default=2)
    p.add_argument("--batch", type=int, default=16, help="per-worker batch (bare loop: the batch)")
    p.add_argument("--steps", type=int, default=60, help="timed steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process/worker")
    p.add_argument("--cpus-per-worker", type=float, default=0.5)


def baseline(args: argparse.Namespace) -> tuple[list[dict], dict, float]:
    """The synthetic rows, the policy overrides and the bare loop's samples/s (printed)."""
    from jobs import train_policy
    from xlab.policies import build_policy

    overrides = {"image_size": args.image, "history": args.history}
    policy = build_policy(args.preset, **overrides)
    # Enough rows for one epoch of the 2-worker run: every new epoch restarts Ray Data's streaming
    # split (about a second), which real datasets (thousands of windows) amortize but a toy one would not.
    n_rows = 2 * args.batch * (args.warmup + args.steps + 1)
    rows = synthetic_rows(n_rows, args.history, args.image, int(policy.config.embed_dim))
    optim = train_policy.PRESETS["smoke"].optim
    print(f"{args.preset} ({sum(p.numel() for p in policy.parameters()) / 1e6:.2f}M params), {args.image}px, "
          f"history {args.history}, batch {args.batch}/worker, {args.steps} timed steps, {args.threads} thread(s)")
    bare = bare_loop(rows, args.preset, overrides, optim, args.batch, args.steps, args.warmup, args.threads)
    print(f"bare  : {bare:8.1f} samples/s", flush=True)
    return rows, overrides, bare


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--num-cpus", type=int, default=2)
    args = p.parse_args()

    from xlab.runtime import init_ray

    rows, overrides, bare = baseline(args)
    init_ray(num_cpus=args.num_cpus, object_store_memory=512 * 1024**2, include_dashboard=False)
    results = {}
    for w in (1, 2):
        results[w] = ray_train(rows, args, w, overrides)
        print(f"ray-{w} : {results[w]:8.1f} samples/s", flush=True)
    print(f"ratios: ray-1/bare {results[1] / bare:.2f}  ray-2/bare {results[2] / bare:.2f}  "
          f"ray-2/ray-1 {results[2] / results[1]:.2f}")


if __name__ == "__main__":
    main()
