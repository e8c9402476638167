"""Training samples: windows of the last ``N`` steps ending at each step, with a pad mask.

An episode of ``T`` steps gives ``T`` windows; window ``t`` holds steps ``t-N+1 .. t``. Near the
episode start the missing steps are front-padded: their images and tokens are zeros and
``pad_mask`` is False there (True = a real step), so a policy masks them out of attention.
The columns (numpy, leading axis = window) are what the Ray Data pipeline emits as rows:

============== ===================== =========================================================
column         dtype / shape         meaning
============== ===================== =========================================================
image          uint8 [N, H, W, 3]    frames of the window (zeros where padded)
pad_mask       bool [N]              True for real steps
window_tokens  int64 [N, 11]         action tokens of every step of the window (0 where padded)
tokens         int64 [11]            action tokens of the last step (the training target)
action         float32 [13]          flat RT-1 action of the last step (for statistics / losses)
embedding      float32 [E]           instruction embedding
instruction    str                   the instruction
dataset        str                   dataset name
dataset_id     int64                 index of the dataset in the source list / mixture
episode        int64                 episode index within its dataset (stream order)
step           int64                 index of the last step within its episode
============== ===================== =========================================================

State is left out on purpose: its size differs per dataset (so mixtures could not batch it)
and RT-1 does not consume it.
"""

from __future__ import annotations

import numpy as np

from xlab.data.rlds.schema import RLDSError, Trajectory, flatten_action
from xlab.data.rlds.tokenize import ActionTokenizer

WINDOW_COLUMNS = (
    "image",
    "pad_mask",
    "window_tokens",
    "tokens",
    "action",
    "embedding",
    "instruction",
    "dataset",
    "dataset_id",
    "episode",
    "step",
)
# Columns that convert to tensors (iter_torch_batches cannot batch strings).
TENSOR_COLUMNS = tuple(c for c in WINDOW_COLUMNS if c not in ("instruction", "dataset"))


def window_indices(length: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index [T, N], valid [T, N])``: step indices of every window, front-padded with index 0."""
    if window < 1:
        raise RLDSError(f"window must be >= 1, got {window}")
    idx = np.arange(length)[:, None] - (window - 1) + np.arange(window)[None, :]
    valid = idx >= 0
    return np.where(valid, idx, 0), valid


def episode_windows(
    traj: Trajectory,
    window: int,
    tokenizer: ActionTokenizer,
    embedding: np.ndarray,
    dataset_id: int = 0,
    episode: int = 0,
) -> dict[str, np.ndarray]:
    """All ``len(traj)`` windows of one standardized episode as columns (see the module table)."""
    length = len(traj)
    idx, valid = window_indices(length, window)
    images = traj.images[idx]  # [T, N, H, W, 3] (a copy: fancy indexing)
    images[~valid] = 0
    tokens = tokenizer.tokenize(traj.actions)  # [T, 11]
    window_tokens = tokens[idx]
    window_tokens[~valid] = 0
    emb = np.asarray(embedding, np.float32).reshape(1, -1)
    return {
        "image": images,
        "pad_mask": valid,
        "window_tokens": window_tokens,
        "tokens": tokens,
        "action": flatten_action(traj.actions),
        "embedding": np.repeat(emb, length, axis=0),
        "instruction": np.array([traj.instruction] * length, dtype=object),
        "dataset": np.array([traj.dataset] * length, dtype=object),
        "dataset_id": np.full(length, dataset_id, np.int64),
        "episode": np.full(length, episode, np.int64),
        "step": np.arange(length, dtype=np.int64),
    }


def concat_windows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate window column dicts along the window axis."""
    if not parts:
        raise RLDSError("no windows to concatenate")
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def take_windows(columns: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``index`` of a window column dict."""
    return {k: v[index] for k, v in columns.items()}
