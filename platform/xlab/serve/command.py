"""``xlab serve POLICY_REF``: serve a policy to robot clients over the network until Ctrl-C or SIGTERM.

Starts (or joins, with ``RAY_ADDRESS``) a Ray cluster and ``--replicas`` batching policy replicas with a
WebSocket front (:mod:`xlab.serve.gateway`) at ``/``; prints the endpoint and blocks. How clients reach the
replicas (``--ingress``):

* ``direct``: each replica serves its own socket (Serve's direct ingress), at ``--port``, ``--port + 1``, ...:
  no proxy hop: 1.5x the requests/s of ``proxy`` at 16 clients on 2 quiet cores, 2.5x under load
  (docs/serving.md). It is a setting of the whole Ray instance, so only on one this command starts.
* ``proxy``: Serve's HTTP proxy at ``--host:--port`` relays every message to a replica and spreads connections
  over the replicas; works on any cluster.
* ``auto`` (default): ``direct`` for one replica on a Ray instance of its own, else ``proxy``.

Any openpi-protocol client
(``openpi_client.websocket_client_policy.WebsocketClientPolicy``, :class:`xlab.serve.client.PolicyClient`,
``python -m xlab.serve.remote_episode``) can then drive a robot with it.

    xlab serve models:/rt1x-policy@latest-train --port 8000
    xlab serve runs:/<run id>/policy --host 0.0.0.0 --api-key-file ~/.xlab/key --replicas 2 --num-gpus 1

Binding to anything but loopback needs ``--api-key-file`` (clients send ``Authorization: Api-Key KEY``);
without one the command refuses to start.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

from xlab.errors import XlabError
from xlab.runtime import free_port, is_loopback

APP = "xlab-serve"
INGRESS = ("auto", "direct", "proxy")


def read_api_key(path: str | Path) -> str:
    """The key in ``path`` (its first line, stripped); a one-line XlabError if missing or empty."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise XlabError(f"--api-key-file {path}: no such file (write the key, one line, into it)")
    key = p.read_text().strip().splitlines()[0].strip() if p.read_text().strip() else ""
    if len(key) < 16:
        raise XlabError(
            f"--api-key-file {path}: the key must be at least 16 characters (e.g. `openssl rand -hex 32`)"
        )
    return key


def check_bind(host: str, port: int, api_key: str, ports: int = 1) -> None:
    """Refuse a public bind without a key, and a port that is taken (of ``port`` and the ``ports - 1`` after
    it), before anything starts."""
    if not is_loopback(host) and not api_key:
        raise XlabError(
            f"--host {host} exposes the policy beyond this machine: pass --api-key-file FILE "
            "(clients then send 'Authorization: Api-Key KEY'), or bind to 127.0.0.1"
        )
    if not (1 <= port and port + ports - 1 <= 65535):
        raise XlabError(f"--port must be 1..{65536 - ports}, got {port}")
    for p in range(port, port + ports):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, p))
            except OSError as e:
                extra = f" (replica {p - port + 1} of {ports} listens there)" if ports > 1 else ""
                raise XlabError(
                    f"cannot listen on {host}:{p}{extra} ({e.strerror or e}); pick another --port"
                ) from None


def choose_ingress(ingress: str, replicas: int, joined: bool) -> str:
    """``direct`` or ``proxy`` for ``--ingress`` (see the module docstring); a one-line error if impossible."""
    if ingress not in INGRESS:
        raise XlabError(f"--ingress must be one of {', '.join(INGRESS)}, got {ingress!r}")
    if ingress == "auto":
        return "direct" if replicas == 1 and not joined else "proxy"
    if ingress == "direct" and joined:
        raise XlabError(
            "--ingress direct is a setting of the whole Ray cluster, so it works on the Ray instance `xlab serve` "
            "starts itself: unset RAY_ADDRESS, or use --ingress proxy on this cluster"
        )
    return ingress


