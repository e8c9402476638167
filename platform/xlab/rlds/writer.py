"""Write episodes as an RLDS / TFDS dataset in the Open X-Embodiment layout.

Simulators produce plain numpy :class:`~xlab.rlds.Episode` objects and never import
TensorFlow; a separate process (a Ray task, a CLI job) calls :func:`write_rlds`, which imports
TensorFlow inside the call::

    from xlab.rlds import Episode, write_rlds
    builder_dir = write_rlds("/data/rlds", episodes, name="metaworld_pick_place")
    # -> /data/rlds/metaworld_pick_place/0.1.0/{dataset_info.json, features.json,
    #    metaworld_pick_place-train.tfrecord-00000, ..., dataset_statistics.json, xlab_complete.json}

The write is atomic (:mod:`xlab.rlds.complete`): a temporary sibling directory, renamed into
place once the shards, statistics and completion marker are written.

Each example is one episode ``{steps, episode_metadata}``: step = ``observation{image,
state, natural_language_instruction, natural_language_embedding}``, ``action`` (the RT-1 dict),
``reward``, ``discount``, ``is_first``, ``is_last``, ``is_terminal``, ``language_instruction``;
``episode_metadata{embodiment, task, episode_id, success, seed}``. The features come from
``tfds.rlds.rlds_base.DatasetConfig`` + ``build_info`` and the shards from
``tfds.core.SequentialWriter``, so ``tfds.builder_from_directory`` (and every RLDS tool) reads the
result like any Open X-Embodiment dataset. Episodes stream through: memory holds one episode.

:func:`write_rlds_examples` is the lower level: any ``DatasetConfig`` and raw example dicts (used
to write data in another dataset's published layout, see :mod:`xlab.rlds.layouts`).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xlab.rlds.complete import commit, mark_complete, temp_builder_dir
from xlab.rlds.schema import (
    ACTION_SPEC,
    Episode,
    RLDSError,
    complete_action,
    require_tfds,
)
from xlab.rlds.stats import StatsAccumulator, write_statistics

FORMAT = "xlab-rlds"
FORMAT_VERSION = 1


def xlab_dataset_config(
    name: str,
    image_shape: tuple[int, int, int],
    state_dim: int,
    embed_dim: int,
    image_encoding: str = "png",
    description: str = "",
):
    """The ``rlds_base.DatasetConfig`` (feature spec) of datasets written by :func:`write_rlds`."""
    _, tfds = require_tfds()
    from tensorflow_datasets.rlds import rlds_base

    f = tfds.features
    observation = f.FeaturesDict(
        {
            "image": f.Image(shape=tuple(image_shape), dtype=np.uint8, encoding_format=image_encoding),
            "state": f.Tensor(shape=(state_dim,), dtype=np.float32),
            "natural_language_instruction": f.Text(),
            "natural_language_embedding": f.Tensor(shape=(embed_dim,), dtype=np.float32),
        }
    )
    action = f.FeaturesDict(
        {
            key: f.Tensor(shape=(n,), dtype=np.int32 if key == "terminate_episode" else np.float32)
            for key, n in ACTION_SPEC
        }
    )
    return rlds_base.DatasetConfig(
        name=name,
        overall_description=description or f"{name}: episodes written by xlab.rlds (RT-1 action dict)",
        observation_info=observation,
        action_info=action,
        reward_info=f.Scalar(dtype=np.float32),
        discount_info=f.Scalar(dtype=np.float32),
        step_metadata_info={"language_instruction": f.Text()},
        # Nested under "episode_metadata", as in the Open X-Embodiment datasets.
        episode_metadata_info={
            "episode_metadata": f.FeaturesDict(
                {
                    "embodiment": f.Text(),
                    "task": f.Text(),
                    "episode_id": f.Text(),
                    "success": f.Scalar(dtype=np.bool_),
                    "seed": f.Scalar(dtype=np.int64),
                }
            )
        },
    )


def write_rlds_examples(
    data_dir: str | Path,
    name: str,
    ds_config,
    examples: Iterable[Mapping[str, Any]],
    version: str = "0.1.0",
    split: str = "train",
    max_episodes_per_shard: int = 100,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    finalize: Callable[[Path], None] | None = None,
) -> Path:
    """Write raw RLDS examples (``{"steps": ..., <episode features>}``) with any ``DatasetConfig``.

    Output goes to ``data_dir/name/version`` (created; TFDS needs it to exist first), with one
    tfrecord shard per ``max_episodes_per_shard`` episodes. ``metadata`` lands in the dataset's
    ``metadata.json`` (``builder.info.metadata``). ``finalize(dir)`` adds files (statistics) before the
    completion marker. The write is atomic (:mod:`xlab.rlds.complete`). Returns the builder directory.
    """
    _, tfds = require_tfds()
    from tensorflow_datasets.rlds import rlds_base

    if max_episodes_per_shard < 1:
        raise RLDSError(f"max_episodes_per_shard must be >= 1, got {max_episodes_per_shard}")
    builder_dir = Path(data_dir) / name / version
    if (builder_dir / "dataset_info.json").exists() and not overwrite:
        raise RLDSError(f"an RLDS dataset already exists at {builder_dir}; pass overwrite=True to replace it")
    builder_dir.parent.mkdir(parents=True, exist_ok=True)
    # Written into a temporary sibling, renamed into place once complete (xlab.rlds.complete): an
    # interrupted write never looks like a dataset, and an old one stays until the new one is whole.
    tmp_dir = temp_builder_dir(builder_dir)
    tmp_dir.mkdir()
    identity = tfds.core.dataset_info.DatasetIdentity(
        name=name, version=tfds.core.Version(version), data_dir=str(tmp_dir), module_name=""
    )
    info = rlds_base.build_info(ds_config, identity, ds_metadata=dict(metadata) if metadata else None)
    writer = tfds.core.SequentialWriter(info, max_examples_per_shard=max_episodes_per_shard)
    writer.initialize_splits([split])
    try:
        n = 0
        for example in examples:
            writer.add_examples({split: [example]})
            n += 1
        writer.close_all()
        if finalize is not None:
            finalize(tmp_dir)
        mark_complete(tmp_dir, episodes=n, split=split, shards=len(list(tmp_dir.glob(f"{name}-{split}.*"))))
        commit(tmp_dir, builder_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return builder_dir


def _as_episode(ep: Episode | Mapping[str, Any]) -> Episode:
    return ep if isinstance(ep, Episode) else Episode(**ep)


def _check_episode(ep: Episode, i: int, image_shape: tuple[int, ...], state_dim: int) -> int:
    length = len(ep)
    if length == 0:
        raise RLDSError(f"episode {i} ({ep.episode_id!r}) has no steps")
    if tuple(np.shape(ep.images)[1:]) != tuple(image_shape) or np.asarray(ep.images).dtype != np.uint8:
        raise RLDSError(
            f"episode {i} ({ep.episode_id!r}): images must be uint8 {('T', *image_shape)}, "
            f"got {np.asarray(ep.images).dtype} {np.shape(ep.images)}"
        )
    if np.shape(ep.states) != (length, state_dim):
        raise RLDSError(
            f"episode {i} ({ep.episode_id!r}): states must be [{length}, {state_dim}], got {np.shape(ep.states)}"
        )
    return length


def episode_example(ep: Episode, embedding: np.ndarray) -> dict[str, Any]:
    """The RLDS example (TFDS input dict) of one :class:`Episode` in the xlab layout."""
    length = len(ep)
    idx = np.arange(length)
    actions = complete_action(ep.actions, length)
    is_terminal = (
        np.asarray(ep.is_terminal, bool).reshape(length)
        if ep.is_terminal is not None
        else (idx == length - 1) & bool(ep.success)
    )
    texts = [ep.instruction] * length
    return {
        "steps": {
            "observation": {
                "image": np.asarray(ep.images, np.uint8),
                "state": np.asarray(ep.states, np.float32),
                "natural_language_instruction": texts,
                "natural_language_embedding": np.repeat(np.asarray(embedding, np.float32)[None], length, 0),
            },
            "action": actions,
            "reward": np.zeros(length, np.float32)
            if ep.rewards is None
            else np.asarray(ep.rewards, np.float32).reshape(length),
            "discount": np.ones(length, np.float32)
            if ep.discounts is None
            else np.asarray(ep.discounts, np.float32).reshape(length),
            "is_first": idx == 0,
            "is_last": idx == length - 1,
            "is_terminal": is_terminal,
            "language_instruction": texts,
        },
        "episode_metadata": {
            "embodiment": ep.embodiment,
            "task": ep.task,
            "episode_id": str(ep.episode_id),
            "success": bool(ep.success),
            "seed": int(ep.seed),
        },
    }


def write_rlds(
    path: str | Path,
    episodes: Iterable[Episode | Mapping[str, Any]],
    name: str,
    version: str = "0.1.0",
    image_shape: tuple[int, int, int] | None = None,
    state_dim: int | None = None,
    embed_dim: int | None = None,
    *,
    split: str = "train",
    max_episodes_per_shard: int = 50,
    num_shards: int | None = None,
    image_encoding: str = "png",
    embedding_backend: str | None = None,
    embed_cache_dir: str | Path | None = None,
    overwrite: bool = False,
    description: str = "",
) -> Path:
    """Write numpy episodes to ``path/name/version`` as RLDS; also write ``dataset_statistics.json``.

    ``episodes`` are :class:`Episode` objects (or dicts of its fields). ``image_shape`` (H, W, 3),
    ``state_dim`` and ``embed_dim`` default to those of the first episode (embedding: 384, the
    all-MiniLM-L6-v2 size). Episodes without ``embedding`` get one from
    :func:`xlab.rlds.text_embed.embed_instructions` (``embedding_backend``: default model, or
    ``"hash-fallback"``); the backend used is recorded in the dataset metadata and statistics.
    Shards hold ``max_episodes_per_shard`` episodes, or ``ceil(len(episodes) / num_shards)`` when
    ``num_shards`` is given (needs a sized sequence). ``image_encoding``: ``"png"`` (lossless,
    default) or ``"jpeg"`` (what Open X-Embodiment uses; lossy). Returns the builder directory.
    """
    from xlab.rlds import text_embed

    if num_shards is not None:
        if not isinstance(episodes, Sequence):
            raise RLDSError("num_shards needs episodes as a list/sequence (its length sets the shard size)")
        if num_shards < 1:
            raise RLDSError(f"num_shards must be >= 1, got {num_shards}")
        max_episodes_per_shard = max(1, math.ceil(len(episodes) / num_shards))
    if image_encoding not in ("png", "jpeg"):
        raise RLDSError(f"image_encoding must be 'png' or 'jpeg', got {image_encoding!r}")

    it: Iterator[Episode] = (_as_episode(e) for e in episodes)
    first = next(it, None)
    if first is None:
        raise RLDSError(f"no episodes to write for dataset {name!r}")
    image_shape = tuple(image_shape or np.shape(first.images)[1:])
    if len(image_shape) != 3 or image_shape[2] != 3:
        raise RLDSError(f"image_shape must be (H, W, 3), got {image_shape}")
    state_dim = int(state_dim if state_dim is not None else np.shape(first.states)[-1])
    if state_dim < 1:
        # TF's example parser dies with SIGFPE on a zero-size tensor feature when reading back.
        raise RLDSError(
            "state_dim must be >= 1 (TFDS cannot read empty tensors back); store e.g. the gripper state"
        )
    backend = embedding_backend or text_embed.embedding_backend()
    if embed_dim is None:
        embed_dim = (
            int(np.shape(first.embedding)[-1]) if first.embedding is not None else text_embed.EMBED_DIM
        )
    embedding_model = "provided" if first.embedding is not None else backend

    acc = StatsAccumulator()

    def examples() -> Iterator[dict[str, Any]]:
        for i, ep in enumerate(_chain(first, it)):
            _check_episode(ep, i, image_shape, state_dim)
            if (ep.embedding is None) != (first.embedding is None):
                raise RLDSError(
                    f"episode {i} ({ep.episode_id!r}): either every episode carries an embedding or none does "
                    "(the dataset records one embedding model)"
                )
            if ep.embedding is not None:
                emb = np.asarray(ep.embedding, np.float32).reshape(-1)
            else:
                if embed_dim != text_embed.EMBED_DIM:
                    raise RLDSError(
                        f"episode {i}: no embedding given and embed_dim={embed_dim}, but {backend} embeddings "
                        f"have {text_embed.EMBED_DIM} dims; pass Episode.embedding or embed_dim=None"
                    )
                emb = text_embed.embed_instructions(
                    [ep.instruction], backend=backend, cache_dir=embed_cache_dir
                )[0]
            if emb.shape != (embed_dim,):
                raise RLDSError(
                    f"episode {i} ({ep.episode_id!r}): embedding must have {embed_dim} numbers, got {emb.shape}"
                )
            example = episode_example(ep, emb)
            acc.add(example["steps"]["action"], example["steps"]["observation"]["state"])
            yield example

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "embedding_model": embedding_model,
        "embed_dim": embed_dim,
        "image_shape": list(image_shape),
        "state_dim": state_dim,
        "action_spec": [[k, n] for k, n in ACTION_SPEC],
    }
    config = xlab_dataset_config(name, image_shape, state_dim, embed_dim, image_encoding, description)
    return write_rlds_examples(
        path,
        name,
        config,
        examples(),
        version=version,
        split=split,
        max_episodes_per_shard=max_episodes_per_shard,
        metadata={"xlab": meta},
        overwrite=overwrite,
        finalize=lambda d: write_statistics(d, acc.result(dataset=name, version=version, split=split, xlab=meta)),
    )


def _chain(first: Episode, rest: Iterator[Episode]) -> Iterator[Episode]:
    yield first
    yield from rest


def _write_and_read_back(output_dir: str, name: str, episodes: list, max_episodes_per_shard: int, overwrite: bool,
                         description: str) -> dict:
    import tensorflow_datasets as tfds

    path = write_rlds(output_dir, episodes, name=name, max_episodes_per_shard=max_episodes_per_shard,
                      overwrite=overwrite, description=description)
    builder = tfds.builder_from_directory(str(path))
    split = builder.info.splits["train"]
    return {"path": str(path), "episodes_read_back": int(split.num_examples), "shards": len(split.filenames)}


def write_rlds_in_worker(output_dir: str, name: str, episodes: list, *, max_episodes_per_shard: int = 20,
                         overwrite: bool = True, description: str = "") -> dict:
    """:func:`write_rlds` in a fresh Ray worker, then read back with ``tfds.builder_from_directory``.

    For processes that render MuJoCo (TensorFlow and MuJoCo rendering in one process segfault): a
    runtime env of its own makes Ray start a new worker for the writer (never one that ran a
    simulator), and ``max_calls=1`` retires it afterwards. Returns path, episodes read back, shards.
    """
    import ray

    writer = ray.remote(num_cpus=1, max_calls=1)(_write_and_read_back).options(
        runtime_env={"env_vars": {"XLAB_WORKER_ROLE": "rlds-writer", "TF_CPP_MIN_LOG_LEVEL": "2",
                                 "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}})
    return ray.get(writer.remote(str(Path(output_dir).resolve()), name, episodes, max_episodes_per_shard,
                                 overwrite, description or f"xlab RLDS dataset ({name})"))
