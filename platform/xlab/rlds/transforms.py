"""Per-dataset standardization: each dataset's raw RLDS episode -> one :class:`Trajectory` layout.

Open X-Embodiment datasets all follow RLDS but differ in observation keys, action layout and
action scale. A transform registered here under the dataset's name maps one decoded episode
(numpy; ``raw["steps"]`` holds the steps batched along axis 0, the other keys are episode
metadata) to a :class:`~xlab.rlds.schema.Trajectory` with the RT-1 action dict. The reader
looks the transform up by dataset name (:func:`get_transform`); image resizing happens after, in
the reader, so transforms stay pure numpy and TensorFlow-free.

Registered:

* ``xlab`` -- datasets written by :func:`xlab.rlds.write_rlds` (already RT-1 dicts).
* ``fractal20220817_data`` -- the RT-1 robot data (Google robot; published schema: image
  256x320, ``base_pose_tool_reached`` 7 + ``gripper_closed`` 1 as state, RT-1 action dict with
  int32 one-hot ``terminate_episode``, a 512-d USE embedding, ``aspects``/``attributes`` episode
  metadata). Actions pass through unchanged (RT-1 was trained on them).
* ``bridge`` -- WidowX / BridgeData V2 as in Open X-Embodiment 0.1.0 (action dict
  ``world_vector``, ``rotation_delta``, ``open_gripper`` bool, ``terminate_episode`` float;
  image 480x640; ``state`` 7). As in the RT-1-X data pipeline: xyz rescaled from +-0.05 to +-1.75
  and rotation from +-0.25 to +-1.4 (clipped 0.01 inside), gripper open -> -1 / closed -> +1,
  terminate 1.0 -> [1,0,0] else [0,1,0]. The later TFDS-catalog layout (7-d action vector:
  xyz, rpy, gripper in [0, 1] with 1 = open; ``image_0``; step ``language_instruction``) is
  accepted too, with the same scaling and ``is_last`` as the terminate signal.

Register another dataset with ``@register_transform("name")``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from xlab.rlds.schema import (
    CONTINUE,
    TERMINATE,
    RLDSError,
    Trajectory,
    complete_action,
    to_python,
    to_str,
)

TransformFn = Callable[[Mapping[str, Any], str], Trajectory]

TRANSFORMS: dict[str, TransformFn] = {}


class UnknownDatasetError(RLDSError, KeyError):
    """No standardization transform is registered for a dataset name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_transform(name: str) -> Callable[[TransformFn], TransformFn]:
    """Decorator: register ``fn(raw_episode, dataset_name) -> Trajectory`` under ``name``."""

    def deco(fn: TransformFn) -> TransformFn:
        TRANSFORMS[name] = fn
        return fn

    return deco


def get_transform(name: str) -> TransformFn:
    """The transform registered under ``name``; an error listing the registered names otherwise."""
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"no standardization transform registered for dataset {name!r}; registered: {sorted(TRANSFORMS)} "
            "(register one with @xlab.rlds.register_transform)"
        ) from None


def rescale(
    x: np.ndarray, low: float, high: float, new_low: float, new_high: float, margin: float = 0.0
) -> np.ndarray:
    """Affine map ``[low, high] -> [new_low, new_high]``, clipped ``margin`` inside the new range."""
    y = (np.asarray(x, np.float32) - low) / (high - low) * (new_high - new_low) + new_low
    return np.clip(y, new_low + margin, new_high - margin).astype(np.float32)


