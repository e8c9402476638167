"""The policy server: a Ray Serve deployment that batches action requests from many simulators.

One replica holds one policy (loaded from MLflow, ``models:/NAME@alias`` / ``runs:/...``, or a
``save_pretrained`` directory) and the instruction encoder. Callers send observation WINDOWS: the
server is stateless, each simulator keeps its own frame history (:class:`~xlab.policies.HistoryBuffer`).
Stateless replicas can be restarted, scaled and load-balanced freely (no sticky routing, no lost
episode state when a replica dies), and a retried request is idempotent; the price is sending the
history frames with every request (2 frames x 48 px = 14 KB for rt1x-tiny; 15 x 300 px = 4 MB for
rt1x-paper). Network clients send one frame per step instead: the WebSocket gateway
(:mod:`xlab.serve.gateway`) keeps their histories and calls ``act`` with the windows.

Batching: ``act`` is a ``@serve.batch`` method, so concurrent requests from all simulators run as
one forward pass. Simulators wait for their action before stepping, so they fall into lockstep and
a batch is complete when every ACTIVE caller has sent its request. The replica therefore counts
the distinct callers it heard from in the last ``active_window_s`` and uses that as the batch size
to wait for (capped by ``max_batch_size``): full batches without waiting out the timeout, and no
waiting for simulators that have finished their episodes. ``batch_wait_timeout_s`` bounds the wait
when a caller is slow (an episode reset). ``max_ongoing_requests`` is raised above Serve's default
of 5, which would otherwise cap every batch at 5.

    from xlab.serve import start_policy_server
    handle = start_policy_server("models:/rt1x-policy@latest-train", name="policy")
    info = handle.info.remote().result()            # history, image size, policy ref
    action = handle.act.remote({"images": window, "pad_mask": mask, "instruction": "open the drawer",
                                "client": "sim-3"}).result()
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import numpy as np
from ray import serve

from xlab.errors import XlabError

APP_NAME = "xlab-policy"


def app_name(run_id: str | None = None) -> str:
    """The Serve application name of one evaluation (``xlab-policy-<run id>``): concurrent ones never share one."""
    import uuid

    return f"{APP_NAME}-{(run_id or uuid.uuid4().hex)[:16]}"


# The share of a node's custom resource (``--resources='{"gpu_node": 1}'`` at ``ray start``) that a replica or a
# simulator asks for: enough to place it only on the nodes that define the resource, too little to limit how many.
NODE_SHARE = 0.001


def node_resources(node_resource: str) -> dict[str, float]:
    """Ray resources that pin an actor to the nodes defining the custom resource ``node_resource`` ({} for '')."""
    return {node_resource: NODE_SHARE} if node_resource else {}


def check_node_resource(node_resource: str, nodes: list[dict[str, float]], field: str) -> list[dict[str, float]]:
    """The nodes (resource dicts) that define ``node_resource`` (all of them for ''); a one-line XlabError if none
    does: Ray would otherwise keep the actor pending forever."""
    if not node_resource:
        return nodes
    defining = [n for n in nodes if float(n.get(node_resource, 0.0)) >= NODE_SHARE]
    if not defining:
        custom = sorted({k for n in nodes for k in n if k not in ("CPU", "GPU", "memory", "object_store_memory")
                         and not k.startswith("node:") and not k.startswith("accelerator_type:")})
        raise XlabError(f"bad config value for {field}: no node of this cluster defines the resource "
                        f"{node_resource!r} (custom resources: {', '.join(custom) or 'none'}); start the node with "
                        f"`ray start --resources='{{\"{node_resource}\": 1}}'` or leave {field} empty")
    return defining


def check_server_resources(replicas: int, num_cpus: float, num_gpus: float, nodes: list[dict[str, float]],
                           node_resource: str = "") -> None:
    """One-line XlabError unless the cluster's nodes (their resource dicts) can hold every replica (on the nodes
    that define ``node_resource``, if given).

    Serve would otherwise wait forever for a replica no node can place (``--server.num_gpus 1`` on CPUs).
    """
    nodes = check_node_resource(node_resource, nodes, "server.node_resource")
    for key, need, field in (("GPU", num_gpus, "server.num_gpus"), ("CPU", num_cpus, "server.num_cpus")):
        if need <= 0:
            continue
        per_node = [float(n.get(key, 0.0)) for n in nodes]
        fits = sum(int(have // need) for have in per_node)
        if fits < replicas:
            raise XlabError(
                f"bad config value for {field}: {replicas} replica(s) x {need:g} {key} do not fit on this cluster "
                f"({key} per node: {per_node or 'no nodes'}); lower it or start a cluster with more {key}s"
            )


def _alive_node_resources() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def load_any_policy(ref: str) -> Any:
    """An ``RT1Policy`` from an MLflow model URI (``models:/``, ``runs:/``, ...) or a saved directory."""
    from pathlib import Path

    if "://" in ref or ref.startswith(("models:/", "runs:/")):
        from xlab.policies.mlflow_model import load_registered_policy

        return load_registered_policy(ref)
    if not Path(ref).expanduser().exists():
        raise XlabError(f"no policy at {ref!r}: give models:/NAME@ALIAS, runs:/RUN_ID/policy or a directory "
                        "written by policy.save_pretrained (see `xlab runs train_policy`)")
    from xlab.policies import load_policy

    return load_policy(Path(ref).expanduser())


class BatchingPolicy:
    """Body of a Serve replica: batched ``act`` over every caller (see the module docstring). Deployed as
    :data:`PolicyServer` (handles), and the base of the WebSocket gateway (:mod:`xlab.serve.gateway`)."""

    def __init__(self, policy_ref: str, max_batch_size: int = 64, batch_wait_timeout_s: float = 0.05,
                 active_window_s: float = 3.0, device: str = "auto", threads: int = 0) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.device = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto"
                                                                                     else device)
        self.policy = load_any_policy(policy_ref).to(self.device).eval()
        from xlab.policies.encoder import policy_encoder

        self.encoder = policy_encoder(self.policy)  # the one it was trained with, or a one-line refusal
        self.policy_ref = policy_ref
        self.max_batch_size = max_batch_size
        self.active_window_s = active_window_s
        self.act_batch.set_max_batch_size(max_batch_size)
        self.act_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self._seen: dict[str, float] = {}
        self._batch_sizes: Counter[int] = Counter()
        self._rows = 0
        self._forward_s = 0.0
        self._embeddings: dict[str, np.ndarray] = {}
        self._generator = torch.Generator(device=self.device).manual_seed(0)
        self._embed(["warm up the instruction encoder"])  # load it now, not on the first request (~5 s)

    def info(self) -> dict[str, Any]:
        cfg = self.policy.config
        import ray

        return {"policy": self.policy_ref, "history": int(cfg.history), "image_size": int(cfg.image_size),
                "action_chunk": int(cfg.action_chunk), "state_dim": int(cfg.state_dim),
                "device": self.device, "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "max_batch_size": self.max_batch_size, "instruction_encoder": self.encoder}

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Batch sizes served so far (requests per forward pass), rows, forward time; ``reset`` clears them."""
        batches = sum(self._batch_sizes.values())
        out = {"pid": os.getpid(), "batches": batches, "requests": sum(k * v for k, v in self._batch_sizes.items()),
               "rows": self._rows, "forward_s": self._forward_s, "batch_sizes": dict(self._batch_sizes)}
        out["mean_batch"] = out["requests"] / batches if batches else 0.0
        if reset:
            self._batch_sizes.clear()
            self._rows, self._forward_s = 0, 0.0
        return out

    def _embed(self, instructions: list[str]) -> np.ndarray:
        missing = sorted({s for s in instructions if s not in self._embeddings})
        if missing:
            from xlab.rlds.text_embed import embed_instructions

            for s, e in zip(missing, embed_instructions(missing, backend=self.encoder), strict=True):
                self._embeddings[s] = e
        return np.stack([self._embeddings[s] for s in instructions])

    def _expect(self, client: str) -> None:
        """Wait for as many requests as callers were active in the last ``active_window_s``."""
        now = time.monotonic()
        self._seen[client] = now
        if len(self._seen) > 4 * self.max_batch_size:  # forget long-gone callers
            self._seen = {c: t for c, t in self._seen.items() if now - t < self.active_window_s}
        active = sum(1 for t in self._seen.values() if now - t < self.active_window_s)
        self.act_batch.set_max_batch_size(max(1, min(self.max_batch_size, active)))

    async def act(self, request: dict[str, Any]) -> dict[str, np.ndarray]:
        """One caller's request: ``images`` [B, T, H, W, 3] uint8, ``pad_mask`` [B, T], ``instruction``
        (str or B strs), optional ``mode`` ("argmax"/"sample"), ``client`` id, ``state`` [B, T, D] for
        policies that take proprioception, ``chunk`` (True: return the whole predicted chunk).
        Returns RT-1 actions ``[B, ...]``, or ``[B, K, ...]`` with ``chunk``; with ``timing`` (True) also
        ``"timing": {queue_ms, inference_ms, batch_size}`` (waiting for the batch, its forward pass, its requests)."""
        self._expect(str(request.get("client", "")))
        if not request.get("timing"):
            return await self.act_batch(request)
        entered = time.perf_counter()
        out = await self.act_batch(request)
        start, end, size = out.pop("_forward")
        out["timing"] = {"queue_ms": (start - entered) * 1000, "inference_ms": (end - start) * 1000,
                         "batch_size": size}
        return out

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.05)
    async def act_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        import torch

        from xlab.policies.session import fit_state

        sizes = [len(r["images"]) for r in requests]
        images = np.concatenate([np.asarray(r["images"], np.uint8) for r in requests])
        pad = np.concatenate([np.asarray(r["pad_mask"], bool) for r in requests])
        state_dim = int(self.policy.config.state_dim)
        state = None
        if state_dim:
            state = np.concatenate([fit_state(r["state"], state_dim) for r in requests])
        instructions: list[str] = []
        for r, n in zip(requests, sizes, strict=True):
            ins = r["instruction"]
            instructions.extend([ins] * n if isinstance(ins, str) else list(ins))
        t_embed = time.perf_counter()  # inference time includes embedding a new instruction (cached after)
        emb = self._embed(instructions)
        rows = np.concatenate([[r.get("mode", "argmax")] * n for r, n in zip(requests, sizes, strict=True)])
        t0 = time.perf_counter()
        actions: dict[str, np.ndarray] = {}
        with torch.inference_mode():
            for mode in ("argmax", "sample"):  # one pass per mode present (mixed modes: two passes)
                sel = rows == mode
                if not sel.any():
                    continue
                part = self.policy.act_chunk(images[sel], emb[sel], mode=mode, pad_mask=pad[sel],
                                             generator=self._generator, state=None if state is None else state[sel])
                for k, v in part.items():
                    actions.setdefault(k, np.zeros((len(rows), *v.shape[1:]), v.dtype))[sel] = v
        t1 = time.perf_counter()
        self._forward_s += t1 - t0
        self._batch_sizes[len(requests)] += 1
        self._rows += len(images)
        out, start = [], 0
        for r, n in zip(requests, sizes, strict=True):
            part = {k: v[start:start + n] for k, v in actions.items()}
            part = part if r.get("chunk") else {k: v[:, 0] for k, v in part.items()}
            if r.get("timing"):
                part["_forward"] = (t_embed, t1, len(requests))
            out.append(part)
            start += n
        return out

    def check_health(self) -> None:  # Serve calls this every health_check_period_s
        if self.policy is None:
            raise RuntimeError("policy not loaded")


