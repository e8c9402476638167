"""Published feature layouts of Open X-Embodiment datasets, for writing data in their exact schema.

The real datasets live in ``gs://gresearch/robotics/<name>/0.1.0`` and are not reachable offline.
To test the loader and the registered transforms on the layout they will meet, these functions
rebuild the published feature dicts (from the TFDS catalog / the datasets' ``features.json``) and
make synthetic episodes in them; :func:`~xlab.rlds.writer.write_rlds_examples` writes them::

    from xlab.rlds.layouts import fractal_dataset_config, synthetic_fractal_example
    examples = [synthetic_fractal_example(rng, length=8) for _ in range(3)]
    write_rlds_examples(root, "fractal20220817_data", fractal_dataset_config(), examples)

``fractal20220817_data`` (RT-1, Google robot): ``aspects`` / ``attributes`` episode features;
steps with ``observation`` (image 256x320x3, ``natural_language_embedding`` 512,
``natural_language_instruction``, ``base_pose_tool_reached`` 7, ``gripper_closed`` 1,
``gripper_closedness_commanded`` 1, ``height_to_bottom`` 1, ``orientation_box`` 2x3,
``orientation_start`` 4, ``robot_orientation_positions_box`` 3x3, ``rotation_delta_to_go`` 3,
``src_rotation`` 4, ``vector_to_go`` 3, ``workspace_bounds`` 3x3), the RT-1 ``action`` dict
(``terminate_episode`` int32[3]) and ``reward`` (no ``discount``).

``bridge`` (Open X-Embodiment 0.1.0): steps with ``observation`` (image 480x640x3,
``natural_language_embedding`` 512, ``natural_language_instruction``, ``state`` 7), ``action``
(``world_vector`` 3, ``rotation_delta`` 3, ``open_gripper`` bool, ``terminate_episode`` float32)
and ``reward``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xlab.rlds.schema import CONTINUE, TERMINATE, require_tfds

FRACTAL_IMAGE_SHAPE = (256, 320, 3)
BRIDGE_IMAGE_SHAPE = (480, 640, 3)


def fractal_dataset_config():
    """``rlds_base.DatasetConfig`` with the published ``fractal20220817_data`` features."""
    _, tfds = require_tfds()
    from tensorflow_datasets.rlds import rlds_base

    f = tfds.features

    def t(*shape):
        return f.Tensor(shape=shape, dtype=np.float32)

    observation = f.FeaturesDict(
        {
            "base_pose_tool_reached": t(7),
            "gripper_closed": t(1),
            "gripper_closedness_commanded": t(1),
            "height_to_bottom": t(1),
            "image": f.Image(shape=FRACTAL_IMAGE_SHAPE, dtype=np.uint8, encoding_format="jpeg"),
            "natural_language_embedding": t(512),
            "natural_language_instruction": f.Text(),
            "orientation_box": t(2, 3),
            "orientation_start": t(4),
            "robot_orientation_positions_box": t(3, 3),
            "rotation_delta_to_go": t(3),
            "src_rotation": t(4),
            "vector_to_go": t(3),
            "workspace_bounds": t(3, 3),
        }
    )
    action = f.FeaturesDict(
        {
            "base_displacement_vector": t(2),
            "base_displacement_vertical_rotation": t(1),
            "gripper_closedness_action": t(1),
            "rotation_delta": t(3),
            "terminate_episode": f.Tensor(shape=(3,), dtype=np.int32),
            "world_vector": t(3),
        }
    )
    scalar_bool = f.Scalar(dtype=np.bool_)
    return rlds_base.DatasetConfig(
        name="fractal20220817_data",
        overall_description="Table-top manipulation with 17 objects (synthetic episodes in the published layout)",
        observation_info=observation,
        action_info=action,
        reward_info=f.Scalar(dtype=np.float32),
        episode_metadata_info={
            "aspects": f.FeaturesDict(
                {
                    k: scalar_bool
                    for k in ("already_success", "feasible", "has_aspects", "success", "undesirable")
                }
            ),
            "attributes": f.FeaturesDict(
                {
                    **{
                        k: f.Scalar(dtype=np.int64)
                        for k in (
                            "collection_mode",
                            "data_type",
                            "env",
                            "location",
                            "objects_family",
                            "task_family",
                        )
                    },
                    **{
                        f"{k}_name": f.Text()
                        for k in (
                            "collection_mode",
                            "data_type",
                            "env",
                            "location",
                            "objects_family",
                            "task_family",
                        )
                    },
                }
            ),
        },
    )


def bridge_dataset_config():
    """``rlds_base.DatasetConfig`` with the Open X-Embodiment 0.1.0 ``bridge`` features."""
    _, tfds = require_tfds()
    from tensorflow_datasets.rlds import rlds_base

    f = tfds.features
    return rlds_base.DatasetConfig(
        name="bridge",
        overall_description="WidowX interacting with toy kitchens (synthetic episodes in the published layout)",
        observation_info=f.FeaturesDict(
            {
                "image": f.Image(shape=BRIDGE_IMAGE_SHAPE, dtype=np.uint8, encoding_format="jpeg"),
                "natural_language_embedding": f.Tensor(shape=(512,), dtype=np.float32),
                "natural_language_instruction": f.Text(),
                "state": f.Tensor(shape=(7,), dtype=np.float32),
            }
        ),
        action_info=f.FeaturesDict(
            {
                "open_gripper": f.Scalar(dtype=np.bool_),
                "rotation_delta": f.Tensor(shape=(3,), dtype=np.float32),
                "terminate_episode": f.Scalar(dtype=np.float32),
                "world_vector": f.Tensor(shape=(3,), dtype=np.float32),
            }
        ),
        reward_info=f.Scalar(dtype=np.float32),
    )


def smooth_images(rng: np.random.Generator, length: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Camera-like uint8 frames (gradients + a moving blob): JPEG-friendly, unlike white noise."""
    h, w, _ = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3).astype(np.float32)
    frames = np.empty((length, h, w, 3), np.uint8)
    for t in range(length):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        blob = 120.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.02 * h * w))
        grad = 60.0 * (xx / w)[..., None] + 40.0 * (yy / h)[..., None]
        frames[t] = np.clip(base * 0.5 + grad + blob[..., None] * np.array([1.0, 0.6, 0.3]), 0, 255).astype(
            np.uint8
        )
    return frames


