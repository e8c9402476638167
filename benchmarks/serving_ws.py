"""Network serving throughput: N WebSocket clients against `xlab serve`'s stack vs the in-process forward pass.

For each N (default 1, 4, 16, 64), in this run:

* **ideal**: the forward-pass-bound rate of the same policy in this process: one batched ``act_chunk`` of N
  windows at a time, ``N / forward time`` requests/s (one torch thread, as the replica);
* **network**: N WebSocket connections (asyncio, in ``--client-procs`` separate processes, never Ray actors)
  each sending one frame and waiting for its reply, as fast as they can, for ``--seconds``, to one batching
  replica with a WebSocket front (:mod:`xlab.serve.gateway`, what `xlab serve` runs): through Serve's HTTP
  proxy (``--ingress proxy``) or straight to the replica's own server (``--ingress direct``, Serve's direct
  ingress, `xlab serve`'s default for one replica). Direct ingress is set before Ray starts: one per run.

Printed per N: requests/s of both and their ratio (goal: >= 0.8 at N = 16), client round-trip p50/p99, the
replica's mean batch (goal: >= 0.75 N), and each request's time split into transport (client round trip
minus the replica's receipt-to-reply time: msgpack, the socket, and with the proxy its hop to the replica),
gateway (decode, resize, history, batch assembly: the replica's time minus the next two), queue (waiting
for the batch to fill) and inference (the batch's forward pass).

    python benchmarks/serving_ws.py --ingress direct        # rt1x-tiny at 48 px, untrained
    python benchmarks/serving_ws.py --ingress proxy
    python benchmarks/serving_ws.py --ingress direct --pin-clients  # clients on the last CPU, Ray on the rest
    python benchmarks/serving_ws.py --n 16 --seconds 20 --policy models:/rt1x-policy@latest-train

On a shared 2-core machine the clients, the proxy, the gateway and the replica compete for the same two
cores the ideal loop has to itself: figures are noisy and the ratio is pessimistic for a real deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROMPT = "move the gripper to the red target"


def ideal(policy, n: int, seconds: float) -> dict[str, float]:
    """Forward-pass-bound requests/s: batched act_chunk of n windows, repeated for ``seconds``."""
    from xlab.rlds.text_embed import embed_instructions

    c = policy.config
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 255, (n, c.history, c.image_size, c.image_size, 3), dtype=np.uint8)
    emb = np.repeat(embed_instructions([PROMPT]), n, axis=0)
    state = np.zeros((n, c.history, c.state_dim), np.float32) if c.state_dim else None
    policy.act_chunk(windows, emb, state=state)  # warm-up
    times = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(times) < 5:
        t = time.perf_counter()
        policy.act_chunk(windows, emb, state=state)
        times.append(time.perf_counter() - t)
    return {"req_per_s": n / float(np.mean(times)), "forward_ms": 1000 * float(np.median(times))}


async def _client_loop(
    url: str, key: str, image_size: int, state_dim: int, until: float, warm: float, seed: int, out: list
) -> None:
    from websockets.asyncio.client import connect

    from xlab.serve import protocol

    rng = np.random.default_rng(seed)
    headers = {"Authorization": f"Api-Key {key}"} if key else None
    async with connect(url, additional_headers=headers, compression=None, max_size=None) as ws:
        protocol.unpackb(await ws.recv())  # metadata
        first = True
        while time.perf_counter() < until:
            obs = {
                "observation/image": rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8),
                "prompt": PROMPT,
            }
            if state_dim:
                obs["observation/state"] = np.zeros(state_dim, np.float32)
            if first:
                obs["reset"], first = True, False
            t = time.perf_counter()
            await ws.send(protocol.packb(obs))
            reply = protocol.unpackb(await ws.recv())
            done = time.perf_counter()
            if t >= warm:
                st = reply["server_timing"]
                out.append(((done - t) * 1000, st["total_ms"], st["queue_ms"], st["inference_ms"]))


def _client_proc(
    url: str,
    key: str,
    image_size: int,
    state_dim: int,
    conns: int,
    start: float,
    warmup: float,
    seconds: float,
    seed: int,
    queue: mp.Queue,
    cpus: set[int] | None = None,
) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)

    async def run() -> list:
        out: list = []
        until, warm = start + warmup + seconds, start + warmup
        await asyncio.gather(
            *[
                _client_loop(url, key, image_size, state_dim, until, warm, seed * 1000 + i, out)
                for i in range(conns)
            ]
        )
        return out

    queue.put(asyncio.run(run()))


def network(
    url: str, key: str, meta: dict, n: int, procs: int, seconds: float, warmup: float, gateway,
    client_cpus: set[int] | None = None,
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = max(1, min(procs, n))
    start = time.perf_counter() + 3.0  # spawn and connect before the clock starts
    gateway.stats.remote(reset=True).result()
    workers = [
        ctx.Process(
            target=_client_proc,
            args=(
                url,
                key,
                meta["image_size"],
                meta["state_dim"],
                n // procs + (i < n % procs),
                start,
                warmup,
                seconds,
                i,
                queue,
                client_cpus,
            ),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    rows = [r for _ in workers for r in queue.get(timeout=seconds + warmup + 300)]
    for w in workers:
        w.join()
    stats = gateway.stats.remote().result()
    a = np.array(rows)
    rtt, total, queue_ms, inf = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    return {
        "req_per_s": len(a) / seconds,
        "p50_ms": float(np.percentile(rtt, 50)),
        "p99_ms": float(np.percentile(rtt, 99)),
        "mean_batch": stats["mean_batch"],
        "transport_ms": float(np.mean(rtt - total)),
        "gateway_ms": float(np.mean(total - queue_ms - inf)),
        "queue_ms": float(np.mean(queue_ms)),
        "inference_ms": float(np.mean(inf)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured time per N")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument(
        "--policy", default="", help="policy reference (default: an untrained rt1x-tiny at 48 px)"
    )
    ap.add_argument("--batch-wait-ms", type=float, default=20.0)
    ap.add_argument("--client-procs", type=int, default=2, help="processes the N connections are spread over")
    ap.add_argument("--pin-clients", action="store_true",
                    help="clients on the last CPU, Ray (replica, proxy) and the ideal loop on the others: a "
                         "stand-in for clients on their own machines")
    ap.add_argument("--ingress", choices=("proxy", "direct"), default="proxy",
                    help="clients reach the replica through Serve's proxy, or directly (`xlab serve --ingress direct`)")
    args = ap.parse_args()

    import torch
    from ray import serve
    from serving import bench_policy  # the sibling benchmark (this script's directory is on sys.path)

    from xlab.runtime import init_ray, shutdown_ray
    from xlab.serve.gateway import loopback_proxy, start_gateway

    torch.set_num_threads(1)  # like the replica: one thread each, so both sides compute alike
    policy, policy_ref = bench_policy(args.policy)
    direct_port = 0
    if args.ingress == "direct":  # a cluster-wide Serve setting: before Ray starts
        from xlab.runtime import free_port
        from xlab.serve.gateway import direct_ingress_env

        direct_port = free_port()
        os.environ.update(direct_ingress_env(direct_port, replicas=1))
    client_cpus = None
    if args.pin_clients:  # before Ray starts: its processes inherit this process's CPUs
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin-clients needs at least 2 CPUs")
        client_cpus = {cpus[-1]}
        os.sched_setaffinity(0, set(cpus[:-1]))
    init_ray(num_cpus=os.cpu_count() or 2, include_dashboard=False, object_store_memory=512 * 1024**2)
    rows = []
    key = "bench-key-0123456789abcdef"
    try:
        url = loopback_proxy()
        if direct_port:
            url = f"ws://127.0.0.1:{direct_port}"
        meta = start_gateway(
            policy_ref,
            name="bench-ws",
            route_prefix="/",
            api_key=key,
            max_batch_size=max(args.n),
            batch_wait_timeout_s=args.batch_wait_ms / 1000,
            num_cpus=0.5,
            threads=1,
        )
        gateway = serve.get_app_handle("bench-ws")
        for n in args.n:
            i = ideal(policy, n, min(args.seconds, 5.0))
            s = network(url, key, meta, n, args.client_procs, args.seconds, args.warmup, gateway, client_cpus)
            rows.append((n, i, s))
            print(
                f"N={n:3d}  ideal {i['req_per_s']:7.1f} req/s (forward {i['forward_ms']:.1f} ms)  network "
                f"{s['req_per_s']:7.1f} req/s  ratio {s['req_per_s'] / i['req_per_s']:.2f}  p50 {s['p50_ms']:.1f} / "
                f"p99 {s['p99_ms']:.1f} ms  mean batch {s['mean_batch']:.1f} ({s['mean_batch'] / n:.2f} N)  split ms: "
                f"transport {s['transport_ms']:.1f} gateway {s['gateway_ms']:.1f} queue {s['queue_ms']:.1f} "
                f"inference {s['inference_ms']:.1f}",
                flush=True,
            )
    finally:
        serve.shutdown()
        shutdown_ray()
    print(
        f"\n{policy_ref if args.policy else 'untrained rt1x-tiny'}, {meta['image_size']} px, history "
        f"{meta['history']}, {os.cpu_count()} CPUs, batch wait {args.batch_wait_ms:g} ms, {args.seconds:g} s per N, "
        f"clients in {args.client_procs} process(es){' pinned to the last CPU' if client_cpus else ''}, "
        f"{args.ingress} ingress"
    )
    print(
        "| N | ideal req/s | network req/s | network / ideal | p50 ms | p99 ms | mean batch | batch / N | "
        "transport ms | gateway ms | queue ms | inference ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, i, s in rows:
        print(
            f"| {n} | {i['req_per_s']:.0f} | {s['req_per_s']:.0f} | {s['req_per_s'] / i['req_per_s']:.2f} | "
            f"{s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['mean_batch']:.1f} | {s['mean_batch'] / n:.2f} | "
            f"{s['transport_ms']:.1f} | {s['gateway_ms']:.1f} | {s['queue_ms']:.1f} | {s['inference_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
