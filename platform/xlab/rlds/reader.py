"""One loader for every RLDS dataset: a local TFDS directory or Open X-Embodiment on GCS.

:func:`open_rlds` opens a dataset with ``tfds.builder_from_directory`` -- the builder directory
``.../<name>/<version>`` of anything :func:`~xlab.rlds.write_rlds` wrote, a copy of real
data under ``~/tensorflow_datasets``, or ``gs://gresearch/robotics/<name>/0.1.0``
(:func:`oxe_path`; needs network access, so untested here) -- and iterates episodes as numpy,
standardized by the transform registered for the dataset (:mod:`xlab.rlds.transforms`)::

    from xlab.rlds import open_rlds, oxe_path
    ds = open_rlds("/data/rlds/metaworld_pick_place/0.1.0", image_size=(128, 128))
    for traj in ds.iter_episodes():          # Trajectory: RT-1 actions, resized images, instruction
        ...
    ds = open_rlds(oxe_path("fractal20220817_data"))   # real data, same code path

Shards are read one at a time (``tf.data.TFRecordDataset`` + the builder's feature decoder), so
every failure names its file: a shard listed in ``dataset_info.json`` but absent, a corrupt
record (TF ``DataLossError``), or a truncated file (fewer episodes than ``dataset_info.json``
lists -- TF reads a cut-off file silently) raises :class:`~xlab.rlds.RLDSShardError`.
TensorFlow is imported when a dataset is opened, never when this module is imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xlab.rlds.complete import check_complete, is_temp_dir
from xlab.rlds.schema import RLDSError, RLDSShardError, Trajectory, require_tfds
from xlab.rlds.stats import read_statistics
from xlab.rlds.tokenize import ActionTokenizer
from xlab.rlds.transforms import TRANSFORMS, get_transform, resize_images
from xlab.rlds.windows import episode_windows

OXE_BUCKET = "gs://gresearch/robotics"
EMBEDDING_MODES = ("auto", "stored", "recompute")


def oxe_path(name: str, version: str = "0.1.0", bucket: str = OXE_BUCKET) -> str:
    """Builder directory of an Open X-Embodiment dataset on GCS (``gs://gresearch/robotics/NAME/VERSION``)."""
    return f"{bucket.rstrip('/')}/{name}/{version}"


def find_builder_dir(root: str | os.PathLike, name: str, version: str | None = None) -> Path:
    """``root/name/version`` (newest version when None) holding a ``dataset_info.json``."""
    base = Path(root) / name
    if version is not None:
        path = base / version
    else:
        versions = sorted(
            (p for p in base.glob("*") if (p / "dataset_info.json").exists() and not is_temp_dir(p)),
            key=lambda p: tuple(int(x) if x.isdigit() else 0 for x in p.name.split(".")),
        )
        if not versions:
            raise RLDSError(
                f"no RLDS dataset {name!r} under {root} (expected {base}/<version>/dataset_info.json)"
            )
        path = versions[-1]
    if not (path / "dataset_info.json").exists():
        raise RLDSError(f"no RLDS dataset at {path} (dataset_info.json missing)")
    return path


def _clean_tf_message(e: Exception) -> str:
    msg = getattr(e, "message", None) or str(e)
    msg = re.sub(r"\{\{[^}]*\}\}\s*", "", msg)  # TF's "{{function_node ...}}" prefix
    msg = re.sub(r"\s*\[Op:[^\]]*\].*$", "", msg, flags=re.S)
    return f"{type(e).__name__}: {msg.strip()}"


class RLDSDataset:
    """An opened RLDS dataset (one split). Build with :func:`open_rlds`.

    Attributes: ``path`` (builder dir), ``name`` (dataset name, used for the transform and in
    windows), ``version``, ``split``, ``transform`` (registered transform name), ``image_size``
    ((H, W) frames are resized to, or None), ``builder`` (the TFDS builder), ``metadata``
    (``builder.info.metadata`` as a dict).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        split: str = "train",
        transform: str | None = None,
        image_size: tuple[int, int] | None = None,
        num_threads: int | None = None,
        check_shards: bool = True,
    ):
        self.path = str(path).rstrip("/")
        remote = "://" in self.path
        if not remote and not (Path(self.path) / "dataset_info.json").exists():
            raise RLDSError(
                f"no RLDS dataset at {self.path} (dataset_info.json missing); point at the builder directory "
                "<root>/<name>/<version>, e.g. find_builder_dir(root, name)"
            )
        check_complete(self.path)  # before TensorFlow loads: an interrupted write is refused
        tf, tfds = require_tfds()
        try:
            self.builder = tfds.builder_from_directory(self.path)
        except Exception as e:  # TFDS raises many types for a bad directory
            raise RLDSError(f"cannot open RLDS dataset at {self.path}: {_clean_tf_message(e)}") from None
        info = self.builder.info
        self.name = name or info.name
        self.version = str(info.version)
        if split not in info.splits:
            raise RLDSError(
                f"dataset {self.name} at {self.path} has no split {split!r}; splits: {sorted(info.splits)}"
            )
        self.split = split
        self.metadata: dict[str, Any] = dict(info.metadata or {})
        self.xlab_meta: dict[str, Any] | None = self.metadata.get("xlab")
        if transform is None:
            # Our own datasets carry xlab metadata whatever their name; others go by name (the
            # caller's name for it if registered, else the builder's own, e.g. for a renamed copy).
            transform = "xlab" if self.xlab_meta else self.name if self.name in TRANSFORMS else info.name
        get_transform(transform)  # fail now, naming the registered transforms
        self.transform = transform
        self.image_size = tuple(image_size) if image_size else None
        self.num_threads = num_threads
        split_info = info.splits[split]
        self.shard_paths: list[str] = [os.fspath(p) for p in split_info.filepaths]
        self.shard_lengths: list[int] = [int(n) for n in split_info.shard_lengths]
        if check_shards and not remote:
            # Local existence checks are cheap; on GCS each shard is checked when it is read.
            for p in self.shard_paths:
                if not tf.io.gfile.exists(p):
                    raise RLDSShardError(p, "missing: it is listed in dataset_info.json but not on disk")

    def __repr__(self) -> str:
        return f"RLDSDataset({self.name!r}, path={self.path!r}, split={self.split!r}, episodes={self.num_episodes})"

    @property
    def num_episodes(self) -> int:
        return sum(self.shard_lengths)

    @property
    def num_shards(self) -> int:
        return len(self.shard_paths)

    @property
    def embedding_model(self) -> str | None:
        """Encoder of the stored instruction embeddings (xlab datasets record it), else None."""
        return (self.xlab_meta or {}).get("embedding_model")

    def statistics(self) -> dict[str, Any] | None:
        """``dataset_statistics.json`` beside the data, or None."""
        return read_statistics(self.path)

    def as_tf_dataset(self, **kwargs):
        """The plain TFDS ``tf.data.Dataset`` of episodes (``builder.as_dataset(split=...)``)."""
        return self.builder.as_dataset(split=self.split, **kwargs)

    def iter_raw_episodes(self, shards: Sequence[int] | None = None) -> Iterator[dict[str, Any]]:
        """Decoded episodes as numpy (steps batched along axis 0), shard by shard."""
        for i in range(self.num_shards) if shards is None else shards:
            yield from self.read_shard(i)

    def shard_offset(self, i: int) -> int:
        """Index (within the split) of the first episode of shard ``i``."""
        return sum(self.shard_lengths[:i])

    def read_shard(self, i: int) -> Iterator[dict[str, Any]]:
        """Decoded raw episodes of shard ``i``; errors name the shard file."""
        tf, _ = require_tfds()
        path = self.shard_paths[i]
        if not tf.io.gfile.exists(path):
            raise RLDSShardError(path, "missing: it is listed in dataset_info.json but not found")
        features = self.builder.info.features

        def batch_steps(episode):
            episode = dict(episode)
            # The nested steps Dataset -> one dict of [T, ...] tensors (what transforms expect).
            episode["steps"] = episode["steps"].batch(1 << 30).get_single_element()
            return episode

        parallel = tf.data.AUTOTUNE if self.num_threads is None else self.num_threads
        ds = tf.data.TFRecordDataset(path).map(features.deserialize_example, num_parallel_calls=parallel)
        ds = ds.map(batch_steps, num_parallel_calls=parallel)
        options = tf.data.Options()
        options.deterministic = True
        if self.num_threads is not None:
            options.threading.private_threadpool_size = self.num_threads
        ds = ds.with_options(options)
        n = 0
        try:
            for episode in ds.as_numpy_iterator():
                n += 1
                yield episode
        except tf.errors.OpError as e:
            raise RLDSShardError(
                path, f"unreadable after {n} episodes ({_clean_tf_message(e)}); the file is corrupt"
            ) from None
        expected = self.shard_lengths[i]
        if n != expected:
            raise RLDSShardError(
                path,
                f"holds {n} episodes but dataset_info.json lists {expected}: the file is truncated or was replaced",
            )

    def standardize(self, raw: dict[str, Any], resize: bool = True) -> Trajectory:
        """Apply the dataset's transform (and the resize to ``image_size``) to one raw episode."""
        traj = TRANSFORMS[self.transform](raw, self.name)
        if resize and self.image_size is not None:
            traj.images = resize_images(traj.images, self.image_size)
        return traj

    def iter_episodes(self, shards: Sequence[int] | None = None, resize: bool = True) -> Iterator[Trajectory]:
        """Standardized episodes (:class:`Trajectory`), shard by shard."""
        for raw in self.iter_raw_episodes(shards):
            yield self.standardize(raw, resize=resize)


def open_rlds(path: str | os.PathLike, **kwargs: Any) -> RLDSDataset:
    """Open an RLDS builder directory (local or ``gs://``); keyword arguments as :class:`RLDSDataset`."""
    return RLDSDataset(path, **kwargs)


def episode_embedding(
    traj: Trajectory,
    stored_model: str | None,
    mode: str = "auto",
    backend: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """The instruction embedding a window carries.

    ``stored``: the dataset's own embedding. ``recompute``: :func:`~xlab.rlds.text_embed.embed_instructions`
    of the instruction. ``auto``: the stored one when it came from the encoder in use (or was
    provided by the writer's caller), else recompute -- so a mixture of datasets with different
    encoders (fractal's 512-d USE, ours) ends up in one embedding space.
    """
    from xlab.rlds import text_embed

    if mode not in EMBEDDING_MODES:
        raise RLDSError(f"embedding mode must be one of {EMBEDDING_MODES}, got {mode!r}")
    backend = backend or text_embed.embedding_backend()
    if mode == "stored" or (
        mode == "auto" and traj.embedding is not None and stored_model in (backend, "provided")
    ):
        if traj.embedding is None:
            raise RLDSError(
                f"dataset {traj.dataset} stores no instruction embedding; use embedding mode 'recompute'"
            )
        return traj.embedding
    return text_embed.embed_instructions([traj.instruction], backend=backend, cache_dir=cache_dir)[0]


def iter_windows(
    dataset: RLDSDataset,
    window: int = 6,
    tokenizer: ActionTokenizer | None = None,
    *,
    shards: Sequence[int] | None = None,
    dataset_id: int = 0,
    embedding: str = "auto",
    embedding_backend: str | None = None,
    embed_cache_dir: str | os.PathLike | None = None,
    chunk: int = 1,
    drop_last: bool = True,
    state_dim: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Window columns (see :mod:`xlab.rlds.windows`) of each episode, in order, without Ray.

    ``chunk``, ``drop_last`` and ``state_dim`` are :func:`~xlab.rlds.windows.episode_windows`'.
    """
    tokenizer = tokenizer or ActionTokenizer()
    for i in range(dataset.num_shards) if shards is None else shards:
        offset = dataset.shard_offset(i)
        for j, raw in enumerate(dataset.read_shard(i)):
            traj = dataset.standardize(raw)
            emb = episode_embedding(
                traj, dataset.embedding_model, embedding, embedding_backend, embed_cache_dir
            )
            yield episode_windows(traj, window, tokenizer, emb, dataset_id=dataset_id, episode=offset + j,
                                  chunk=chunk, drop_last=drop_last, state_dim=state_dim)
