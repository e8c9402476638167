"""Windows/s delivered by the RLDS -> Ray Data pipeline vs windows/s a training step consumes.

Writes synthetic RLDS datasets (in a Ray task, like simulators' episodes would be), streams a
weighted mixture of them as tokenized windows through Ray Data (TFDS decoding in Ray read
tasks, windows, RT-1 tokens) into ``iter_torch_batches``, and times one pass after a warm-up
pass (which starts the TensorFlow workers). In the same run it times forward + backward + Adam
of a small conv-net policy on batches of the same windows (frames through a conv encoder,
FiLM-conditioned on the instruction embedding, 11 x 256-way action heads). The ratio
``pipeline / training`` should be >= 5 so data loading never starves training::

    python benchmarks/rlds_pipeline.py                       # 2 datasets x 40 episodes x 40 steps, 128 px
    python benchmarks/rlds_pipeline.py --image 96 --window 6 --batch 32 --episodes 20
    python benchmarks/rlds_pipeline.py --device cuda         # training side on a GPU

Both sides run on this machine's CPUs unless ``--device`` says otherwise; they are measured one
after the other, not concurrently.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

try:
    from xlab.runtime import init_ray, shutdown_ray
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
    from xlab.runtime import init_ray, shutdown_ray


def write_datasets(root: str, names: list[str], episodes: int, steps: int, image: int) -> dict[str, str]:
    """Runs in a Ray TF worker: smooth synthetic frames (PNG-compressible like camera images)."""
    from xlab.rlds import Episode, write_rlds
    from xlab.rlds.layouts import smooth_images

    rng = np.random.default_rng(0)
    out = {}
    for k, name in enumerate(names):
        eps = [
            Episode(
                images=smooth_images(rng, steps, (image, image, 3)),
                states=rng.normal(size=(steps, 8)).astype(np.float32),
                actions={
                    "world_vector": rng.uniform(-1, 1, (steps, 3)),
                    "rotation_delta": rng.uniform(-1, 1, (steps, 3)),
                    "gripper_closedness_action": rng.uniform(-1, 1, (steps, 1)),
                },
                instruction=f"task {k} variant {i % 4}",
                episode_id=str(i),
            )
            for i in range(episodes)
        ]
        out[name] = str(
            write_rlds(root, eps, name=name, max_episodes_per_shard=10, embedding_backend="hash-fallback")
        )
    return out


class FiLMConvPolicy(nn.Module):
    """Small RT-1-shaped policy: per-frame conv encoder with FiLM, temporal mean, 11 x 256 logits."""

    def __init__(self, embed_dim: int = 384, width: int = 32, tokens: int = 11, vocab: int = 256):
        super().__init__()
        chans = [3, width, width * 2, width * 4]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans, chans[1:], strict=False)
        )
        self.films = nn.ModuleList(nn.Linear(embed_dim, 2 * c) for c in chans[1:])
        self.head = nn.Sequential(nn.Linear(chans[-1], 256), nn.GELU(), nn.Linear(256, tokens * vocab))
        self.tokens, self.vocab = tokens, vocab

    def forward(self, image: torch.Tensor, pad_mask: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        b, n = image.shape[:2]
        x = image.reshape(b * n, *image.shape[2:]).permute(0, 3, 1, 2).float() / 255.0
        e = embedding.repeat_interleave(n, dim=0)
        for conv, film in zip(self.convs, self.films, strict=True):
            gamma, beta = film(e).chunk(2, dim=-1)
            x = torch.relu(conv(x) * (1 + gamma[..., None, None]) + beta[..., None, None])
        feat = x.mean(dim=(2, 3)).reshape(b, n, -1)
        m = pad_mask.float()[..., None]
        feat = (feat * m).sum(1) / m.sum(1).clamp(min=1)
        return self.head(feat).reshape(b, self.tokens, self.vocab)


def time_training(batch: dict[str, torch.Tensor], device: str, steps: int, warmup: int) -> float:
    """Median seconds of forward + backward + Adam step on ``batch``."""
    model = FiLMConvPolicy(embed_dim=batch["embedding"].shape[-1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    b = {k: v.to(device) for k, v in batch.items()}
    times = []
    for i in range(warmup + steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        logits = model(b["image"], b["pad_mask"], b["embedding"])
        loss = nn.functional.cross_entropy(logits.reshape(-1, model.vocab), b["tokens"].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", type=int, default=2)
    p.add_argument("--episodes", type=int, default=40, help="episodes per dataset")
    p.add_argument("--steps", type=int, default=40, help="steps per episode")
    p.add_argument("--image", type=int, default=128, help="square frame size (stored = model size)")
    p.add_argument("--window", type=int, default=6)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--root", default=None, help="where to write the datasets (default: a temp dir)")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    init_ray(num_cpus=args.num_cpus, object_store_memory=1024**3)
    import ray

    from xlab.rlds import TF_WORKER_ENV, WindowOptions, iter_torch_window_batches, read_rlds_windows

    names = [f"bench_sim_{k}" for k in range(args.datasets)]
    tmp = tempfile.TemporaryDirectory(prefix="rlds_bench_")
    root = args.root or tmp.name
    t0 = time.perf_counter()
    writer = ray.remote(write_datasets).options(runtime_env={"env_vars": TF_WORKER_ENV}, num_cpus=1)
    dirs = ray.get(writer.remote(root, names, args.episodes, args.steps, args.image))
    n_windows = args.datasets * args.episodes * args.steps
    print(
        f"wrote {args.datasets} datasets x {args.episodes} episodes x {args.steps} steps "
        f"({args.image}px) in {time.perf_counter() - t0:.1f} s"
    )

    mixture = [(n, float(k + 1)) for k, n in enumerate(names)]  # weights 1, 2, ...

    def one_pass(epoch: int) -> tuple[float, int, dict[str, torch.Tensor]]:
        options = WindowOptions(window=args.window, image_size=(args.image, args.image), seed=0, epoch=epoch,
                                embedding_backend="hash-fallback")
        ds = read_rlds_windows(dirs, options, mixture=mixture)
        rows, first = 0, None
        t = time.perf_counter()
        for batch in iter_torch_window_batches(
            ds, batch_size=args.batch, local_shuffle_buffer_size=4 * args.batch
        ):
            rows += len(batch["tokens"])
            if first is None and len(batch["tokens"]) == args.batch:
                first = batch
        return time.perf_counter() - t, rows, first

    warm_s, _, batch = one_pass(0)
    pass_s, rows, _ = one_pass(1)
    pipeline_wps = rows / pass_s
    print(
        f"pipeline: warm-up pass {warm_s:.1f} s (starts TF workers); timed pass {rows} windows in {pass_s:.2f} s"
    )
    print(f"pipeline: {pipeline_wps:,.0f} windows/s ({n_windows} windows in the data, window {args.window})")

    torch.set_num_threads(args.num_cpus)
    step_s = time_training(
        {k: batch[k] for k in ("image", "pad_mask", "embedding", "tokens")},
        args.device,
        args.train_steps,
        warmup=2,
    )
    train_wps = args.batch / step_s
    print(
        f"training: {step_s * 1000:.0f} ms per step of {args.batch} windows on {args.device} -> {train_wps:,.0f} windows/s"
    )
    ratio = pipeline_wps / train_wps
    print(f"ratio pipeline / training = {ratio:.1f} (goal >= 5: {'met' if ratio >= 5 else 'NOT met'})")
    shutdown_ray()
    tmp.cleanup()


if __name__ == "__main__":
    main()