def serve_policy(
    policy_ref: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    api_key_file: str | None = None,
    max_batch_size: int = 64,
    batch_wait_ms: float = 20.0,
    threads: int = 0,
    stats_every_s: float = 60.0,
    ingress: str = "auto",
) -> None:
    """Serve ``policy_ref`` at ``ws://host:port`` until SIGINT/SIGTERM, then shut Serve (and a local Ray) down."""
    api_key = read_api_key(api_key_file) if api_key_file else ""
    if replicas < 1 or num_gpus < 0 or max_batch_size < 1 or batch_wait_ms < 0:
        raise XlabError("--replicas and --max-batch-size must be >= 1, --num-gpus and --batch-wait-ms >= 0")
    joined = os.environ.get("RAY_ADDRESS", "") not in ("", "local")
    ingress = choose_ingress(ingress, replicas, joined)
    # Before importing Ray and torch: a refusal takes a second.
    check_bind(host, port, api_key, ports=replicas if ingress == "direct" else 1)
    from xlab.serve.server import load_any_policy

    load_any_policy(policy_ref)  # a bad reference fails in one line before Ray starts

    stop = threading.Event()
    from xlab.runtime import init_ray, shutdown_ray

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    proxy_port, env = port, {}
    if ingress == "direct":
        from xlab.serve.gateway import direct_ingress_env

        # Serve serves direct ingress only beside an HTTP proxy: it gets a free port, the replicas take --port.
        proxy_port, env = free_port(host), direct_ingress_env(port, replicas)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # read by Serve's controller and replicas, which inherit it from this process
    try:
        init_ray(include_dashboard=False)
        for sig in previous:  # after Ray's start-up, which installs its own SIGTERM handler
            signal.signal(sig, lambda *_: stop.set())
        from ray import serve

        from xlab.serve.gateway import start_gateway
        from xlab.serve.server import ensure_serve

        ensure_serve((host, proxy_port))
        meta = start_gateway(
            policy_ref,
            name=APP,
            route_prefix="/",
            api_key=api_key,
            replicas=replicas,
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=batch_wait_ms / 1000,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            threads=threads,
        )
        shown = f"[{host}]" if ":" in host else host
        where = f"ws://{shown}:{port}"
        if ingress == "direct" and replicas > 1:
            where += f" .. :{port + replicas - 1} (one port per replica: spread your clients over them)"
        print(
            f"[xlab serve] {policy_ref} at {where} ({replicas} replica(s), {ingress} ingress; image "
            f"{meta['image_size']} px, history {meta['history']}, chunk {meta['action_chunk']}, state "
            f"{meta['state_dim']}-d; {'API key required' if api_key else 'no API key: loopback only'}); Ctrl-C to stop",
            flush=True,
        )
        gateway = serve.get_app_handle(APP)
        last_frames, last_t = 0, time.monotonic()
        scope = "" if replicas == 1 else " (one replica's)"
        while not stop.wait(stats_every_s):
            try:  # a replica restarting must not stop the server: skip this report
                s = gateway.stats.remote().result(timeout_s=30)
            except Exception:
                continue
            frames, now = s.get("frames", 0), time.monotonic()
            if frames > last_frames:  # fewer: the replica restarted and its counters with it
                print(
                    f"[xlab serve]{scope} {s['connections']} connection(s), "
                    f"{(frames - last_frames) / (now - last_t):.1f} frames/s, mean batch {s['mean_batch']:.1f}, "
                    f"bad frames {s.get('bad_frames', 0)}",
                    flush=True,
                )
            last_frames, last_t = frames, now
        print("[xlab serve] stopping", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            import ray
            from ray import serve

            if not ray.is_initialized():
                pass
            elif joined:  # someone else's cluster: remove only what this command deployed
                serve.delete(APP)
            else:
                serve.shutdown()
        except Exception:  # Ray may already be going down with the signal; shutdown_ray still runs
            pass
        shutdown_ray()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
