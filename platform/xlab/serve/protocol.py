"""The WebSocket policy protocol: openpi's msgpack-numpy frames, the observation keys, the reply, the limits.

Compatible with ``openpi-client``'s ``WebsocketClientPolicy`` (github.com/Physical-Intelligence/openpi):
the server sends one metadata frame on connect, then answers every binary client frame (an
observation dict) with one binary frame (an action dict), or with one TEXT frame naming what was
wrong with the client's frame (the connection stays usable). Arrays travel as msgpack maps
``{b"__ndarray__": True, b"data": raw bytes, b"dtype": "<f4", b"shape": [..]}`` (numpy scalars as
``b"__npgeneric__"``); nothing is ever unpickled. Used by both sides without Ray::

    from xlab.serve.protocol import packb, unpackb, parse_observation
    frame = packb({"observation/image": img, "prompt": "reach the red target"})
    obs = parse_observation(unpackb(frame), state_dim=0)   # FrameError (one line) if malformed

Client keys (the observation) and reply keys are listed in ``OBSERVATION_KEYS`` / ``REPLY_KEYS`` and
in docs/serving.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from xlab.errors import XlabError

PROTOCOL = "xlab-policy-ws/1 (openpi msgpack-numpy)"
MAX_FRAME_BYTES = 12 * 1024 * 1024
"""Largest client frame accepted (the HTTP proxy itself closes connections above 16 MiB)."""
MAX_IMAGE_SIDE = 4096
IMAGE, STATE, PROMPT, RESET, INFER, MODE = (
    "observation/image",
    "observation/state",
    "prompt",
    "reset",
    "infer",
    "mode",
)
OBSERVATION_KEYS: dict[str, str] = {
    IMAGE: "uint8 [H, W, 3], any size (resized on the server to the policy's image size, as in training)",
    STATE: "float [D] proprio state (required when metadata state_dim > 0; cut or zero-padded to it)",
    PROMPT: "str, the instruction (may be omitted after the first frame: the last one is kept)",
    RESET: "bool, optional: this frame starts a new episode (the connection's history is cleared first)",
    INFER: "bool, optional (default true): false stores the frame in the history and answers without "
    "actions (open-loop chunk execution between queries)",
    MODE: "'argmax' (default) or 'sample'",
}
REPLY_KEYS: dict[str, str] = {
    "actions": "float32 [chunk, D]: the flat RT-1 action vector per chunk step (order: metadata action_layout)",
    "<action key>": "each RT-1 action key on its own, [chunk, size] (terminate_episode int32 one-hot)",
    "server_timing": "{queue_ms, inference_ms, total_ms, batch_size}: waiting for the batch, the batch's "
    "forward pass, receipt to reply on the server, requests in that forward pass",
}


class FrameError(XlabError):
    """A client frame the server cannot use; the message is sent back to the client as a text frame."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in "OVcSUMm":
        raise TypeError(f"arrays of dtype {obj.dtype} cannot be sent (numbers and booleans only)")
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {
            b"__ndarray__": True,
            b"data": arr.tobytes(),
            b"dtype": arr.dtype.str,
            b"shape": list(arr.shape),
        }
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"array dtype {dtype} is not allowed (numbers and booleans only)")
        shape = tuple(int(s) for s in obj[b"shape"])
        data = obj[b"data"]
        if math.prod(shape) * dtype.itemsize != len(data):  # math.prod: exact; np.prod cost 3 us a call
            raise ValueError(
                f"array of shape {shape} and dtype {dtype} does not match its {len(data)} data bytes"
            )
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if b"__npgeneric__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"scalar dtype {dtype} is not allowed")
        return dtype.type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    """msgpack-numpy bytes of ``obj`` (dicts, lists, str, numbers, numpy arrays and scalars)."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Inverse of :func:`packb` (arrays come back read-only); ValueError-family errors on bad input."""
    return msgpack.unpackb(data, object_hook=_decode, raw=False)


@dataclass
class Observation:
    """One validated client frame."""

    image: np.ndarray | None
    state: np.ndarray | None
    prompt: str | None
    reset: bool
    infer: bool
    mode: str