def synthetic_fractal_example(
    rng: np.random.Generator, length: int = 8, instruction: str = "pick coke can"
) -> dict[str, Any]:
    """One random episode in the ``fractal20220817_data`` layout (actions within RT-1 bounds)."""
    r = rng.uniform

    def f32(*shape, lo=-1.0, hi=1.0):
        return r(lo, hi, (length, *shape)).astype(np.float32)

    terminate = np.tile(CONTINUE, (length, 1))
    terminate[-1] = TERMINATE
    emb = rng.normal(size=512).astype(np.float32)
    idx = np.arange(length)
    return {
        "aspects": {
            "already_success": False,
            "feasible": True,
            "has_aspects": True,
            "success": True,
            "undesirable": False,
        },
        "attributes": {
            "collection_mode": 1,
            "collection_mode_name": "teleop",
            "data_type": 1,
            "data_type_name": "real",
            "env": 2,
            "env_name": "kitchen",
            "location": 3,
            "location_name": "mk1",
            "objects_family": 4,
            "objects_family_name": "cans",
            "task_family": 5,
            "task_family_name": "pick",
        },
        "steps": {
            "observation": {
                "base_pose_tool_reached": f32(7),
                "gripper_closed": f32(1, lo=0.0),
                "gripper_closedness_commanded": f32(1, lo=0.0),
                "height_to_bottom": f32(1, lo=0.0),
                "image": smooth_images(rng, length, FRACTAL_IMAGE_SHAPE),
                "natural_language_embedding": np.repeat(emb[None], length, 0),
                "natural_language_instruction": [instruction] * length,
                "orientation_box": f32(2, 3),
                "orientation_start": f32(4),
                "robot_orientation_positions_box": f32(3, 3),
                "rotation_delta_to_go": f32(3),
                "src_rotation": f32(4),
                "vector_to_go": f32(3),
                "workspace_bounds": f32(3, 3),
            },
            "action": {
                "base_displacement_vector": f32(2),
                "base_displacement_vertical_rotation": f32(1, lo=-3.0, hi=3.0),
                "gripper_closedness_action": f32(1),
                "rotation_delta": f32(3, lo=-1.5, hi=1.5),
                "terminate_episode": terminate.astype(np.int32),
                "world_vector": f32(3),
            },
            "reward": (idx == length - 1).astype(np.float32),
            "is_first": idx == 0,
            "is_last": idx == length - 1,
            "is_terminal": idx == length - 1,
        },
    }


def synthetic_bridge_example(
    rng: np.random.Generator, length: int = 6, instruction: str = "put the spoon in the pot"
) -> dict[str, Any]:
    """One random episode in the Open X-Embodiment 0.1.0 ``bridge`` layout."""
    idx = np.arange(length)
    emb = rng.normal(size=512).astype(np.float32)
    return {
        "steps": {
            "observation": {
                "image": smooth_images(rng, length, BRIDGE_IMAGE_SHAPE),
                "natural_language_embedding": np.repeat(emb[None], length, 0),
                "natural_language_instruction": [instruction] * length,
                "state": rng.uniform(-1, 1, (length, 7)).astype(np.float32),
            },
            "action": {
                "open_gripper": rng.random(length) < 0.5,
                "rotation_delta": rng.uniform(-0.25, 0.25, (length, 3)).astype(np.float32),
                "terminate_episode": (idx == length - 1).astype(np.float32),
                "world_vector": rng.uniform(-0.05, 0.05, (length, 3)).astype(np.float32),
            },
            "reward": (idx == length - 1).astype(np.float32),
            "is_first": idx == 0,
            "is_last": idx == length - 1,
            "is_terminal": idx == length - 1,
        },
    }
