"""Time one optimizer step of ADOPT against torch.optim.Adam, path by path, in one process.

For each model size and thread count, each ADOPT path is paired with the same path of
``torch.optim.Adam`` (foreach with foreach, loop with loop; fused with fused on CUDA). The pair runs
on copies of the same parameters and shares one fixed random gradient per tensor (neither optimizer
modifies it), so only ``optimizer.step()`` is timed. Steps alternate between the two (the order
flips every step), so load from other processes on a shared machine hits both alike; a row reports
the median over ``--steps`` steps of each (default: 1e8 / parameters, 15 to 101) after
``--warmup`` untimed steps (which absorb ADOPT's initialising first step and any compilation), the
ratio of the medians and a verdict against ``--goal``::

    python benchmarks/optim_step.py                                   # 1M, 10M, 100M x 1, 2 threads
    python benchmarks/optim_step.py --sizes 1e6,10e6 --threads 1 --steps 7   # quick look
    python benchmarks/optim_step.py --device cuda --threads 0          # adds the fused (CUDA) pair

``--compiled`` adds, on CPU, ADOPT's ``fused=True`` code path (the ``torch.compile``d update, which
ADOPT itself allows on CUDA only) against Adam foreach, to see what Inductor's C++ backend makes of it.
The models are square Linear layers (weight ``width x width`` and bias), as many as fit the size.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    from xlab.optim import ADOPT, adopt_cpu
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
    from xlab.optim import ADOPT, adopt_cpu

Build = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def compiled_adopt(params: list[torch.nn.Parameter]) -> ADOPT:
    """ADOPT on the fused (torch.compile) path, also on CPU where the constructor refuses it."""
    opt = ADOPT(params, lr=1e-3, foreach=False)
    for group in opt.param_groups:
        group["foreach"], group["fused"] = False, True
    return opt


def pairs(device: str, compiled: bool) -> dict[str, tuple[Build, Build]]:
    """Path name -> (Adam baseline, ADOPT candidate)."""
    out: dict[str, tuple[Build, Build]] = {
        "foreach": (
            lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
            lambda ps: ADOPT(ps, lr=1e-3, foreach=True),
        ),
        "loop": (
            lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
            lambda ps: ADOPT(ps, lr=1e-3, foreach=False),
        ),
    }
    if device.startswith("cuda"):
        out["fused"] = (
            lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
            lambda ps: ADOPT(ps, lr=1e-3, fused=True),
        )
    elif compiled:
        out["compiled"] = (out["foreach"][0], compiled_adopt)
    return out


def make_tensors(n_params: float, width: int, device: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Values and gradients of ``width x width`` weights and ``width`` biases, about ``n_params`` in all."""
    layers = max(1, round(n_params / (width * width + width)))
    gen = torch.Generator(device="cpu").manual_seed(0)
    shapes = [s for _ in range(layers) for s in ((width, width), (width,))]
    values = [(torch.rand(s, generator=gen) - 0.5).to(device) for s in shapes]
    grads = [torch.randn(s, generator=gen).to(device) for s in shapes]
    return values, grads


def build(make: Build, values: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(v.clone()) for v in values]
    for p, g in zip(params, grads, strict=True):
        p.grad = g  # shared by the pair: optimizers read gradients, never write them
    return make(params)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_step(opt: torch.optim.Optimizer, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    opt.step()
    _sync(device)
    return time.perf_counter() - t0


def measure(
    base: torch.optim.Optimizer, cand: torch.optim.Optimizer, steps: int, warmup: int, device: str
) -> tuple[list[float], list[float]]:
    """Per-step times of baseline and candidate, alternating (the first of each step flips)."""
    for _ in range(warmup):
        base.step()
        cand.step()
    _sync(device)
    t_base: list[float] = []
    t_cand: list[float] = []
    for i in range(steps):
        if i % 2 == 0:
            t_base.append(timed_step(base, device))
            t_cand.append(timed_step(cand, device))
        else:
            t_cand.append(timed_step(cand, device))
            t_base.append(timed_step(base, device))
    return t_base, t_cand


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,10e6,100e6", help="parameter counts (1e6,10e6,100e6)")
    parser.add_argument("--threads", default="1,2", help="torch CPU thread counts; 0: torch's default (1,2)")
    parser.add_argument("--paths", default="", help="subset of foreach,loop[,fused,compiled] (all)")
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="timed steps per optimizer (0: 1e8/params, at least 15, at most 101)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first, >= 2 (2)")
    parser.add_argument("--width", type=int, default=1000, help="Linear layer width (1000)")
    parser.add_argument("--goal", type=float, default=1.05, help="ADOPT / Adam ratio to meet (1.05)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    parser.add_argument("--compiled", action="store_true", help="add the torch.compile'd ADOPT on CPU")
    parser.add_argument("--block", type=int, default=0, help="override adopt_cpu.BLOCK (tuning)")
    args = parser.parse_args(argv)
    if args.block:
        adopt_cpu.BLOCK = args.block
    chosen = pairs(args.device, args.compiled)
    if args.paths:
        chosen = {k: v for k, v in chosen.items() if k in args.paths.split(",")}

    print(
        f"torch {torch.__version__}, device {args.device}, median of {args.steps or '15-101'} alternating "
        f"steps after {max(2, args.warmup)} warm-up steps, goal ADOPT/Adam <= {args.goal}, "
        f"ADOPT CPU block {adopt_cpu.BLOCK} elements, {os.cpu_count()} CPUs"
    )
    # The last column is the 1-minute load average after the row: above the core count, other processes
    # compete for the cores, and with 2 threads every op can wait for its second thread's turn.
    header = (
        f"{'params':>7} {'threads':>7} {'path':<8} {'steps':>5} {'Adam ms':>9} {'ADOPT ms':>9} {'ratio':>6}  "
        f"{'verdict':<15} {'load':>5}"
    )
    print(header, flush=True)
    rows, misses = 0, 0
    for size in _floats(args.sizes):
        values, grads = make_tensors(size, args.width, args.device)
        n = sum(v.numel() for v in values)
        steps = args.steps or max(15, min(101, round(1e8 / n)))
        for threads in [int(t) for t in _floats(args.threads)]:
            if threads:
                torch.set_num_threads(threads)
            for path, (make_base, make_cand) in chosen.items():
                base, cand = build(make_base, values, grads), build(make_cand, values, grads)
                t_base, t_cand = measure(base, cand, steps, max(2, args.warmup), args.device)
                del base, cand
                gc.collect()
                mb, mc = statistics.median(t_base), statistics.median(t_cand)
                ok = mc / mb <= args.goal
                rows, misses = rows + 1, misses + (not ok)
                verdict = f"{'meets' if ok else 'MISSES'} <= {args.goal}"
                print(
                    f"{n / 1e6:6.1f}M {torch.get_num_threads():>7} {path:<8} {steps:>5} {mb * 1e3:9.2f} {mc * 1e3:9.2f} "
                    f"{mc / mb:6.2f}  {verdict:<15} {os.getloadavg()[0]:5.1f}",
                    flush=True,
                )
        del values, grads
        gc.collect()
    print(f"{rows - misses} of {rows} rows meet the goal")  # exit status 0 either way, for `make bench`


if __name__ == "__main__":
    main()
