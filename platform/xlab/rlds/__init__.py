"""RLDS datasets for robot policies: write, read, standardize, window, tokenize, mix, stream.

The pipeline, end to end::

    from xlab.rlds import Episode, WindowOptions, write_rlds, open_rlds, read_rlds_windows, iter_torch_window_batches
    path = write_rlds("/data/rlds", episodes, name="sim_pick")        # numpy episodes -> RLDS (TFDS)
    ds = open_rlds(path, image_size=(128, 128))                        # any RLDS dir, local or gs://
    for traj in ds.iter_episodes(): ...                                # standardized RT-1 episodes
    rows = read_rlds_windows({"sim_pick": path, "fractal20220817_data": fractal_dir}, WindowOptions(window=6),
                             mixture=[("sim_pick", 1), ("fractal20220817_data", 3)])
    for batch in iter_torch_window_batches(rows, batch_size=32): ...  # torch tensors

Modules: :mod:`~xlab.rlds.schema` (RT-1 action layout, Episode, Trajectory, errors),
:mod:`~xlab.rlds.writer`, :mod:`~xlab.rlds.reader`, :mod:`~xlab.rlds.transforms`
(per-dataset standardization registry), :mod:`~xlab.rlds.tokenize` (RT-1 action tokens),
:mod:`~xlab.rlds.windows`, :mod:`~xlab.rlds.mixture`, :mod:`~xlab.rlds.stats`,
:mod:`~xlab.rlds.layouts` (published fractal / bridge schemas) and
:mod:`~xlab.rlds.ray_source` (Ray Data).

Importing this package never imports TensorFlow (a MuJoCo-rendering process must never load it):
TensorFlow is imported inside the functions that read or write, and Ray only when a Ray name
(``read_rlds_windows``...) is first used.
"""

from __future__ import annotations

from typing import Any

from xlab.rlds.mixture import (
    MIXTURES,
    Mixture,
    MixtureSampler,
    UnknownMixtureError,
    get_mixture,
    register_mixture,
    sampling_rates,
)
from xlab.rlds.reader import (
    OXE_BUCKET,
    RLDSDataset,
    episode_embedding,
    find_builder_dir,
    iter_windows,
    open_rlds,
    oxe_path,
)
from xlab.rlds.schema import (
    ACTION_DIM,
    ACTION_DIM_NAMES,
    ACTION_KEYS,
    ACTION_SPEC,
    NUM_ACTION_TOKENS,
    Episode,
    RLDSError,
    RLDSShardError,
    TensorFlowMissingError,
    Trajectory,
    complete_action,
    flatten_action,
    unflatten_action,
)
from xlab.rlds.stats import STATS_FILE, load_or_compute_statistics, read_statistics
from xlab.rlds.tokenize import (
    RT1_BOUNDS,
    RT1X_BOUNDS,
    ActionBounds,
    ActionTokenizer,
    detokenize_action,
    tokenize_action,
)
from xlab.rlds.transforms import (
    TRANSFORMS,
    UnknownDatasetError,
    get_transform,
    register_transform,
    resize_images,
)
from xlab.rlds.windows import TENSOR_COLUMNS, WINDOW_COLUMNS, episode_windows, window_indices
from xlab.rlds.writer import write_rlds, write_rlds_examples, write_rlds_in_worker

_RAY_NAMES = (
    "RLDSSource",
    "RLDSWindowDatasource",
    "WindowOptions",
    "read_rlds_windows",
    "iter_torch_window_batches",
    "TF_WORKER_ENV",
    "WindowCollate",
)


def __getattr__(name: str) -> Any:
    # Ray Data names load lazily: importing ray costs a second and most users of the
    # tokenizer / schema (policies, simulators) never stream data.
    if name in _RAY_NAMES:
        from xlab.rlds import ray_source

        return getattr(ray_source, name)
    raise AttributeError(f"module 'xlab.rlds' has no attribute {name!r}")


__all__ = [
    "ACTION_DIM",
    "ACTION_DIM_NAMES",
    "ACTION_KEYS",
    "ACTION_SPEC",
    "MIXTURES",
    "NUM_ACTION_TOKENS",
    "OXE_BUCKET",
    "RT1X_BOUNDS",
    "RT1_BOUNDS",
    "STATS_FILE",
    "TENSOR_COLUMNS",
    "TRANSFORMS",
    "WINDOW_COLUMNS",
    "WindowCollate",
    "ActionBounds",
    "ActionTokenizer",
    "Episode",
    "Mixture",
    "MixtureSampler",
    "RLDSDataset",
    "RLDSError",
    "RLDSShardError",
    "RLDSSource",
    "RLDSWindowDatasource",
    "TensorFlowMissingError",
    "Trajectory",
    "UnknownDatasetError",
    "UnknownMixtureError",
    "WindowOptions",
    "complete_action",
    "detokenize_action",
    "episode_embedding",
    "episode_windows",
    "find_builder_dir",
    "flatten_action",
    "get_mixture",
    "get_transform",
    "iter_torch_window_batches",
    "iter_windows",
    "load_or_compute_statistics",
    "open_rlds",
    "oxe_path",
    "read_rlds_windows",
    "read_statistics",
    "register_mixture",
    "register_transform",
    "resize_images",
    "sampling_rates",
    "tokenize_action",
    "unflatten_action",
    "window_indices",
    "write_rlds",
    "write_rlds_examples",
    "write_rlds_in_worker",
]