def _flags(steps: Mapping[str, Any], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def get(key: str, default: np.ndarray) -> np.ndarray:
        return np.asarray(steps[key], bool).reshape(length) if key in steps else default

    idx = np.arange(length)
    is_first = get("is_first", idx == 0)
    is_last = get("is_last", idx == length - 1)
    return is_first, is_last, get("is_terminal", np.zeros(length, bool))


def _first_text(*candidates: Any) -> str:
    """First non-empty instruction among per-step string arrays (episodes keep one instruction)."""
    for c in candidates:
        if c is None:
            continue
        for v in np.asarray(c).reshape(-1):
            s = to_str(v).strip()
            if s:
                return s
    return ""


def _length(steps: Mapping[str, Any]) -> int:
    for key in ("is_first", "is_last", "reward"):
        if key in steps:
            return int(np.shape(steps[key])[0])
    raise RLDSError("episode steps carry none of is_first / is_last / reward; is this an RLDS dataset?")


def _rewards(steps: Mapping[str, Any], length: int) -> np.ndarray:
    if "reward" not in steps:
        return np.zeros(length, np.float32)
    return np.asarray(steps["reward"], np.float32).reshape(length)


@register_transform("xlab")
def xlab_transform(raw: Mapping[str, Any], dataset: str) -> Trajectory:
    """Datasets written by :func:`~xlab.rlds.write_rlds`: already in the common layout."""
    steps = raw["steps"]
    obs = steps["observation"]
    length = _length(steps)
    is_first, is_last, is_terminal = _flags(steps, length)
    emb = obs.get("natural_language_embedding")
    return Trajectory(
        dataset=dataset,
        images=np.asarray(obs["image"], np.uint8),
        states=np.asarray(obs["state"], np.float32).reshape(length, -1),
        actions=complete_action(dict(steps["action"]), length),
        instruction=_first_text(obs.get("natural_language_instruction"), steps.get("language_instruction")),
        is_first=is_first,
        is_last=is_last,
        is_terminal=is_terminal,
        rewards=_rewards(steps, length),
        embedding=None if emb is None or length == 0 else np.asarray(emb[0], np.float32),
        metadata=to_python(raw.get("episode_metadata", {})),
    )


@register_transform("fractal20220817_data")
def fractal_transform(raw: Mapping[str, Any], dataset: str) -> Trajectory:
    """RT-1 Google-robot data: actions pass through; state = tool pose (7) + gripper_closed (1)."""
    steps = raw["steps"]
    obs = steps["observation"]
    length = _length(steps)
    is_first, is_last, is_terminal = _flags(steps, length)
    state = np.concatenate(
        [
            np.asarray(obs["base_pose_tool_reached"], np.float32).reshape(length, 7),
            np.asarray(obs["gripper_closed"], np.float32).reshape(length, 1),
        ],
        axis=1,
    )
    emb = obs.get("natural_language_embedding")
    meta = {k: to_python(raw[k]) for k in ("aspects", "attributes") if k in raw}
    return Trajectory(
        dataset=dataset,
        images=np.asarray(obs["image"], np.uint8),
        states=state,
        actions=complete_action(dict(steps["action"]), length),
        instruction=_first_text(obs.get("natural_language_instruction")),
        is_first=is_first,
        is_last=is_last,
        is_terminal=is_terminal,
        rewards=_rewards(steps, length),
        embedding=None if emb is None or length == 0 else np.asarray(emb[0], np.float32),
        metadata=meta,
    )


# Bridge (WidowX) -> RT-1 scale, as the RT-1-X data pipeline does it.
BRIDGE_XYZ = (-0.05, 0.05, -1.75, 1.75)
BRIDGE_ROT = (-0.25, 0.25, -1.4, 1.4)
BRIDGE_MARGIN = 0.01


@register_transform("bridge")
def bridge_transform(raw: Mapping[str, Any], dataset: str) -> Trajectory:
    """Bridge (WidowX): rescale xyz/rotation to the RT-1-X range, gripper open -> -1, closed -> +1."""
    steps = raw["steps"]
    obs = steps["observation"]
    length = _length(steps)
    is_first, is_last, is_terminal = _flags(steps, length)
    act = steps["action"]
    if isinstance(act, Mapping):  # Open X-Embodiment 0.1.0 layout
        xyz = np.asarray(act["world_vector"], np.float32).reshape(length, 3)
        rot = np.asarray(act["rotation_delta"], np.float32).reshape(length, 3)
        gripper_open = np.asarray(act["open_gripper"]).reshape(length).astype(bool)
        terminate = np.asarray(act["terminate_episode"], np.float32).reshape(length) == 1.0
    else:  # TFDS-catalog layout: [x, y, z, roll, pitch, yaw, gripper (1 = open)]
        vec = np.asarray(act, np.float32).reshape(length, -1)
        if vec.shape[1] < 7:
            raise RLDSError(f"bridge action vector has {vec.shape[1]} numbers, expected 7")
        xyz, rot = vec[:, :3], vec[:, 3:6]
        gripper_open = vec[:, 6] > 0.5
        terminate = is_last
    actions = complete_action(
        {
            "world_vector": rescale(xyz, *BRIDGE_XYZ, margin=BRIDGE_MARGIN),
            "rotation_delta": rescale(rot, *BRIDGE_ROT, margin=BRIDGE_MARGIN),
            "gripper_closedness_action": np.where(gripper_open, -1.0, 1.0).astype(np.float32)[:, None],
            "terminate_episode": np.where(terminate[:, None], TERMINATE, CONTINUE).astype(np.int32),
        },
        length,
    )
    image = obs["image"] if "image" in obs else obs["image_0"]
    emb = obs.get("natural_language_embedding", steps.get("language_embedding"))
    state = obs.get("state")
    return Trajectory(
        dataset=dataset,
        images=np.asarray(image, np.uint8),
        states=np.zeros((length, 0), np.float32)
        if state is None
        else np.asarray(state, np.float32).reshape(length, -1),
        actions=actions,
        instruction=_first_text(obs.get("natural_language_instruction"), steps.get("language_instruction")),
        is_first=is_first,
        is_last=is_last,
        is_terminal=is_terminal,
        rewards=_rewards(steps, length),
        embedding=None if emb is None or length == 0 else np.asarray(emb[0], np.float32),
        metadata=to_python(raw.get("episode_metadata", {})),
    )


def resize_images(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize uint8 ``[T, H, W, 3]`` frames to ``size = (height, width)`` (bilinear); no-op if equal.

    RT-1-X pads to the target aspect ratio before resizing (``resize_with_pad``); we resize
    directly, which matches it for same-aspect sources and stretches the others slightly.
    """
    images = np.asarray(images, np.uint8)
    if size is None or images.shape[1:3] == tuple(size):
        return images
    from PIL import Image

    h, w = size
    out = np.empty((images.shape[0], h, w, images.shape[3]), np.uint8)
    for i, frame in enumerate(images):
        out[i] = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
    return out