#: The batching policy replica reached through Serve handles (simulator actors).
PolicyServer = serve.deployment(max_ongoing_requests=256, health_check_period_s=2, health_check_timeout_s=10,
                                graceful_shutdown_timeout_s=1, name="PolicyServer")(BatchingPolicy)


def start_policy_server(
    policy_ref: str,
    *,
    name: str = APP_NAME,
    replicas: int = 1,
    max_batch_size: int = 64,
    batch_wait_timeout_s: float = 0.05,
    active_window_s: float = 3.0,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    threads: int = 0,
    node_resource: str = "",
) -> Any:
    """Deploy :class:`PolicyServer` as Serve application ``name`` (no HTTP route); returns its handle.

    The policy is loaded here first, so a bad reference fails with a clear error before any replica
    starts. Replicas that die are restarted by Serve's controller (callers retry, see
    :mod:`xlab.serve.simulator`). ``node_resource``: place the replicas only on nodes that define this
    custom resource (a GPU node type of ``cluster.yaml``, say), see :data:`NODE_SHARE`.
    """
    load_any_policy(policy_ref)  # fail fast, in the caller, with the real message
    check_server_resources(replicas, num_cpus, num_gpus, _alive_node_resources(), node_resource)  # no silent wait
    ensure_serve()
    app = PolicyServer.options(
        num_replicas=replicas,
        max_ongoing_requests=max(256, 4 * max_batch_size),
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": node_resources(node_resource)},
    ).bind(policy_ref, max_batch_size, batch_wait_timeout_s, active_window_s,
           "cuda" if num_gpus else "cpu", threads)
    return serve.run(app, name=name, route_prefix=None, logging_config={"log_level": "WARNING"})


