"""Training samples: windows of the last ``N`` steps ending at each step, with a pad mask.

An episode of ``T`` steps gives ``T - 1`` windows; window ``t`` holds steps ``t-N+1 .. t``. Near the
episode start the missing steps are front-padded: their images and tokens are zeros and
``pad_mask`` is False there (True = a real step), so a policy masks them out of attention. The
window ending at the last step is dropped (``drop_last=True``, as the RT-1-X training notebook
does): RLDS says the action of the ``is_last`` step is not valid, and training on it teaches a
policy to stop moving where the demonstration happened to end. With action chunking (``chunk=K``)
``window_tokens`` also holds the ``K - 1`` steps after the window, and ``token_mask`` says which of
the ``N + K - 1`` steps have a valid action (False for padding, past the episode's end, and on the
last step unless ``drop_last=False``).
The columns (numpy, leading axis = window) are what the Ray Data pipeline emits as rows:

============== ===================== =========================================================
column         dtype / shape         meaning
============== ===================== =========================================================
image          uint8 [N, H, W, 3]    frames of the window (zeros where padded)
pad_mask       bool [N]              True for real steps
window_tokens  int64 [N+K-1, 11]     action tokens of the window's steps and the K-1 after (0 where invalid)
token_mask     bool [N+K-1]          True where that step has a valid action
state          float32 [S]           proprio state of each step, zero-padded to S (only with state_dim=S)
tokens         int64 [11]            action tokens of the last step (the training target)
action         float32 [13]          flat RT-1 action of the last step (for statistics / losses)
embedding      float32 [E]           instruction embedding
instruction    str                   the instruction
dataset        str                   dataset name
dataset_id     int64                 index of the dataset in the source list / mixture
episode        int64                 episode index within its dataset (stream order)
step           int64                 index of the last step within its episode
============== ===================== =========================================================

State is left out unless asked for (``state_dim``): RT-1 does not consume it, and its size differs
per dataset, so a mixture pads every dataset's state with zeros to one ``state_dim``; the ``state``
column is then ``[N, S]`` (the window's states).
"""

from __future__ import annotations

import numpy as np

from xlab.rlds.schema import RLDSError, Trajectory, flatten_action
from xlab.rlds.tokenize import ActionTokenizer

WINDOW_COLUMNS = (
    "image",
    "pad_mask",
    "window_tokens",
    "token_mask",
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
#: The tensor columns with the optional proprio ``state`` (windows built with ``state_dim > 0``).
STATE_COLUMNS = (*TENSOR_COLUMNS, "state")


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
    chunk: int = 1,
    drop_last: bool = True,
    state_dim: int = 0,
) -> dict[str, np.ndarray]:
    """The windows of one standardized episode as columns (see the module table).

    ``len(traj) - 1`` windows with ``drop_last`` (the default), else ``len(traj)``; ``chunk`` future
    steps of tokens per window; ``state_dim > 0`` adds the zero-padded ``state`` column.
    """
    if chunk < 1:
        raise RLDSError(f"chunk must be >= 1, got {chunk}")
    length = len(traj)
    ends = np.arange(length - 1 if drop_last and length > 1 else length)
    idx, valid = window_indices(length, window)
    idx, valid = idx[ends], valid[ends]
    images = traj.images[idx]  # [W, N, H, W, 3] (a copy: fancy indexing)
    images[~valid] = 0
    tokens = tokenizer.tokenize(traj.actions)  # [T, 11]
    # Steps t-N+1 .. t+K-1 of every window; an action is valid on a real step before the last one (on
    # the last one too when the caller keeps it: drop_last=False trains the terminate token there).
    steps = ends[:, None] - (window - 1) + np.arange(window + chunk - 1)[None, :]
    last_valid = length - 2 if drop_last and length > 1 else length - 1
    token_mask = (steps >= 0) & (steps <= last_valid)
    window_tokens = tokens[np.clip(steps, 0, length - 1)]
    window_tokens[~token_mask] = 0
    n = len(ends)
    emb = np.asarray(embedding, np.float32).reshape(1, -1)
    out = {
        "image": images,
        "pad_mask": valid,
        "window_tokens": window_tokens,
        "token_mask": token_mask,
        "tokens": tokens[ends],
        "action": flatten_action(traj.actions)[ends],
        "embedding": np.repeat(emb, n, axis=0),
        "instruction": np.array([traj.instruction] * n, dtype=object),
        "dataset": np.array([traj.dataset] * n, dtype=object),
        "dataset_id": np.full(n, dataset_id, np.int64),
        "episode": np.full(n, episode, np.int64),
        "step": ends.astype(np.int64),
    }
    if state_dim:
        states = np.zeros((length, state_dim), np.float32)
        d = min(state_dim, traj.states.shape[-1] if traj.states.ndim == 2 else 0)
        if d:
            states[:, :d] = traj.states[:, :d]
        win_states = states[idx]
        win_states[~valid] = 0
        out["state"] = win_states
    return out


def concat_windows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate window column dicts along the window axis."""
    if not parts:
        raise RLDSError("no windows to concatenate")
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def take_windows(columns: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``index`` of a window column dict."""
    return {k: v[index] for k, v in columns.items()}
