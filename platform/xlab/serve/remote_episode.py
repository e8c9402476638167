"""Drive a registered gymnasium robot env with a policy served over the network, in a plain process (no Ray).

Each environment is one WebSocket connection to ``xlab serve`` (or any server speaking the same protocol):
every step sends the camera frame, the proprio state and the task's instruction, and executes the returned
action chunk with :class:`~xlab.policies.chunking.ChunkExecutor`. ``--parallel`` environments step side by
side, their frames sent together so the server batches them. It is the
:class:`~xlab.serve.simulator.Simulator` of ``eval_policy``, run here instead of in a Ray actor.

    python -m xlab.serve.remote_episode --server ws://127.0.0.1:8000 --env xlab/fetch-reach-v0
    python -m xlab.serve.remote_episode --server ws://gpu-box:8000 --api-key-file ~/.xlab/key \\
        --env xlab/sawyer-reach-v0 --episodes 10 --parallel 5 --execution open-loop
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("USE_TF", "0")


def run_remote_episodes(
    server: str,
    env_id: str,
    episodes: int = 1,
    *,
    seed: int = 0,
    api_key: str | None = None,
    parallel: int = 1,
    execution: str = "ensemble",
    max_steps: int = 0,
    image_size: int = 0,
    mode: str = "argmax",
) -> list[Any]:
    """``episodes`` episodes of ``env_id`` against the endpoint at ``server``; one EpisodeResult each.

    Seeds are ``eval_policy``'s (``seed*100000 + i`` for the first task), so the same ``seed`` gives the same
    initial states as ``xlab run eval_policy --eval.seed SEED``.
    """
    import robots
    from xlab.serve.evaluate import make_specs
    from xlab.serve.simulator import Simulator

    robots.get_task(env_id)  # an unknown id fails in one line, listing the registered ones
    sim = Simulator(
        image_size=image_size, name="remote", execution=execution, server_url=server, api_key=api_key or ""
    )
    specs = make_specs([env_id], episodes, "policy", seed=seed, max_steps=max_steps, mode=mode)
    results = []
    try:
        for i in range(0, len(specs), max(1, parallel)):
            results += sim.run_episodes(specs[i : i + parallel])
    finally:
        sim.close()
    return results


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from xlab.errors import XlabError

    ap = argparse.ArgumentParser(
        prog="python -m xlab.serve.remote_episode", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--server", required=True, help="ws://HOST:PORT of `xlab serve`")
    ap.add_argument("--env", required=True, help="a registered env id, e.g. xlab/fetch-reach-v0")
    ap.add_argument("--episodes", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=1, help="environments stepped side by side")
    ap.add_argument(
        "--seed", type=int, default=0, help="episode i gets seed*100000 + i (eval_policy's seeds)"
    )
    ap.add_argument("--api-key-file", help="file holding the server's API key")
    ap.add_argument("--execution", default="ensemble", choices=["ensemble", "open-loop", "first"])
    ap.add_argument("--max-steps", type=int, default=0, help="horizon override (0: the task's)")
    ap.add_argument(
        "--image-size", type=int, default=0, help="camera size (0: the policy's; the server resizes)"
    )
    ap.add_argument("--mode", default="argmax", choices=["argmax", "sample"])
    args = ap.parse_args(argv)
    try:
        key = None
        if args.api_key_file:
            from xlab.serve.command import read_api_key

            key = read_api_key(args.api_key_file)
        if args.episodes < 1 or args.parallel < 1:
            raise XlabError("--episodes and --parallel must be >= 1")
        results = run_remote_episodes(
            args.server,
            args.env,
            args.episodes,
            seed=args.seed,
            api_key=key,
            parallel=args.parallel,
            execution=args.execution,
            max_steps=args.max_steps,
            image_size=args.image_size,
            mode=args.mode,
        )
    except XlabError as e:
        print(f"remote_episode: error: {e}", file=sys.stderr)
        return 2
    for r in results:
        lat = np.percentile(r.latencies_ms, [50, 99]) if r.latencies_ms else [0.0, 0.0]
        print(
            f"[remote_episode] {r.episode_id} seed {r.seed}: {'success' if r.success else 'fail'} in {r.steps} "
            f"steps, {r.seconds:.1f} s, action latency p50 {lat[0]:.1f} / p99 {lat[1]:.1f} ms"
            + (f", {r.server_retries} reconnect(s)" if r.server_retries else "")
        )
    wins = sum(r.success for r in results)
    print(f"[remote_episode] {args.env}: {wins}/{len(results)} episodes succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