def ensure_serve(http: tuple[str, int] | None = None, reuse_proxy: bool = False) -> tuple[str, int] | None:
    """Start Serve on the cluster unless it runs: without an HTTP proxy (simulators call through handles, and
    a proxy would claim port 8000 on shared machines), or with one at ``http = (host, port)`` (the WebSocket
    endpoint). A running Serve keeps its proxy settings (they are cluster-wide): one without the wanted
    proxy is restarted if it serves no application, else refused in one line; with ``reuse_proxy`` any
    running proxy will do. Returns the proxy's (host, port), or None without one."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is not None and http is not None:
        cfg = client.http_config  # keeps its default host/port even when the proxy is disabled
        proxied = bool(cfg.host) and bool(serve.status().proxies)
        if proxied and reuse_proxy:
            return str(cfg.host), int(cfg.port)
        if not proxied or (cfg.host, int(cfg.port)) != http:
            if serve.status().applications:
                where = f"at {cfg.host}:{cfg.port}" if proxied else "without an HTTP proxy"
                raise XlabError(f"Serve already runs on this Ray cluster {where}, serving applications; the WebSocket "
                                f"endpoint needs its proxy at {http[0]}:{http[1]}: use a fresh cluster")
            serve.shutdown()
            client = None
    if client is not None:
        return http
    if http is None:
        serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING"})
    else:
        serve.start(proxy_location="HeadOnly", http_options={"host": http[0], "port": http[1]},
                    logging_config={"log_level": "WARNING"})
    return http


def replica_pids(name: str = APP_NAME) -> list[int]:
    """PIDs of the running replicas of application ``name`` (for fault injection and monitoring)."""
    handle = serve.get_app_handle(name)
    pids = set()
    for _ in range(8):  # requests are load-balanced: ask a few times to reach every replica
        pids.add(int(handle.info.remote().result(timeout_s=30)["pid"]))
    return sorted(pids)


def shutdown_policy_server(name: str = APP_NAME) -> None:
    serve.delete(name)
