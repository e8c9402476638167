"""The WebSocket endpoint: a Serve ingress replica that speaks openpi's protocol, keeps each connection's
history and batches every connection's request into one forward pass.

:class:`PolicyGateway` is the batching policy replica (:class:`~xlab.serve.server.BatchingPolicy`, the body
of the handle-served ``PolicyServer``) with a WebSocket front: a request goes from the socket to
``act_batch`` in the same process, without another Serve hop (measured: the hop to a separate policy
replica cost more than the forward pass at 16 clients, docs/serving.md). Each WebSocket connection is one
episode stream. On connect the replica checks the API key (when one is set: ``Authorization: Api-Key KEY``,
the header ``openpi-client`` sends; a missing or wrong key closes the connection with code 1008 and a reason
saying so), then sends the metadata frame (:func:`xlab.serve.protocol.metadata`). Every binary frame is one
observation: the image is resized to the policy's size (as training windows are), pushed into the
connection's own :class:`~xlab.policies.HistoryBuffer` (keyed history: clients send one frame per step,
never the window), and the window joins the batch of every waiting connection. A frame the replica cannot
use gets a text frame naming the problem and the connection stays open. The history is dropped when the
connection closes. A replica that dies drops its connections and Serve restarts it;
:class:`xlab.serve.client.PolicyClient` reconnects and replays its last frames. With several replicas
Serve's proxy spreads connections over them and each batches its own.

``GET /healthz`` answers ``OK``; ``GET /stats`` (API key required when set) returns connections, frames,
bad frames and the batch statistics as JSON.

    from xlab.serve.gateway import start_gateway
    start_gateway("models:/rt1x-policy@latest-train", name="xlab-serve", route_prefix="/", api_key="")
"""

# No `from __future__ import annotations`: FastAPI must see the real WebSocket/Request types of the
# routes (as strings, Serve's class-based view leaves them unresolved and every WebSocket gets a 403).

import hashlib
import hmac
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve

from xlab.serve import protocol
from xlab.serve.server import BatchingPolicy

AUTH_REASON = "missing or wrong API key (send the header 'Authorization: Api-Key KEY')"
_api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def key_digest(key: str) -> str:
    """SHA-256 of an API key: what the deployment holds (its arguments are visible in Serve's state)."""
    return hashlib.sha256(key.encode()).hexdigest()


def authorized(header: str | None, digest: str) -> bool:
    """Whether an ``Authorization`` header carries the key whose digest is ``digest`` (always, if none is set)."""
    if not digest:
        return True
    if not header or not header.startswith("Api-Key "):
        return False
    return hmac.compare_digest(key_digest(header[len("Api-Key ") :].strip()), digest)


@dataclass
class _Stream:
    """One connection's episode: its frame (and state) history and its instruction."""

    images: Any
    states: Any
    prompt: str | None = None
    frames: int = 0


