"""A client of the WebSocket policy endpoint (``xlab serve``): openpi's protocol, no Ray needed.

::

    from xlab.serve.client import PolicyClient
    with PolicyClient("ws://127.0.0.1:8000", api_key=None) as policy:
        policy.metadata["action_chunk"], policy.metadata["image_size"]
        out = policy.infer({"observation/image": frame, "prompt": "reach the red target", "reset": True})
        out["actions"]                  # float32 [chunk, 13]: flat RT-1 actions (layout in the metadata)
        out["world_vector"]             # [chunk, 3]; out["server_timing"]["queue_ms"], ...

``infer`` is what ``openpi_client.websocket_client_policy.WebsocketClientPolicy.infer`` does (same frames,
same header), plus: a text frame from the server raises :class:`ServerFrameError` (the connection stays
usable), and a dropped connection is reopened and the last ``history - 1`` frames are replayed without
inference (``infer: false``), so the server's history, and the next action, are what they would have been.
:meth:`PolicyClient.send` / :meth:`PolicyClient.receive` split a request so one thread can drive many
connections in lockstep: send every frame, then read every reply, and the server batches them
(:class:`~xlab.serve.simulator.Simulator` does this for its environments).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from xlab.errors import XlabError
from xlab.serve import protocol


class ServerFrameError(XlabError):
    """The server answered a frame with a text frame (a bad frame, or a server error); the connection stays open."""


class AuthError(XlabError):
    """The server closed the connection because the API key is missing or wrong."""


def _connect(url: str, api_key: str | None, timeout: float) -> Any:
    from websockets.sync.client import connect

    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
    conn = connect(url, additional_headers=headers, compression=None, max_size=None, open_timeout=timeout)
    # Held across calls, not used in a `with`: entering it is what websockets >= 17.1 asks of that use.
    return conn.__enter__()


class PolicyClient:
    """One connection to the endpoint = one episode stream (see the module docstring).

    ``reconnect_s``: how long to keep trying to reopen a dropped connection (0: raise at once).
    """

    def __init__(
        self, url: str, api_key: str | None = None, timeout: float = 120.0, reconnect_s: float = 120.0
    ):
        self.url = url if url.startswith(("ws://", "wss://")) else f"ws://{url}"
        self.api_key = api_key
        self.timeout = timeout
        self.reconnect_s = reconnect_s
        self.reconnects = 0
        self._ws: Any = None
        self.metadata: dict[str, Any] = {}
        self._open(deadline=time.monotonic() + timeout)
        self._sent: deque[dict[str, Any]] = deque(maxlen=max(0, int(self.metadata["history"]) - 1))
        self._pending: dict[str, Any] | None = None
        self._prompt: str | None = None
        self._reset_next = False

    def _open(self, deadline: float) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        delay = 0.2
        while True:
            try:
                self._ws = _connect(self.url, self.api_key, max(1.0, deadline - time.monotonic()))
                first = self._ws.recv(timeout=max(1.0, deadline - time.monotonic()))
                break
            except ConnectionClosed as e:
                if e.rcvd is not None and e.rcvd.code == 1008:
                    raise AuthError(f"{self.url} refused the connection: {e.rcvd.reason}") from None
                err: Exception = e
            except (
                OSError,
                TimeoutError,
                InvalidHandshake,
            ) as e:  # refused, reset, a 5xx while Serve restarts
                if isinstance(e, InvalidStatus) and e.response.status_code in (401, 403):
                    raise AuthError(
                        f"{self.url} refused the connection: HTTP {e.response.status_code}"
                    ) from None
                err = e
            if time.monotonic() + delay > deadline:
                raise XlabError(f"cannot connect to the policy endpoint {self.url}: {err}") from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        if isinstance(first, str):
            raise XlabError(f"{self.url} sent text instead of the metadata frame: {first[:300]}")
        self.metadata = protocol.unpackb(first)

    def send(self, obs: dict[str, Any]) -> None:
        """Send one observation (see ``xlab.serve.protocol.OBSERVATION_KEYS``); then call :meth:`receive`."""
        if self._reset_next:
            obs, self._reset_next = {**obs, protocol.RESET: True}, False
        if obs.get(protocol.PROMPT):
            self._prompt = obs[protocol.PROMPT]
        self._pending = obs
        try:
            self._ws.send(protocol.packb(obs))
        except Exception as e:
            self._recover(e)

    def receive(self) -> dict[str, Any]:
        """The reply to the last :meth:`send`; reconnects and resends after a dropped connection."""
        while True:
            try:
                data = self._ws.recv(timeout=self.timeout)
                break
            except Exception as e:
                self._recover(e)
        obs, self._pending = self._pending, None
        if isinstance(data, str):
            raise ServerFrameError(data)
        if obs is not None:
            if obs.get(protocol.RESET):
                self._sent.clear()
            if self._sent.maxlen:
                self._sent.append({k: v for k, v in obs.items() if k != protocol.RESET})
        return protocol.unpackb(data)

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Send one observation and return the reply (``actions``, the per-key actions, ``server_timing``)."""
        self.send(obs)
        return self.receive()

    def _recover(self, error: Exception) -> None:
        """Reopen a dropped connection, replay the history frames, resend the pending frame."""
        from websockets.exceptions import ConnectionClosed

        if (
            not isinstance(error, ConnectionClosed | OSError)
            or isinstance(error, TimeoutError)
            or not self.reconnect_s
        ):
            raise error
        if isinstance(error, ConnectionClosed) and error.rcvd is not None and error.rcvd.code == 1008:
            raise AuthError(f"{self.url} closed the connection: {error.rcvd.reason}") from None
        self.close()
        self._open(deadline=time.monotonic() + self.reconnect_s)
        self.reconnects += 1
        for i, old in enumerate(self._sent):
            first = {protocol.RESET: True, protocol.PROMPT: self._prompt} if i == 0 and self._prompt else {}
            self._ws.send(protocol.packb({**old, protocol.INFER: False, **first}))
            reply = self._ws.recv(timeout=self.timeout)
            if isinstance(reply, str):
                raise ServerFrameError(f"replaying history after a reconnect: {reply}")
        if self._pending is not None:
            pending = dict(self._pending)
            if not self._sent and self._prompt:  # nothing replayed: this frame starts the new history
                pending.update(
                    {protocol.RESET: True, protocol.PROMPT: pending.get(protocol.PROMPT) or self._prompt}
                )
            self._ws.send(protocol.packb(pending))

    def reset(self) -> None:
        """openpi's ``reset()``: the next frame starts a new episode (it is sent with ``reset: True``)."""
        self._sent.clear()
        self._reset_next = True

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
