"""Time one optimizer step of ADOPT against torch.optim.Adam on a ~10M-parameter model.

The model is a stack of square Linear layers; gradients are filled once with random values and
reused, so only ``optimizer.step()`` is timed: median over ``--steps`` steps after ``--warmup``
steps (which absorb ADOPT's initialising first step and any compilation). All variants run in the
same process on copies of the same parameters, interleaved step by step::

    python benchmarks/optim_step.py                        # CPU, ~10M params, 30 steps
    python benchmarks/optim_step.py --params 1e6 --steps 20 --no-compiled
    python benchmarks/optim_step.py --device cuda          # adds the real fused (CUDA) path

``adopt compiled`` is the ``fused=True`` code path (one ``torch.compile``-generated kernel per
tensor). ADOPT only allows it on CUDA; on CPU the benchmark enables it by setting the group's flag
after construction, to measure what Inductor's C++ backend makes of the same update.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    from xlab.optim import ADOPT
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
    from xlab.optim import ADOPT


def make_model(n_params: float, width: int, device: str) -> torch.nn.Module:
    """Square Linear layers (width x width + bias) until about ``n_params`` parameters."""
    layers = max(1, round(n_params / (width * width + width)))
    return torch.nn.Sequential(*(torch.nn.Linear(width, width) for _ in range(layers))).to(device)


def fresh_params(base: torch.nn.Module) -> list[torch.nn.Parameter]:
    """A copy of ``base``'s parameters, each with the same fixed random gradient."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.nn.Parameter(p.detach().clone()) for p in base.parameters()]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(p.device)
    return params


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_step(opt: torch.optim.Optimizer, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    opt.step()
    _sync(device)
    return time.perf_counter() - t0


def compiled_adopt(params, **kwargs) -> ADOPT:
    """ADOPT on the fused (torch.compile) path, also on CPU where the constructor refuses it."""
    opt = ADOPT(params, foreach=False, **kwargs)
    for group in opt.param_groups:
        group["foreach"], group["fused"] = False, True
    return opt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=10e6, help="approximate parameter count (10e6)")
    parser.add_argument("--width", type=int, default=1000, help="Linear layer width (1000)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant (30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    parser.add_argument("--no-compiled", action="store_true", help="skip the torch.compile'd ADOPT")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    base = make_model(args.params, args.width, args.device)
    n = sum(p.numel() for p in base.parameters())
    n_tensors = len(list(base.parameters()))
    is_cuda = args.device.startswith("cuda")

    variants: dict[str, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]] = {
        "torch Adam foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "torch Adam loop": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
        "adopt foreach": lambda ps: ADOPT(ps, lr=1e-3, foreach=True),
        "adopt loop": lambda ps: ADOPT(ps, lr=1e-3, foreach=False),
    }
    if is_cuda:
        variants["torch Adam fused"] = lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True)
        variants["adopt fused"] = lambda ps: ADOPT(ps, lr=1e-3, fused=True)
    elif not args.no_compiled:
        variants["adopt compiled"] = lambda ps: compiled_adopt(ps, lr=1e-3)

    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"{n / 1e6:.2f}M parameters in {n_tensors} tensors, median of {args.steps} steps "
        f"after {args.warmup} warm-up steps"
    )
    # Build everything first and warm up (ADOPT's initialising step, compilation, allocator caches).
    optimizers: dict[str, torch.optim.Optimizer] = {}
    for name, build in variants.items():
        t0 = time.perf_counter()
        optimizers[name] = opt = build(fresh_params(base))
        for _ in range(args.warmup):
            opt.step()
        _sync(args.device)
        print(f"  built and warmed up {name:<20} in {time.perf_counter() - t0:5.1f} s", flush=True)

    # Interleave the variants step by step: on a shared machine, load from other processes then
    # hits every variant alike instead of whichever happened to run at the time.
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    names = list(optimizers)
    for i in range(args.steps):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(timed_step(optimizers[name], args.device))
    results = {name: statistics.median(t) for name, t in times.items()}

    # ADOPT and Adam both read p, g, m, v and write p, m, v: 7 tensors of n elements per step.
    bytes_per_step = 7 * n * base[0].weight.element_size()
    ref = results["torch Adam foreach"]
    print(f"\n{'variant':<20} {'median ms':>9} {'min ms':>7} {'GB/s':>6} {'/Adam foreach':>14}")
    for name, t in results.items():
        fastest = min(times[name])
        print(
            f"{name:<20} {t * 1e3:9.2f} {fastest * 1e3:7.2f} {bytes_per_step / t / 1e9:6.1f} {t / ref:14.2f}"
        )
    print(f"\nADOPT foreach / Adam foreach = {results['adopt foreach'] / ref:.2f} (medians)")
    if "adopt fused" in results:
        print(
            f"ADOPT fused / Adam fused = {results['adopt fused'] / results['torch Adam fused']:.2f} (medians)"
        )


if __name__ == "__main__":
    main()
