"""Environment steps per second of the xlab robot envs, with and without rendering, as a table.

For each embodiment (one representative task each by default) it times, in this process:

* ``physics``: ``env.step`` with ``image_size=None`` (no OpenGL at all);
* ``render NxN``: ``env.step`` with the image observation (one frame rendered per step);
* ``raw frames NxN``: ``FastRenderer.render`` alone on a fixed state;
* ``default settings``: raw frames with MuJoCo's defaults (4x multisampling, shadows, reflections,
  skybox), which ``FastRenderer`` turns off; a handful of frames, it is slow.

Random actions, episodes reset when they end (reset time included); each figure is the best of
``--repeats`` timed blocks, since other processes on a shared machine only ever slow it down. Run it
on one core to get per-worker figures, e.g.::

    taskset -c 1 python benchmarks/env_steps.py
    python benchmarks/env_steps.py --steps 500 --image-size 64 --env-ids xlab/fetch-push-v0

Mesa's llvmpipe rasteriser starts one thread per core (``LP_NUM_THREADS`` caps it); the table
header says which OpenGL backend and how many cores were available.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium
import numpy as np

import robots
import robots.render

DEFAULT_ENV_IDS = ["xlab/sawyer-pick-place-v0", "xlab/fetch-pick-place-v0"]


def steps_per_second(env_id: str, steps: int, image_size: int | None, repeats: int) -> float:
    env = gymnasium.make(env_id, image_size=image_size)
    env.action_space.seed(0)
    env.reset(seed=0)
    env.step(env.action_space.sample())  # first render creates the OpenGL context: not timed
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        rates.append(steps / (time.perf_counter() - start))
    env.close()
    return max(rates)


def raw_frames_per_second(env_id: str, frames: int, image_size: int, fast: bool, repeats: int) -> float:
    env = gymnasium.make(env_id, image_size=None)
    env.reset(seed=0)
    unwrapped = env.unwrapped
    if fast:
        renderer = robots.render.FastRenderer(unwrapped.model, image_size, image_size, unwrapped.camera)
        render = lambda: renderer.render(unwrapped.data)  # noqa: E731
        close = renderer.close
    else:
        import mujoco

        plain = mujoco.Renderer(unwrapped.model, image_size, image_size)
        camera = robots.render.FastRenderer.free_camera(unwrapped.camera)

        def render() -> np.ndarray:
            plain.update_scene(unwrapped.data, camera=camera)
            return plain.render()

        close = plain.close
    render()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(frames):
            render()
        rates.append(frames / (time.perf_counter() - start))
    close()
    env.close()
    return max(rates)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-ids", nargs="+", default=DEFAULT_ENV_IDS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per figure; the best is shown")
    parser.add_argument(
        "--default-frames", type=int, default=5, help="frames timed with MuJoCo's defaults (0: skip)"
    )
    args = parser.parse_args(argv)
    n = args.image_size
    print(
        f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}  cores available={len(os.sched_getaffinity(0))}  "
        f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'unset')}"
    )
    print(
        f"{'env id':30s} {'physics':>10s} {f'render {n}x{n}':>14s} {f'raw frames {n}x{n}':>18s} {'default settings':>17s}"
    )
    for env_id in args.env_ids:
        physics = steps_per_second(env_id, args.steps, None, args.repeats)
        rendered = steps_per_second(env_id, args.steps, n, args.repeats)
        raw = raw_frames_per_second(env_id, args.steps, n, True, args.repeats)
        default = (
            raw_frames_per_second(env_id, args.default_frames, n, False, 1)
            if args.default_frames
            else float("nan")
        )
        print(f"{env_id:30s} {physics:10.0f} {rendered:14.0f} {raw:18.0f} {default:17.1f}", flush=True)
    print("units: env steps/s (physics, render) and frames/s (raw, default settings)")


if __name__ == "__main__":
    main()
