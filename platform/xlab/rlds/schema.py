"""The common data model of the RLDS pipeline: RT-1 action layout, episodes in, trajectories out.

Three shapes of data flow through :mod:`xlab.rlds`:

* :class:`Episode` -- what a simulator or converter hands to :func:`~xlab.rlds.write_rlds`:
  plain numpy arrays, no TensorFlow. Actions are the RT-1 action dict.
* the raw RLDS episode a TFDS builder decodes (``{"steps": {...}, <episode metadata>}``, steps
  batched along the first axis); its layout differs per dataset.
* :class:`Trajectory` -- what every registered standardization transform returns: one layout for
  all datasets (RT-1 action dict, ``[T, H, W, 3]`` images, state, one instruction), which the
  window builder and the tokenizer consume.

The RT-1 action dict (``ACTION_SPEC``) keeps RT-1's key order, which is also the token order:
mode (``terminate_episode``), arm (``world_vector``, ``rotation_delta``,
``gripper_closedness_action``), base (``base_displacement_vertical_rotation``,
``base_displacement_vector``). ``terminate_episode`` is a one-hot of 3 (terminate / arm / base);
flattened it takes 3 slots, tokenized 1 (its argmax), so the flat vector has 13 numbers and the
token sequence 11.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from xlab.errors import XlabError

# (key, size) in RT-1 order; the flat action vector and the token sequence follow this order.
ACTION_SPEC: tuple[tuple[str, int], ...] = (
    ("terminate_episode", 3),
    ("world_vector", 3),
    ("rotation_delta", 3),
    ("gripper_closedness_action", 1),
    ("base_displacement_vertical_rotation", 1),
    ("base_displacement_vector", 2),
)
ACTION_KEYS: tuple[str, ...] = tuple(k for k, _ in ACTION_SPEC)
ACTION_DIM = sum(n for _, n in ACTION_SPEC)  # 13: the flat vector (terminate one-hot = 3 slots)
NUM_ACTION_TOKENS = 11  # terminate is one token (its argmax)

# Names of the 13 flat dimensions, for statistics files and plots.
ACTION_DIM_NAMES: tuple[str, ...] = tuple(
    f"{k}[{i}]" if n > 1 else k for k, n in ACTION_SPEC for i in range(n)
)

# terminate_episode one-hots (RT-1 convention): index 0 = terminate, 1 = keep going (arm), 2 = base.
TERMINATE = np.array([1, 0, 0], np.int32)
CONTINUE = np.array([0, 1, 0], np.int32)


class RLDSError(XlabError):
    """A problem with an RLDS dataset, its layout or a request about it."""


class RLDSShardError(RLDSError):
    """A shard file is missing, truncated or corrupt; ``path`` names it."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"RLDS shard {path}: {reason}")

    def __reduce__(self):  # raised in Ray read tasks: must unpickle in the driver
        return (type(self), (self.path, self.reason))


class TensorFlowMissingError(RLDSError, ImportError):
    """TensorFlow / tensorflow-datasets are needed for reading or writing RLDS but are not installed."""


def require_tfds():
    """Import and return ``(tensorflow, tensorflow_datasets)``; raise a clear error if missing.

    Every TensorFlow import of the package goes through here, inside functions, so that importing
    :mod:`xlab.rlds` never loads TensorFlow (a process that renders MuJoCo must never have it).
    """
    import os

    # TF's C++ INFO/WARNING lines (CPU feature guard, oneDNN) flood test and worker logs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - exercised only on machines without TF
        raise TensorFlowMissingError(
            f"reading/writing RLDS needs TensorFlow and tensorflow-datasets ({e}); "
            "install them with `pip install tensorflow-cpu tensorflow-datasets`"
        ) from None
    return tf, tfds


