"""Stream tokenized RLDS windows through Ray Data, mixing datasets by weight.

:class:`RLDSWindowDatasource` is a ``ray.data.Datasource`` with one read task per (dataset,
shard). Each task imports TensorFlow *inside the Ray worker*, decodes its shard with the
dataset's TFDS features, standardizes episodes, builds windows and tokenizes actions, and emits
rows with numpy columns (:mod:`xlab.rlds.windows`). Training workers then stream batches::

    from xlab.rlds import WindowOptions, read_rlds_windows, iter_torch_window_batches
    ds = read_rlds_windows(
        {"sim_reach": "/data/rlds/sim_reach/0.1.0", "fractal20220817_data": "/data/rlds/fractal20220817_data/0.1.0"},
        WindowOptions(window=6, image_size=(128, 128), seed=0),
        mixture=[("sim_reach", 1.0), ("fractal20220817_data", 3.0)])
    for batch in iter_torch_window_batches(ds, batch_size=32):   # dict of torch tensors
        ...

**Mixing** (see :mod:`xlab.rlds.mixture`): each dataset gets a rate = expected copies per
window, ``p_i * total_windows / windows_i``; a read task emits ``floor(rate)`` copies of each of
its windows plus one more with probability ``frac(rate)``, from an RNG seeded by (seed, epoch,
dataset, shard). One pass thus has about as many rows as the datasets have windows, with
dataset shares equal to the weights, without a global shuffle or materialisation. Read tasks
run in a seed-shuffled order across datasets, each shuffles its rows within a bounded buffer,
and ``iter_torch_window_batches`` adds Ray's local shuffle buffer across tasks.

**TensorFlow isolation**: read tasks run with their own ``runtime_env`` env vars. Ray reuses a
worker process only for work with the same runtime env, so the processes that imported
TensorFlow never host MuJoCo-rendering simulator actors (TF + MuJoCo rendering segfault). The
driver plans reads from ``dataset_info.json`` directly, without TensorFlow, for local datasets;
remote (``gs://``) ones are planned in a TF worker task.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.data import Datasource, ReadTask
from ray.data.block import BlockAccessor, BlockMetadata
from ray.data.collate_fn import NumpyBatchCollateFn

from xlab.rlds.complete import check_complete
from xlab.rlds.mixture import Mixture, copies_per_window, get_mixture, sampling_rates
from xlab.rlds.schema import RLDSError, RLDSShardError
from xlab.rlds.stats import STATS_FILE
from xlab.rlds.tokenize import RT1X_BOUNDS, ActionBounds, ActionTokenizer
from xlab.rlds.transforms import TRANSFORMS, get_transform
from xlab.rlds.windows import TENSOR_COLUMNS, take_windows

# Env vars of every worker that imports TensorFlow (see "TensorFlow isolation" above). One TF
# thread per task: Ray already runs one read task per core.
TF_WORKER_ENV = {
    "XLAB_TF_WORKER": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_ENABLE_ONEDNN_OPTS": "0",  # only decoding runs there; this just silences a log banner per worker
}


@dataclasses.dataclass(frozen=True)
class RLDSSource:
    """One dataset to read: its builder directory, the name windows and mixtures use, the split."""

    path: str
    name: str | None = None
    split: str = "train"
    transform: str | None = None


@dataclasses.dataclass
class SourcePlan:
    """What the driver knows about a source before reading: shards, sizes, transform."""

    source: RLDSSource
    name: str
    transform: str
    shard_paths: list[str]
    shard_lengths: list[int]
    num_steps: int | None
    embedding_model: str | None


_TEMPLATE_DEFAULT = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def _shard_paths(builder_dir: str, info: Mapping[str, Any], split: Mapping[str, Any]) -> list[str] | None:
    template = split.get("filepathTemplate") or _TEMPLATE_DEFAULT
    n = len(split.get("shardLengths", []))
    paths = []
    for i in range(n):
        name = (
            template.replace("{DATASET}", info["name"])
            .replace("{SPLIT}", split["name"])
            .replace("{FILEFORMAT}", info.get("fileFormat", "tfrecord"))
            .replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{n:05d}")
            .replace("{SHARD_INDEX}", f"{i:05d}")
            .replace("{NUM_SHARDS}", f"{n:05d}")
        )
        if "{" in name:  # a template field we do not know: let TFDS resolve it
            return None
        paths.append(f"{builder_dir}/{name}")
    return paths


def _resolve_transform(name: str, builder_name: str, xlab_meta: Any, transform: str | None) -> str:
    # Same rule as RLDSDataset: xlab metadata, else the given name if registered, else the builder's.
    transform = transform or ("xlab" if xlab_meta else name if name in TRANSFORMS else builder_name)
    get_transform(transform)
    return transform


def plan_local(source: RLDSSource) -> SourcePlan | None:
    """Plan a local source from its JSON files (no TensorFlow); None if TFDS must resolve it."""
    builder_dir = str(source.path).rstrip("/")
    info_path = Path(builder_dir) / "dataset_info.json"
    if not info_path.exists():
        raise RLDSError(f"no RLDS dataset at {builder_dir} (dataset_info.json missing)")
    check_complete(builder_dir)
    info = json.loads(info_path.read_text())
    splits = {s["name"]: s for s in info.get("splits", [])}
    if source.split not in splits:
        raise RLDSError(f"dataset at {builder_dir} has no split {source.split!r}; splits: {sorted(splits)}")
    split = splits[source.split]
    paths = _shard_paths(builder_dir, info, split)
    if paths is None:
        return None
    for p in paths:
        if not os.path.exists(p):
            raise RLDSShardError(p, "missing: it is listed in dataset_info.json but not on disk")
    meta_path = Path(builder_dir) / "metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    xlab_meta = meta.get("xlab")
    stats_path = Path(builder_dir) / STATS_FILE
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    name = source.name or info["name"]
    return SourcePlan(
        source=source,
        name=name,
        transform=_resolve_transform(name, info["name"], xlab_meta, source.transform),
        shard_paths=paths,
        shard_lengths=[int(n) for n in split["shardLengths"]],
        num_steps=None
        if stats is None or stats.get("split", source.split) != source.split
        else int(stats["num_steps"]),
        embedding_model=(xlab_meta or {}).get("embedding_model"),
    )


def _plan_with_tf(source: RLDSSource, compute_stats: bool, stats_cache_dir: str | None) -> SourcePlan:
    from xlab.rlds.reader import open_rlds
    from xlab.rlds.stats import load_or_compute_statistics

    ds = open_rlds(source.path, name=source.name, split=source.split, transform=source.transform)
    stats = load_or_compute_statistics(ds, stats_cache_dir) if compute_stats else ds.statistics()
    return SourcePlan(
        source=source,
        name=ds.name,
        transform=ds.transform,
        shard_paths=ds.shard_paths,
        shard_lengths=ds.shard_lengths,
        num_steps=None if stats is None else int(stats["num_steps"]),
        embedding_model=ds.embedding_model,
    )


def plan_sources(
    sources: Sequence[RLDSSource], need_sizes: bool, stats_cache_dir: str | None = None
) -> list[SourcePlan]:
    """Plan every source: JSON for local ones, a TensorFlow worker task for the rest (or to count steps)."""
    plans: list[SourcePlan | None] = []
    for s in sources:
        plans.append(plan_local(s) if "://" not in s.path else None)
    todo = [i for i, p in enumerate(plans) if p is None or (need_sizes and p.num_steps is None)]
    if todo:
        remote = ray.remote(_plan_with_tf).options(runtime_env={"env_vars": TF_WORKER_ENV}, num_cpus=1)
        refs = [remote.remote(sources[i], need_sizes, stats_cache_dir) for i in todo]
        for i, plan in zip(todo, ray.get(refs), strict=True):
            plans[i] = plan
    return [p for p in plans if p is not None]


def _read_shard_windows(spec: dict[str, Any]) -> Iterator[Any]:
    """Read task body (runs in a Ray worker): decode one shard, emit window blocks."""
    from xlab.rlds.reader import iter_windows, open_rlds

    src: RLDSSource = spec["source"]
    ds = open_rlds(
        src.path,
        name=spec["name"],
        split=src.split,
        transform=spec["transform"],
        image_size=spec["image_size"],
        num_threads=spec["tf_threads"],
        check_shards=False,
    )
    tokenizer = ActionTokenizer(spec["bounds"], spec["vocab_size"])
    rng = np.random.default_rng([spec["seed"], spec["epoch"], spec["dataset_id"], spec["shard"]])
    buffer: list[dict[str, np.ndarray]] = []
    buffered = 0

    def flush() -> Iterator[Any]:
        cols = {k: np.concatenate([b[k] for b in buffer], axis=0) for k in buffer[0]}
        order = rng.permutation(len(cols["step"]))
        for start in range(0, len(order), spec["rows_per_block"]):
            yield BlockAccessor.batch_to_block(
                take_windows(cols, order[start : start + spec["rows_per_block"]])
            )

    for cols in iter_windows(
        ds,
        spec["window"],
        tokenizer,
        shards=[spec["shard"]],
        dataset_id=spec["dataset_id"],
        embedding=spec["embedding"],
        embedding_backend=spec["embedding_backend"],
        embed_cache_dir=spec["embed_cache_dir"],
        chunk=spec["chunk"],
        drop_last=spec["drop_last"],
        state_dim=spec["state_dim"],
    ):
        copies = copies_per_window(spec["rate"], len(cols["step"]), rng)
        if copies.sum() == 0:
            continue
        buffer.append(take_windows(cols, np.repeat(np.arange(len(copies)), copies)))
        buffered += int(copies.sum())
        if buffered >= spec["buffer_windows"]:
            yield from flush()
            buffer, buffered = [], 0
    if buffer:
        yield from flush()


@dataclasses.dataclass(frozen=True)
class WindowOptions:
    """How a read cuts, tokenizes and streams windows: the same for every dataset of the read."""

    window: int = 6
    """Frames of history per window."""
    image_size: tuple[int, int] = (128, 128)
    """(height, width) the frames are resized to."""
    bounds: ActionBounds = RT1X_BOUNDS
    """Action bounds of the tokenizer (labels and decoding share them)."""
    vocab_size: int = 256
    """Bins per action dimension."""
    seed: int = 0
    """Fixes the whole sequence (sampling draws, read order, shuffles)."""
    epoch: int = 0
    """Changes the mixture's sampling draw while ``seed`` stays."""
    embedding: str = "auto"
    """Instruction embedding: ``stored``, ``recompute`` or ``auto`` (see :func:`xlab.rlds.reader.episode_embedding`)."""
    embedding_backend: str | None = None
    """Sentence encoder for computed embeddings (None: the default; one for a whole mixture)."""
    embed_cache_dir: str | None = None
    rows_per_block: int = 64
    """Windows per emitted block."""
    buffer_windows: int = 256
    """Windows a read task shuffles together before emitting them."""
    tf_threads: int = 1
    """TensorFlow threads per read task."""
    chunk: int = 1
    """Future action steps per window (action chunking)."""
    drop_last: bool = True
    """No window ends on an episode's last step (its action is not valid)."""
    state_dim: int = 0
    """Add the zero-padded proprioceptive ``state`` column of this width (0: none)."""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a flat dict (``dataclasses.asdict`` would turn ``bounds`` into a dict too)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class RLDSWindowDatasource(Datasource):
    """Ray Data source of tokenized windows from one or more RLDS datasets (one read task per shard)."""

    def __init__(
        self,
        sources: Sequence[RLDSSource],
        options: WindowOptions = WindowOptions(),
        *,
        mixture: Mixture | str | Sequence[tuple[str, float]] | None = None,
        stats_cache_dir: str | None = None,
    ):
        super().__init__()
        if not sources:
            raise RLDSError("no RLDS sources to read")
        self.sources = list(sources)
        self.mixture = get_mixture(mixture) if mixture is not None else None
        self.plans = plan_sources(
            self.sources, need_sizes=self.mixture is not None, stats_cache_dir=stats_cache_dir
        )
        names = [p.name for p in self.plans]
        if len(set(names)) != len(names):
            raise RLDSError(f"two sources share a dataset name: {names}; give them distinct RLDSSource.name")
        if self.mixture is not None:
            unknown = [d for d in self.mixture.datasets if d not in names]
            if unknown:
                raise RLDSError(
                    f"mixture {self.mixture.name!r} names datasets without a source: {unknown}; sources: {names}"
                )
            sizes = {p.name: int(p.num_steps or 0) for p in self.plans}
            rates = sampling_rates({d: sizes[d] for d in self.mixture.datasets}, self.mixture)
            self.rates = {n: rates.get(n, 0.0) for n in names}
        else:
            self.rates = dict.fromkeys(names, 1.0)
        self.options = options
        self.window, self.image_size = int(options.window), tuple(options.image_size)

    def _row_bytes(self) -> int:
        h, w = self.image_size
        return self.window * (h * w * 3 + 11 * 8 + 1) + 2048  # the image dominates

    def _expected_rows(self, plan: SourcePlan, shard: int) -> int:
        steps_per_episode = (plan.num_steps / max(1, sum(plan.shard_lengths))) if plan.num_steps else 50.0
        return int(round(plan.shard_lengths[shard] * steps_per_episode * self.rates[plan.name]))

    def estimate_inmemory_data_size(self) -> int | None:
        rows = sum(self._expected_rows(p, i) for p in self.plans for i in range(len(p.shard_paths)))
        return rows * self._row_bytes()

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        tasks = []
        for dataset_id, plan in enumerate(self.plans):
            if self.rates[plan.name] <= 0:
                continue
            for shard, path in enumerate(plan.shard_paths):
                spec = dict(
                    self.options.as_dict(),
                    source=plan.source,
                    name=plan.name,
                    transform=plan.transform,
                    dataset_id=dataset_id,
                    shard=shard,
                    rate=self.rates[plan.name],
                )
                rows = self._expected_rows(plan, shard)
                meta = BlockMetadata(
                    num_rows=rows, size_bytes=rows * self._row_bytes(), input_files=[path], exec_stats=None
                )
                tasks.append(
                    ReadTask(
                        functools.partial(_read_shard_windows, spec),
                        meta,
                        per_task_row_limit=per_task_row_limit,
                    )
                )
        # Seeded order interleaves datasets and shards across the stream.
        order = np.random.default_rng([self.options.seed, self.options.epoch]).permutation(len(tasks))
        return [tasks[i] for i in order]


