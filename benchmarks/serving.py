"""Serving throughput: N simulated envs on simulator actors against one batching policy replica vs the in-process ideal.

For each N (default 1, 4, 16) the same policy drives N environments of one task for the same
number of env steps, two ways, in this run:

* **ideal**: one process steps the N environments in lockstep and gets all N actions from one
  batched forward pass per step (:class:`~xlab.policies.PolicySession`): no IPC, no queueing;
* **served**: :class:`~xlab.serve.simulator.Simulator` actors ask one
  :class:`~xlab.serve.server.PolicyServer` replica (Ray Serve, ``@serve.batch``) for actions, each
  actor one request per step for all of its envs. By default there is one actor per CPU, each stepping
  N / CPUs envs (``--envs-per-sim 0``): one process per core is what a simulator fleet should be. An
  actor per env (``--envs-per-sim 1``) measured 0.33-0.35 of ideal at N = 16 on 2 cores, against
  0.88-1.00 for 2 actors of 8 envs: 16 processes on 2 cores spent most of each step waiting for a core.

Printed per N: env steps/s of both, their ratio (goal: >= 0.8 at N = 16), p50/p99 action latency
(served: request round trip seen by a simulator; ideal: the batched forward pass) and the server's
mean batch size (goal: >= 0.75 N). Episodes have a fixed horizon (``--steps``) and an untrained
policy (it rarely succeeds, so episodes rarely end early). The served figure excludes actor start-up:
every simulator runs one warm-up episode first.

    python benchmarks/serving.py                        # N = 1, 4, 16, rt1x-tiny at 48 px, fetch-reach
    python benchmarks/serving.py --n 16 --envs-per-sim 1  # 16 envs on 16 actors, one env each
    python benchmarks/serving.py --n 16 --steps 100 --policy models:/rt1x-policy@latest-train

On a 2-core machine the served path spreads its simulators over both cores while the ideal loop uses
one process, so the ratio can exceed 1; on a cluster the simulators get their own cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("USE_TF", "0")


def ideal(policy, env_id: str, n: int, steps: int, episodes: int, image_size: int) -> dict[str, float]:
    """N envs in lockstep in this process, one batched forward pass per step."""
    import gymnasium

    import robots
    from xlab.policies import PolicySession
    from xlab.rlds.text_embed import embed_instructions

    envs = [gymnasium.make(env_id, image_size=image_size, max_episode_steps=steps) for _ in range(n)]
    emb = np.repeat(embed_instructions([robots.get_task(env_id).instruction]), n, axis=0)
    for env in envs:  # first render creates the GL context: not timed
        env.reset(seed=0)
    forward_ms, env_steps = [], 0
    t0 = time.perf_counter()
    for ep in range(episodes):
        obs = [env.reset(seed=1000 * ep + i)[0] for i, env in enumerate(envs)]
        session = PolicySession(policy, n)
        done = np.zeros(n, bool)
        while not done.all():
            t = time.perf_counter()
            actions = session.step(np.stack([o["image"] for o in obs]), emb)
            forward_ms.append((time.perf_counter() - t) * 1000)
            for i, env in enumerate(envs):
                if done[i]:
                    continue
                obs[i], _, term, trunc, _ = env.step(env.unwrapped.embodiment.to_native({k: v[i] for k, v in actions.items()}))
                env_steps += 1
                done[i] = term or trunc
    seconds = time.perf_counter() - t0
    for env in envs:
        env.close()
    return {"steps_per_s": env_steps / seconds, "p50_ms": float(np.percentile(forward_ms, 50)),
            "p99_ms": float(np.percentile(forward_ms, 99)), "env_steps": env_steps}


def served(policy_ref: str, env_id: str, n: int, steps: int, episodes: int, wait_ms: float,
           envs_per_sim: int = 1) -> dict[str, float]:
    """N environments on ceil(N / envs_per_sim) simulator actors; each actor sends one request per step for its envs."""
    from ray import serve

    from xlab.serve import (
        SimulatorPool,
        make_specs,
        run_episodes,
        shutdown_policy_server,
        start_policy_server,
    )

    app = f"bench-{n}"
    actors = -(-n // envs_per_sim)
    start_policy_server(policy_ref, name=app, max_batch_size=actors, batch_wait_timeout_s=wait_ms / 1000,
                        num_cpus=0.5, threads=1)
    pool = SimulatorPool(actors, server_app=app, num_cpus=1.5 / actors)
    try:
        # Warm-up (actor start-up, env creation) is not timed.
        run_episodes(pool, make_specs([env_id], n, "policy", max_steps=3), envs_per_simulator=envs_per_sim)
        handle = serve.get_app_handle(app)
        handle.stats.remote(reset=True).result()
        specs = [dataclasses.replace(s, episode_id=f"{s.episode_id}/round{e}")  # ids must be unique per run
                 for e in range(episodes) for s in make_specs([env_id], n, "policy", seed=e + 1, max_steps=steps)]
        results, stats = run_episodes(pool, specs, envs_per_simulator=envs_per_sim)
        server = handle.stats.remote().result()
    finally:
        pool.shutdown()
        shutdown_policy_server(app)
    lat = [x for r in results for x in r.latencies_ms]
    server_ms = np.array([t for r in results for t in r.server_ms])
    busy = [r.seconds for r in results]
    return {"steps_per_s": stats.steps_per_s, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "env_steps": stats.env_steps, "actors": actors,
            "mean_batch": server["rows"] / max(server["batches"], 1),  # environments per forward pass
            # Where a simulator's step goes: its request round trip = transport (Serve handle, pickling, the
            # hop, the replica's asyncio) + queue (waiting for the batch) + inference; the rest is the env.
            "rtt_ms": float(np.mean(lat)), "queue_ms": float(server_ms[:, 0].mean()),
            "inference_ms": float(server_ms[:, 1].mean()),
            "step_ms": 1000 * float(np.mean(busy)) / max(1, stats.env_steps / len(results))}


def envs_per_cpu(n: int, cpus: int) -> int:
    """Envs per simulator actor for one actor per CPU (fewer actors than CPUs when N is smaller)."""
    return -(-n // min(n, cpus))


def bench_policy(ref: str):
    """``(policy, reference)``: the policy at ``ref``, or an untrained rt1x-tiny at 48 px saved to a temp dir."""
    import torch

    from xlab.policies import build_policy
    from xlab.serve import load_any_policy

    if ref:
        return load_any_policy(ref).eval(), ref
    torch.manual_seed(0)
    policy = build_policy("rt1x-tiny", image_size=48).eval()
    return policy, policy.save_pretrained(f"{tempfile.mkdtemp()}/policy").as_posix()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--env-id", default="xlab/fetch-reach-v0")
    ap.add_argument("--steps", type=int, default=50, help="episode horizon")
    ap.add_argument("--episodes", type=int, default=2, help="episodes per environment")
    ap.add_argument("--policy", default="", help="policy reference (default: an untrained rt1x-tiny at 48 px)")
    ap.add_argument("--wait-ms", type=float, default=50.0, help="server batch wait timeout")
    ap.add_argument("--envs-per-sim", type=int, default=0,
                    help="environments per simulator actor (0: N / CPUs, one actor per CPU)")
    args = ap.parse_args()

    import torch

    from xlab.runtime import init_ray, shutdown_ray

    torch.set_num_threads(1)  # like the server replica: one thread each, so both sides compute alike
    policy, policy_ref = bench_policy(args.policy)
    image_size = int(policy.config.image_size)
    init_ray(num_cpus=os.cpu_count() or 2, include_dashboard=False, object_store_memory=512 * 1024**2)
    rows = []
    try:
        for n in args.n:
            i = ideal(policy, args.env_id, n, args.steps, args.episodes, image_size)
            per_sim = args.envs_per_sim or envs_per_cpu(n, os.cpu_count() or 2)
            s = served(policy_ref, args.env_id, n, args.steps, args.episodes, args.wait_ms, per_sim)
            rows.append((n, i, s))
            print(f"N={n:3d} ({s['actors']} x {per_sim})  ideal {i['steps_per_s']:7.1f} steps/s (forward p50 {i['p50_ms']:.1f} ms)   "
                  f"served {s['steps_per_s']:7.1f} steps/s  ratio {s['steps_per_s'] / i['steps_per_s']:.2f}  "
                  f"latency p50 {s['p50_ms']:.1f} / p99 {s['p99_ms']:.1f} ms  mean batch {s['mean_batch']:.2f} "
                  f"({s['mean_batch'] / n:.2f} N); per step {s['step_ms']:.1f} ms = request {s['rtt_ms']:.1f} "
                  f"(transport {s['rtt_ms'] - s['queue_ms'] - s['inference_ms']:.1f}, queue {s['queue_ms']:.1f}, "
                  f"inference {s['inference_ms']:.1f}) + env {s['step_ms'] - s['rtt_ms']:.1f}", flush=True)
    finally:
        shutdown_ray()
    print(f"\n{args.env_id}, {args.steps}-step episodes x {args.episodes} per env, {image_size} px, "
          f"{os.cpu_count()} CPUs, server batch wait {args.wait_ms:.0f} ms, "
          f"{args.envs_per_sim or 'N / CPUs'} env(s) per simulator actor")
    print("| N | ideal steps/s | served steps/s | served / ideal | p50 latency ms | p99 latency ms | mean batch | batch / N |")
    print("|---|---|---|---|---|---|---|---|")
    for n, i, s in rows:
        print(f"| {n} | {i['steps_per_s']:.0f} | {s['steps_per_s']:.0f} | {s['steps_per_s'] / i['steps_per_s']:.2f} | "
              f"{s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['mean_batch']:.1f} | {s['mean_batch'] / n:.2f} |")


if __name__ == "__main__":
    main()
