"""The common action space: RT-1's action dict, and each robot's mapping to its native actions.

RT-1 / RT-1-X act with a dict of 6 keys (11 tokens per step)::

    world_vector                        (3,)  [-2, 2]      end-effector translation (RT-1-X bounds)
    rotation_delta                      (3,)  [-pi/2, pi/2] end-effector rotation (roll, pitch, yaw)
    gripper_closedness_action           (1,)  [-1, 1]      +1 closes the gripper, -1 opens it
    terminate_episode                   (3,)  one-hot      [terminate, arm, base] (tokenised as argmax)
    base_displacement_vector            (2,)  [-1, 1]      mobile base translation (zeros here)
    base_displacement_vertical_rotation (1,)  [-pi, pi]    mobile base rotation (zeros here)

Each robot is an :class:`Embodiment`: its native action space and an explicit, invertible scaling::

    from robots.actions import EMBODIMENTS
    sawyer = EMBODIMENTS["sawyer"]
    native = sawyer.to_native({"world_vector": [0.5, 0, -1], "gripper_closedness_action": [1]})
    rt1 = sawyer.from_native(native)          # world_vector [0.5, 0, -1], gripper [1], ...

**Scaling choice.** Both simulated robots take 4-d native actions in [-1, 1]: an end-effector
displacement (dx, dy, dz) per step and a gripper command. ``world_vector`` is the native displacement
times ``world_scale`` (1.0 for both robots), i.e. RT-1's own normalised convention where [-1, 1] spans
the robot's full per-step range. The action *space* uses RT-1-X's wider [-2, 2] bounds so that actions
standardised from Open X-Embodiment datasets (e.g. bridge scaled to +-1.75) fit unclipped; components
beyond +-1 saturate the robot. ``metres_per_unit`` records what one unit means physically (Sawyer:
1 cm per step, Fetch: 5 cm per step), so the scales can be changed consistently if metric alignment
across robots is wanted. Neither robot can rotate its gripper, so ``rotation_delta`` is ignored by
``to_native`` and returned as zeros by ``from_native``; ``terminate_episode`` is not a robot command
(the envs report it as ``info["terminate_requested"]``) and ``from_native`` sets it to "arm" [0, 1, 0].

Envs take RT-1 dicts directly with ``gymnasium.make(id, action_format="rt1")``, through
:class:`RT1ActionWrapper`, or via ``env.unwrapped.step_rt1(action)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import ArrayLike

from robots.errors import UnknownRobotEnvError

#: RT-1 action keys with (shape, low, high); bounds are RT-1-X's (world_vector [-2, 2]).
RT1_ACTION_BOUNDS: dict[str, tuple[tuple[int, ...], float, float]] = {
    "world_vector": ((3,), -2.0, 2.0),
    "rotation_delta": ((3,), -np.pi / 2, np.pi / 2),
    "gripper_closedness_action": ((1,), -1.0, 1.0),
    "terminate_episode": ((3,), 0, 1),
    "base_displacement_vector": ((2,), -1.0, 1.0),
    "base_displacement_vertical_rotation": ((1,), -np.pi, np.pi),
}
RT1_ACTION_KEYS: tuple[str, ...] = tuple(RT1_ACTION_BOUNDS)
#: terminate_episode one-hot positions.
TERMINATE, ARM, BASE = 0, 1, 2


def rt1_action_space() -> gym.spaces.Dict:
    """The RT-1 action dict as a Gymnasium space (terminate_episode is int32 in {0, 1})."""
    spaces = {}
    for key, (shape, low, high) in RT1_ACTION_BOUNDS.items():
        dtype = np.int32 if key == "terminate_episode" else np.float32
        spaces[key] = gym.spaces.Box(low, high, shape=shape, dtype=dtype)
    return gym.spaces.Dict(spaces)


def rt1_action(
    world_vector: ArrayLike = (0.0, 0.0, 0.0),
    rotation_delta: ArrayLike = (0.0, 0.0, 0.0),
    gripper_closedness_action: float | ArrayLike = 0.0,
    terminate: bool = False,
) -> dict[str, np.ndarray]:
    """Build a complete RT-1 action dict (base keys zero; terminate_episode one-hot)."""
    one_hot = np.zeros(3, np.int32)
    one_hot[TERMINATE if terminate else ARM] = 1
    return {
        "world_vector": np.asarray(world_vector, np.float32).reshape(3),
        "rotation_delta": np.asarray(rotation_delta, np.float32).reshape(3),
        "gripper_closedness_action": np.asarray(gripper_closedness_action, np.float32).reshape(1),
        "terminate_episode": one_hot,
        "base_displacement_vector": np.zeros(2, np.float32),
        "base_displacement_vertical_rotation": np.zeros(1, np.float32),
    }


def terminate_requested(action: Mapping[str, ArrayLike]) -> bool:
    """True if an RT-1 action's terminate_episode argmax is "terminate" (index 0)."""
    if "terminate_episode" not in action:
        return False
    return int(np.argmax(np.asarray(action["terminate_episode"]))) == TERMINATE


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; compare by identity
class Embodiment:
    """A robot: its native action space and the explicit mapping to and from RT-1 actions.

    Native actions are ``[dx, dy, dz, gripper]`` in [-1, 1]. ``world_vector = native[:3] * world_scale``
    and ``gripper_closedness_action = gripper_sign * native[3]``; ``to_native`` inverts this and clips
    to the native bounds.
    """

    name: str
    description: str
    native_action_space: gym.spaces.Box
    world_scale: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))
    metres_per_unit: float = 0.01
    gripper_sign: float = 1.0

    def to_native(self, action: Mapping[str, ArrayLike]) -> np.ndarray:
        """Map an RT-1 action dict (missing keys count as zero) to a native float32 action."""
        shape, low, high = RT1_ACTION_BOUNDS["world_vector"]
        world = np.clip(
            np.asarray(action.get("world_vector", np.zeros(shape)), np.float64).reshape(3), low, high
        )
        shape, low, high = RT1_ACTION_BOUNDS["gripper_closedness_action"]
        grip = np.clip(
            np.asarray(action.get("gripper_closedness_action", np.zeros(shape)), np.float64).reshape(1),
            low,
            high,
        )
        native = np.concatenate([world / self.world_scale, self.gripper_sign * grip])
        space = self.native_action_space
        return np.clip(native, space.low, space.high).astype(np.float32)

    def from_native(self, native: ArrayLike) -> dict[str, np.ndarray]:
        """Map a native action to a complete RT-1 action dict (rotation and base zero, "arm" mode)."""
        native = np.asarray(native, np.float64).reshape(self.native_action_space.shape)
        return rt1_action(
            world_vector=native[:3] * self.world_scale,
            gripper_closedness_action=self.gripper_sign * native[3:4],
        )