def _as_sources(sources: Mapping[str, str] | Iterable[RLDSSource | str]) -> list[RLDSSource]:
    if isinstance(sources, Mapping):
        return [RLDSSource(path=str(p), name=n) for n, p in sources.items()]
    return [s if isinstance(s, RLDSSource) else RLDSSource(path=str(s)) for s in sources]


def read_rlds_windows(
    sources: Mapping[str, str] | Iterable[RLDSSource | str],
    options: WindowOptions = WindowOptions(),
    *,
    mixture: Mixture | str | Sequence[tuple[str, float]] | None = None,
    stats_cache_dir: str | None = None,
    concurrency: int | None = None,
    ray_remote_args: dict[str, Any] | None = None,
) -> ray.data.Dataset:
    """A ``ray.data.Dataset`` of tokenized windows from RLDS sources, mixed by ``mixture`` if given.

    ``sources``: ``{name: builder_dir}`` or a list of :class:`RLDSSource` / paths (name = the
    builder's). ``options``: how windows are cut and tokenized (:class:`WindowOptions`). ``mixture``: a
    registered name, a :class:`Mixture` or ``[(name, weight)]`` over the source names; None reads every
    window once. ``concurrency`` caps parallel read tasks.
    """
    src = RLDSWindowDatasource(_as_sources(sources), options, mixture=mixture, stats_cache_dir=stats_cache_dir)
    remote_args = dict(ray_remote_args or {})
    env = dict(remote_args.pop("runtime_env", None) or {})
    env["env_vars"] = {**TF_WORKER_ENV, **env.get("env_vars", {})}
    return ray.data.read_datasource(
        src, concurrency=concurrency, runtime_env=env, ray_remote_args=remote_args or None
    )