@serve.deployment(
    max_ongoing_requests=4096,  # every open WebSocket counts as one ongoing request
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=1,
)
@serve.ingress(_api)
class PolicyGateway(BatchingPolicy):
    """Serve ingress replica: one WebSocket per episode stream, batched forward passes (see the module docstring)."""

    def __init__(
        self,
        policy_ref: str,
        digest: str = "",
        max_batch_size: int = 64,
        batch_wait_timeout_s: float = 0.02,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        super().__init__(policy_ref, max_batch_size, batch_wait_timeout_s, 3.0, device, threads)
        self.meta = protocol.metadata(self.info())
        self.meta_frame = protocol.packb(self.meta)
        self.digest = digest
        self.image_size = int(self.meta["image_size"])
        self.history = int(self.meta["history"])
        self.state_dim = int(self.meta["state_dim"])
        self.streams: dict[str, _Stream] = {}
        self.counts: Counter[str] = Counter()

    @_api.get("/healthz")
    def healthz(self) -> PlainTextResponse:
        return PlainTextResponse("OK\n")

    @_api.get("/stats")
    async def http_stats(self, request: Request) -> JSONResponse:
        if not authorized(request.headers.get("authorization"), self.digest):
            return JSONResponse({"error": AUTH_REASON}, status_code=401)
        reset = request.query_params.get("reset") in ("1", "true")
        return JSONResponse(await self.stats(reset))

    async def stats(self, reset: bool = False) -> dict[str, Any]:
        """The batch statistics (:meth:`BatchingPolicy.stats`) plus open connections (= histories held), frames
        held, and frame counts."""
        out = {
            **super().stats(reset),
            "connections": len(self.streams),
            "history_frames": sum(int(s.images.pad_mask().sum()) for s in self.streams.values()),
            **self.counts,
        }
        if reset:
            self.counts.clear()
        return out

    @_api.websocket("/")
    async def stream(self, ws: WebSocket) -> None:
        await ws.accept()
        if not authorized(ws.headers.get("authorization"), self.digest):
            self.counts["refused"] += 1
            await ws.close(code=1008, reason=AUTH_REASON)
            return
        from xlab.policies.session import HistoryBuffer

        sid = uuid.uuid4().hex
        stream = _Stream(
            HistoryBuffer(1, self.history), HistoryBuffer(1, self.history) if self.state_dim else None
        )
        self.streams[sid] = stream
        self.counts["connections_opened"] += 1
        try:
            await ws.send_bytes(self.meta_frame)
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                received = time.perf_counter()
                try:
                    raw = msg.get("bytes") if msg.get("bytes") is not None else msg.get("text")
                    obs = protocol.parse_observation(
                        protocol.decode_frame(raw), self.state_dim, need_prompt=stream.prompt is None
                    )
                except protocol.FrameError as e:
                    self.counts["bad_frames"] += 1
                    await ws.send_text(f"bad frame: {e}")
                    continue
                out = await self._step(sid, stream, obs, received)
                if isinstance(out, str):
                    await ws.send_text(out)
                else:
                    await ws.send_bytes(protocol.packb(out))
        except WebSocketDisconnect:
            pass
        finally:
            del self.streams[sid]  # the history goes with the connection

    async def _step(
        self, sid: str, s: _Stream, obs: protocol.Observation, received: float
    ) -> dict[str, Any] | str:
        from xlab.policies.session import fit_state
        from xlab.rlds.transforms import resize_images

        if obs.reset:
            s.images.reset()
            if s.states is not None:
                s.states.reset()
        if obs.prompt:
            s.prompt = obs.prompt
        # The same resize as the simulators' and the training windows' (PIL bilinear; no-op at the policy size).
        frame = resize_images(obs.image[None], (self.image_size, self.image_size))
        window, pad = s.images.push(frame)
        request: dict[str, Any] = {
            "images": window,
            "pad_mask": pad,
            "instruction": s.prompt,
            "client": sid,
            "chunk": True,
            "timing": True,
            "mode": obs.mode,
        }
        if s.states is not None:
            request["state"], _ = s.states.push(fit_state(obs.state[None], self.state_dim))
        s.frames += 1
        self.counts["frames"] += 1
        if not obs.infer:
            return {"stored": True, "server_timing": {"total_ms": (time.perf_counter() - received) * 1000}}
        try:
            out = await self.act(request)
        except Exception as e:  # the connection stays usable; the client decides whether to go on
            self.counts["server_errors"] += 1
            return (
                f"server error: {type(e).__name__}: {str(e).strip().splitlines()[-1][:300] if str(e) else ''}"
            )
        timing = out.pop("timing")
        timing["total_ms"] = (time.perf_counter() - received) * 1000
        self.counts["inferred"] += 1
        return protocol.reply({k: v[0] for k, v in out.items()}, timing)


def start_gateway(
    policy_ref: str,
    *,
    name: str,
    route_prefix: str = "/",
    api_key: str = "",
    replicas: int = 1,
    max_batch_size: int = 64,
    batch_wait_timeout_s: float = 0.02,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    threads: int = 0,
    node_resource: str = "",
) -> dict[str, Any]:
    """Deploy :class:`PolicyGateway` serving ``policy_ref`` as application ``name`` at ``route_prefix`` of
    Serve's HTTP proxy (start Serve with one first: :func:`xlab.serve.server.ensure_serve`); returns the
    metadata clients receive. The reference is loaded here first, so a bad one fails in one line.
    ``node_resource``: as for :func:`xlab.serve.server.start_policy_server`."""
    from xlab.serve.server import (
        _alive_node_resources,
        check_server_resources,
        load_any_policy,
        node_resources,
    )

    load_any_policy(policy_ref)
    check_server_resources(replicas, num_cpus, num_gpus, _alive_node_resources(), node_resource)
    app = PolicyGateway.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": node_resources(node_resource)},
    ).bind(
        policy_ref,
        key_digest(api_key) if api_key else "",
        max_batch_size,
        batch_wait_timeout_s,
        "cuda" if num_gpus else "cpu",
        threads,
    )
    handle = serve.run(app, name=name, route_prefix=route_prefix, logging_config={"log_level": "WARNING"})
    return protocol.metadata(handle.info.remote().result(timeout_s=300))


def direct_ingress_env(port: int, replicas: int = 1) -> dict[str, str]:
    """Environment for Serve's direct ingress (Ray 2.60, experimental): every ingress replica runs its own HTTP
    server, at ``port``, ``port + 1``, ... (one per replica), and clients reach it without the proxy's hop.

    A cluster-wide setting read by Serve's controller and replicas: set it before Ray starts. The replicas bind
    the host of Serve's ``http_options``. There is no load balancer in front of them (connections are not spread
    over replicas) and nothing to deregister from, so a stopping replica does not wait out Serve's 30-second
    drain period for one, and a restarted replica takes its predecessor's port at once (Serve holds a freed
    port back for a load balancer to forget it)."""
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + replicas),  # exclusive
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
    }


def loopback_proxy() -> str:
    """Serve with an HTTP proxy this machine can reach (a running one, else a new one on a free loopback
    port); returns its ``ws://host:port`` (call before deploying any application)."""
    from xlab.runtime import free_port
    from xlab.serve.server import ensure_serve

    host, port = ensure_serve(("127.0.0.1", free_port()), reuse_proxy=True)
    return f"ws://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
