"""The WebSocket gateway: a Serve ingress deployment that speaks openpi's protocol and keeps each connection's history.

Each WebSocket connection is one episode stream. On connect the gateway checks the API key (when one is
set: ``Authorization: Api-Key KEY``, the header ``openpi-client`` sends; a missing or wrong key closes the
connection with code 1008 and a reason saying so), then sends the metadata frame
(:func:`xlab.serve.protocol.metadata`). Every binary frame is one observation: the image is resized to the
policy's size (as training windows are), pushed into the connection's own
:class:`~xlab.policies.HistoryBuffer` (keyed history: clients send one frame per step, never the window),
and the window goes to the batching :class:`~xlab.serve.server.PolicyServer` application through a Serve
handle, so requests from every connection share one forward pass. A frame the gateway cannot use gets a
text frame naming the problem and the connection stays open. The history is dropped when the connection
closes. A policy replica that dies is retried with backoff while Serve restarts it (the client only sees a
slower reply); a gateway replica that dies drops its connections, and :class:`xlab.serve.client.PolicyClient`
reconnects and replays its last frames.

``GET /healthz`` answers ``OK``; ``GET /stats`` (API key required when set) returns connections, frames,
bad frames and the policy replica's batch statistics as JSON.

    from xlab.serve.gateway import start_gateway
    start_gateway("xlab-policy", name="xlab-ws", route_prefix="/", api_key="")   # behind Serve's HTTP proxy
"""

# No `from __future__ import annotations`: FastAPI must see the real WebSocket/Request types of the
# routes (as strings, Serve's class-based view leaves them unresolved and every WebSocket gets a 403).

import asyncio
import hashlib
import hmac
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve

from xlab.serve import protocol

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
    max_ongoing_requests=4096,
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=1,
)
@serve.ingress(_api)
class PolicyGateway:
    """Serve ingress replica: one WebSocket per episode stream (see the module docstring)."""

    def __init__(
        self, policy_app: str, info: dict[str, Any], digest: str = "", server_retries: int = 30
    ) -> None:
        self.policy = serve.get_app_handle(policy_app)
        self.meta = protocol.metadata(info)
        self.meta_frame = protocol.packb(self.meta)
        self.digest = digest
        self.server_retries = server_retries
        self.image_size = int(info["image_size"])
        self.history = int(info["history"])
        self.state_dim = int(info["state_dim"])
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
        """Open connections (= histories held), frames held, frame counts, and the policy replica's batches."""
        policy = await self.policy.stats.remote(reset=reset)
        out = {
            "pid": os.getpid(),
            "connections": len(self.streams),
            "history_frames": sum(int(s.images.pad_mask().sum()) for s in self.streams.values()),
            "policy_pid": int(policy["pid"]),
            "policy": policy,
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
        from xlab.data.rlds.transforms import resize_images
        from xlab.policies.session import fit_state

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
            out = await self._act(request)
        except Exception as e:  # the connection stays usable; the client decides whether to go on
            self.counts["server_errors"] += 1
            return (
                f"server error: {type(e).__name__}: {str(e).strip().splitlines()[-1][:300] if str(e) else ''}"
            )
        timing = out.pop("timing")
        timing["total_ms"] = (time.perf_counter() - received) * 1000
        self.counts["inferred"] += 1
        return protocol.reply({k: v[0] for k, v in out.items()}, timing)

    async def _act(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request to the batching policy replicas; a dead replica is retried with backoff while Serve
        restarts it."""
        from ray.exceptions import ActorUnavailableError, RayActorError

        delay = 0.2
        for attempt in range(self.server_retries + 1):
            try:
                return await self.policy.act.remote(request)
            except (RayActorError, ActorUnavailableError):
                if attempt == self.server_retries:
                    raise
                self.counts["policy_retries"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")


def start_gateway(
    policy_app: str, *, name: str, route_prefix: str = "/", api_key: str = "", num_cpus: float = 0.25
) -> dict[str, Any]:
    """Deploy :class:`PolicyGateway` in front of the running policy application ``policy_app`` as
    application ``name`` at ``route_prefix`` of Serve's HTTP proxy; returns the metadata clients receive."""
    info = serve.get_app_handle(policy_app).info.remote().result(timeout_s=300)
    app = PolicyGateway.options(ray_actor_options={"num_cpus": num_cpus}).bind(
        policy_app, info, key_digest(api_key) if api_key else ""
    )
    serve.run(app, name=name, route_prefix=route_prefix, logging_config={"log_level": "WARNING"})
    return protocol.metadata(info)


def loopback_proxy() -> str:
    """Serve with an HTTP proxy this machine can reach (a running one, else a new one on a free loopback
    port); returns its ``ws://host:port`` (call before deploying any application)."""
    import socket

    from xlab.serve.server import ensure_serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host, port = ensure_serve(("127.0.0.1", port), reuse_proxy=True)
    return f"ws://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
