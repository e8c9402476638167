"""Dataset statistics (``dataset_statistics.json`` beside the data), as Octo-style pipelines keep them.

Per dimension of the flat 13-d RT-1 action (``ACTION_DIM_NAMES``) and of the state: mean, std,
min, max, q01, q99; plus episode and step counts. :func:`~xlab.rlds.write_rlds` writes the
file while writing a dataset; for any other RLDS dataset :func:`load_or_compute_statistics` reads
it once through the loader and caches it (beside the data when writable, else in ``cache_dir``).
The mixture sampler uses ``num_steps`` to turn dataset weights into per-window sampling rates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from xlab.rlds.schema import ACTION_DIM, ACTION_DIM_NAMES, RLDSError, Trajectory, flatten_action

STATS_FILE = "dataset_statistics.json"


def array_stats(values: np.ndarray, names: Iterable[str] | None = None) -> dict[str, Any]:
    """mean/std/min/max/q01/q99 per column of ``values [N, D]`` (lists of floats; empty if N == 0)."""
    values = np.asarray(values, np.float64)
    d = values.shape[1] if values.ndim == 2 else 0
    out: dict[str, Any] = {"dim": d}
    if names is not None:
        out["names"] = list(names)
    if values.shape[0] == 0 or d == 0:
        for k in ("mean", "std", "min", "max", "q01", "q99"):
            out[k] = [0.0] * d
        return out
    out.update(
        mean=values.mean(0).tolist(),
        std=values.std(0).tolist(),
        min=values.min(0).tolist(),
        max=values.max(0).tolist(),
        q01=np.quantile(values, 0.01, axis=0).tolist(),
        q99=np.quantile(values, 0.99, axis=0).tolist(),
    )
    return out


class StatsAccumulator:
    """Collects flat actions and states episode by episode; :meth:`result` gives the statistics."""

    def __init__(self) -> None:
        self._actions: list[np.ndarray] = []
        self._states: list[np.ndarray] = []
        self.num_episodes = 0
        self.num_steps = 0

    def add(self, actions: dict[str, np.ndarray], states: np.ndarray) -> None:
        flat = flatten_action(actions)
        self._actions.append(flat.reshape(-1, ACTION_DIM))
        self._states.append(np.asarray(states, np.float32).reshape(flat.shape[0], -1))
        self.num_episodes += 1
        self.num_steps += int(flat.shape[0])

    def add_trajectory(self, traj: Trajectory) -> None:
        self.add(traj.actions, traj.states)

    def result(self, **extra: Any) -> dict[str, Any]:
        actions = np.concatenate(self._actions) if self._actions else np.zeros((0, ACTION_DIM))
        dims = {s.shape[1] for s in self._states}
        if len(dims) > 1:
            raise RLDSError(f"episodes have different state sizes {sorted(dims)}")
        states = np.concatenate(self._states) if self._states else np.zeros((0, 0))
        return {
            "num_episodes": self.num_episodes,
            "num_steps": self.num_steps,
            "action": array_stats(actions, ACTION_DIM_NAMES),
            "state": array_stats(states),
            **extra,
        }


def write_statistics(builder_dir: str | os.PathLike, stats: dict[str, Any]) -> Path:
    """Write ``dataset_statistics.json`` into ``builder_dir`` (atomically); return its path."""
    path = Path(builder_dir) / STATS_FILE
    tmp = path.with_name(f".{STATS_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(stats, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_statistics(builder_dir: str) -> dict[str, Any] | None:
    """The statistics stored beside a dataset, or None (works for ``gs://`` paths through TF)."""
    path = f"{str(builder_dir).rstrip('/')}/{STATS_FILE}"
    if "://" not in path:
        p = Path(path)
        return json.loads(p.read_text()) if p.exists() else None
    from xlab.rlds.schema import require_tfds

    tf, _ = require_tfds()
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def load_or_compute_statistics(dataset, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Statistics of an opened :class:`~xlab.rlds.RLDSDataset`: stored, cached, or computed now.

    Computing reads every episode once (standardized actions, so statistics of different datasets
    are comparable). The result is written beside the data if that is a writable local directory,
    else under ``cache_dir/<name>/<version>/``.
    """
    from xlab.rlds.complete import check_complete

    check_complete(dataset.path)  # never statistics over a half-written dataset
    stats = read_statistics(dataset.path)
    if stats is not None:
        return stats
    cached = Path(cache_dir) / dataset.name / dataset.version if cache_dir else None
    if cached is not None and (cached / STATS_FILE).exists():
        return json.loads((cached / STATS_FILE).read_text())
    acc = StatsAccumulator()
    for traj in dataset.iter_episodes(resize=False):
        acc.add_trajectory(traj)
    stats = acc.result(dataset=dataset.name, version=dataset.version, split=dataset.split)
    local = Path(dataset.path)
    if "://" not in str(dataset.path) and os.access(local, os.W_OK):
        write_statistics(local, stats)
    elif cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        write_statistics(cached, stats)
    return stats