def _box4() -> gym.spaces.Box:
    return gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)


#: The robots, by name. Sawyer (MetaWorld): native +1 closes the gripper; the mocap target moves
#: 1 cm per unit per step. Fetch (gymnasium-robotics): native +1 *opens* the gripper (it is a finger
#: position offset), so the sign flips; the mocap target moves 5 cm per unit per step.
EMBODIMENTS: dict[str, Embodiment] = {
    "sawyer": Embodiment(
        name="sawyer",
        description="Rethink Sawyer arm with a parallel gripper (MetaWorld 3.x); fixed gripper orientation",
        native_action_space=_box4(),
        metres_per_unit=0.01,
        gripper_sign=1.0,
    ),
    "fetch": Embodiment(
        name="fetch",
        description="Fetch mobile manipulator, arm only (gymnasium-robotics); fixed gripper orientation",
        native_action_space=_box4(),
        metres_per_unit=0.05,
        gripper_sign=-1.0,
    ),
}


def get_embodiment(name: str) -> Embodiment:
    """The registered Embodiment called ``name`` (raises UnknownRobotEnvError listing the names)."""
    try:
        return EMBODIMENTS[name]
    except KeyError:
        raise UnknownRobotEnvError(f"unknown embodiment {name!r}; known: {sorted(EMBODIMENTS)}") from None


class RT1ActionWrapper(gym.ActionWrapper):
    """Step any xlab robot env with RT-1 action dicts (mapped by the env's embodiment).

    ``info["terminate_requested"]`` says whether the action's terminate_episode chose "terminate";
    the env does not end the episode for it (the evaluation loop decides).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.embodiment: Embodiment = env.unwrapped.embodiment  # type: ignore[attr-defined]
        self.action_space = rt1_action_space()

    def action(self, action: Mapping[str, ArrayLike]) -> np.ndarray:
        return self.embodiment.to_native(action)

    def step(self, action: Mapping[str, ArrayLike]) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["terminate_requested"] = terminate_requested(action)
        return obs, reward, terminated, truncated, info