def decode_frame(data: bytes | str | None, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """The observation dict of one raw client frame, or FrameError naming the problem."""
    if data is None or isinstance(data, str):
        raise FrameError("expected a binary msgpack-numpy frame, got a text frame")
    if len(data) > max_bytes:
        raise FrameError(f"frame of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        obs = unpackb(data)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise FrameError(f"not a msgpack-numpy frame ({type(e).__name__}: {e})") from None
    if not isinstance(obs, dict):
        raise FrameError(f"a frame must be a map of observation keys, got {type(obs).__name__}")
    return obs


def _flag(obs: dict[str, Any], key: str, default: bool) -> bool:
    value = obs.get(key, default)
    if not isinstance(value, bool | np.bool_):
        raise FrameError(f"'{key}' must be true or false, got {value!r}")
    return bool(value)


def parse_observation(obs: dict[str, Any], state_dim: int, need_prompt: bool = True) -> Observation:
    """Validate one decoded observation dict (see ``OBSERVATION_KEYS``); FrameError names the first problem.

    ``state_dim``: the policy's proprio size (0: ``observation/state`` is ignored). ``need_prompt``:
    whether this connection has no instruction yet. Unknown keys (e.g. a wrist camera) are ignored.
    """
    reset, infer = _flag(obs, RESET, False), _flag(obs, INFER, True)
    mode = obs.get(MODE, "argmax")
    if mode not in ("argmax", "sample"):
        raise FrameError(f"'mode' must be 'argmax' or 'sample', got {mode!r}")
    image = obs.get(IMAGE)
    if image is None:
        raise FrameError(f"missing '{IMAGE}' (uint8 [H, W, 3])")
    if not isinstance(image, np.ndarray):
        raise FrameError(f"'{IMAGE}' must be a numpy array (msgpack-numpy), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise FrameError(f"'{IMAGE}' must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise FrameError(f"'{IMAGE}' must be [H, W, 3], got shape {list(image.shape)}")
    if not (1 <= image.shape[0] <= MAX_IMAGE_SIDE and 1 <= image.shape[1] <= MAX_IMAGE_SIDE):
        raise FrameError(
            f"'{IMAGE}' sides must be 1..{MAX_IMAGE_SIDE} px, got {image.shape[0]}x{image.shape[1]}"
        )
    prompt = obs.get(PROMPT)
    if isinstance(prompt, bytes):
        prompt = prompt.decode("utf-8", "replace")
    if prompt is not None and not isinstance(prompt, str):
        raise FrameError(f"'{PROMPT}' must be a string, got {type(prompt).__name__}")
    if need_prompt and not prompt:
        raise FrameError(f"missing '{PROMPT}' (the instruction) on the first frame of the connection")
    state = None
    if state_dim:
        raw = obs.get(STATE)
        if raw is None:
            raise FrameError(f"this policy takes '{STATE}' ({state_dim} floats) on every frame")
        raw = np.asarray(raw)
        if raw.dtype.kind not in "biuf" or raw.ndim != 1 or not len(raw):
            raise FrameError(
                f"'{STATE}' must be a 1-D numeric array, got {raw.dtype} shape {list(raw.shape)}"
            )
        if not np.isfinite(raw.astype(np.float64)).all():
            raise FrameError(f"'{STATE}' has NaN or infinite values")
        state = raw
    return Observation(image, state, prompt or None, reset, infer, mode)


def action_layout() -> list[list[Any]]:
    """``[[key, start, stop], ...]``: where each RT-1 key sits in the flat ``actions`` vector."""
    from xlab.rlds.schema import ACTION_SPEC  # server side only: keeps the client free of torch

    out, i = [], 0
    for key, n in ACTION_SPEC:
        out.append([key, i, i + n])
        i += n
    return out


def metadata(info: dict[str, Any]) -> dict[str, Any]:
    """The frame sent on connect, from the policy server's ``info()``."""
    from xlab.rlds.schema import ACTION_DIM, ACTION_DIM_NAMES

    return {
        "protocol": PROTOCOL,
        "policy": info["policy"],
        "image_size": int(info["image_size"]),
        "history": int(info["history"]),
        "action_chunk": int(info["action_chunk"]),
        "state_dim": int(info["state_dim"]),
        "action_dim": ACTION_DIM,
        "action_layout": action_layout(),
        "action_dim_names": list(ACTION_DIM_NAMES),
        "instruction_encoder": info.get("instruction_encoder", ""),
        "observation_keys": dict(OBSERVATION_KEYS),
        "max_frame_bytes": MAX_FRAME_BYTES,
    }


def reply(chunk: dict[str, np.ndarray], timing: dict[str, float]) -> dict[str, Any]:
    """The reply to one inferred frame: ``chunk`` is one request's RT-1 dict ``{key: [K, ...]}``."""
    from xlab.rlds.schema import ACTION_SPEC, flatten_action

    out: dict[str, Any] = {"actions": flatten_action(chunk).astype(np.float32)}
    for key, _ in ACTION_SPEC:
        out[key] = np.asarray(chunk[key])
    out["server_timing"] = {k: float(v) for k, v in timing.items()}
    return out