class WindowCollate(NumpyBatchCollateFn):
    """numpy window batch -> dict of torch tensors of ``columns`` (string columns dropped)."""

    def __init__(self, columns: Sequence[str] = TENSOR_COLUMNS):
        self.columns = list(columns)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        # Arrow-backed arrays are read-only; torch wants writable memory (one copy per batch).
        return {
            k: torch.from_numpy(batch[k] if batch[k].flags.writeable else batch[k].copy())
            for k in self.columns
        }


def iter_torch_window_batches(
    ds: Any,
    batch_size: int = 32,
    *,
    columns: Sequence[str] = TENSOR_COLUMNS,
    local_shuffle_buffer_size: int | None = None,
    local_shuffle_seed: int | None = None,
    **kwargs: Any,
) -> Iterator[dict[str, Any]]:
    """Torch batches of the tensor columns (``image`` uint8 ``[B, N, H, W, 3]``, ``tokens`` ``[B, 11]``...).

    ``ds`` is a ``ray.data.Dataset`` or a training worker's ``DataIterator``
    (``ray.train.get_dataset_shard(...)``); this is ``iter_torch_batches`` with a ``collate_fn``
    that keeps ``columns`` and drops the string ones (torch cannot batch them). Dropping them in
    the collate function rather than with ``select_columns`` matters: a projection is a separate
    Ray Data operator (it cannot fuse with the TF-env read tasks), which sent every block through
    the object store once more and halved throughput.
    """
    return ds.iter_torch_batches(
        batch_size=batch_size,
        local_shuffle_buffer_size=local_shuffle_buffer_size,
        local_shuffle_seed=local_shuffle_seed,
        collate_fn=WindowCollate(columns),
        **kwargs,
    )