def complete_action(
    action: Mapping[str, Any], length: int, terminal_last: bool = True
) -> dict[str, np.ndarray]:
    """The full RT-1 action dict ``{key: [T, size]}`` from a partial one.

    Missing continuous keys become zeros (e.g. an arm without a mobile base). A missing
    ``terminate_episode`` follows RT-1: ``[0,1,0]`` ("keep going") on every step and ``[1,0,0]``
    on the last one when ``terminal_last``.
    """
    out: dict[str, np.ndarray] = {}
    for key, size in ACTION_SPEC:
        if key in action and action[key] is not None:
            arr = np.asarray(action[key])
            arr = arr.reshape(length, size)
        elif key == "terminate_episode":
            arr = np.tile(CONTINUE, (length, 1))
            if terminal_last and length:
                arr[-1] = TERMINATE
        else:
            arr = np.zeros((length, size), np.float32)
        out[key] = arr.astype(np.int32 if key == "terminate_episode" else np.float32)
    unknown = set(action) - set(ACTION_KEYS)
    if unknown:
        raise RLDSError(f"unknown RT-1 action keys {sorted(unknown)}; expected some of {list(ACTION_KEYS)}")
    return out


def flatten_action(action: Mapping[str, Any]) -> np.ndarray:
    """RT-1 action dict (leading dims ``[...]``) -> float32 ``[..., 13]`` in ``ACTION_SPEC`` order."""
    parts = [np.asarray(action[k], np.float32).reshape(*np.shape(action[k])[:-1], n) for k, n in ACTION_SPEC]
    return np.concatenate(parts, axis=-1)


def unflatten_action(vector: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of :func:`flatten_action` (``terminate_episode`` back to int32)."""
    vector = np.asarray(vector)
    if vector.shape[-1] != ACTION_DIM:
        raise RLDSError(f"flat RT-1 action must have {ACTION_DIM} numbers, got shape {vector.shape}")
    out, i = {}, 0
    for key, n in ACTION_SPEC:
        part = vector[..., i : i + n]
        out[key] = part.astype(np.int32) if key == "terminate_episode" else part.astype(np.float32)
        i += n
    return out


@dataclasses.dataclass(eq=False)  # arrays have no boolean ==
class Episode:
    """One episode as plain numpy, the input of :func:`~xlab.rlds.write_rlds`.

    ``images`` uint8 ``[T, H, W, 3]``; ``states`` float32 ``[T, D]``; ``actions`` the RT-1 dict
    ``{key: [T, size]}`` (missing keys are filled by :func:`complete_action`). ``rewards``,
    ``discounts`` and ``is_terminal`` default to zeros, ones and "last step is terminal iff
    ``success``" (a time-limit cut is not terminal in RLDS). ``embedding`` is the instruction
    embedding (``[E]``); the writer computes it from ``instruction`` when it is None.
    """

    images: np.ndarray
    states: np.ndarray
    actions: Mapping[str, np.ndarray]
    instruction: str
    rewards: np.ndarray | None = None
    discounts: np.ndarray | None = None
    is_terminal: np.ndarray | None = None
    embodiment: str = ""
    task: str = ""
    episode_id: str = ""
    success: bool = False
    seed: int = -1
    embedding: np.ndarray | None = None

    def __len__(self) -> int:
        return int(np.shape(self.images)[0])


@dataclasses.dataclass(eq=False)
class Trajectory:
    """One standardized episode: the common step format every dataset is mapped to.

    ``images`` uint8 ``[T, H, W, 3]`` (resized to the model size by the reader), ``states`` float32
    ``[T, D]`` (``D`` differs per dataset, may be 0), ``actions`` the full RT-1 dict, ``instruction``
    one string, ``embedding`` the instruction embedding stored in the dataset (``[E]``) or None,
    ``metadata`` the episode metadata as plain Python values.
    """

    dataset: str
    images: np.ndarray
    states: np.ndarray
    actions: dict[str, np.ndarray]
    instruction: str
    is_first: np.ndarray
    is_last: np.ndarray
    is_terminal: np.ndarray
    rewards: np.ndarray
    embedding: np.ndarray | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(np.shape(self.images)[0])


def to_str(value: Any) -> str:
    """TFDS hands text back as bytes (or numpy bytes); make it ``str``."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    return str(value)


def to_python(value: Any) -> Any:
    """Nested TFDS metadata (numpy scalars, bytes) -> JSON-friendly Python values."""
    if isinstance(value, Mapping):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, bytes | np.bytes_):
        return to_str(value)
    if isinstance(value, np.ndarray):
        return to_python(value.item()) if value.shape == () else [to_python(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
