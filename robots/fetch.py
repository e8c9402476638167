"""gymnasium-robotics' Fetch arm as an xlab robot env (``xlab/fetch-<task>-v0``).

Wraps the MuJoCo (v4) Fetch task classes directly: their goal-conditioned observation dict becomes
the common ``{"image", "state"}`` observation, ``info["is_success"]`` becomes the sticky
``info["success"]``, and images come from :class:`~robots.render.FastRenderer` instead of
gymnasium's MujocoRenderer. Reach, Push and Slide keep the gripper blocked (closed), as upstream.

``state`` is ``[gripper x, y, z, finger positions (2), gripper velocity (3), finger velocities (2)]``
(velocities are per step, as in Fetch's own observation). ``privileged_state()`` returns a
:class:`FetchState` with the object and goal positions for the scripted experts.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

from robots.base import RobotEnv
from robots.render import goal_markers, table_goal_marker

_BACKENDS = {
    "Reach": ("gymnasium_robotics.envs.fetch.reach", "MujocoFetchReachEnv"),
    "Push": ("gymnasium_robotics.envs.fetch.push", "MujocoFetchPushEnv"),
    "PickAndPlace": ("gymnasium_robotics.envs.fetch.pick_and_place", "MujocoFetchPickAndPlaceEnv"),
    "Slide": ("gymnasium_robotics.envs.fetch.slide", "MujocoFetchSlideEnv"),
}


@dataclass(frozen=True)
class FetchState:
    """Privileged Fetch state (metres, world frame): what a scripted expert needs."""

    grip_pos: np.ndarray  # (3,) gripper site
    finger_pos: np.ndarray  # (2,) finger joint positions (0 closed, ~0.05 open)
    object_pos: np.ndarray | None  # (3,) object site; None for Reach
    goal: np.ndarray  # (3,)
    block_gripper: bool  # the gripper is held closed (Reach, Push, Slide)


def _load_backend(task: str) -> type:
    import importlib

    module, name = _BACKENDS[task]
    # gymnasium_robotics prints a notice about Adroit reward versions to stderr on import, in every
    # process that imports it (every Ray worker); it does not concern Fetch.
    with contextlib.redirect_stderr(io.StringIO()):
        return getattr(importlib.import_module(module), name)


class FetchEnv(RobotEnv):
    """A gymnasium-robotics Fetch task; see :class:`robots.base.RobotEnv` for the arguments."""

    EMBODIMENT = "fetch"
    STATE_DIM = 10

    def _build_backend(self) -> None:
        cls = _load_backend(self.task.backend_task)
        self._fetch = cls(render_mode=None, reward_type="sparse")
        self.model = self._fetch.model
        self.data = self._fetch.data
        self._has_object = bool(self._fetch.has_object)
        self._raw_obs: dict[str, np.ndarray] = {}

    def _render_fps(self) -> int:
        return int(round(1.0 / self._fetch.dt))

    def _state_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        # Loose physical bounds: the gripper stays within metres of the origin; velocities are per step.
        return np.full(10, -10.0, np.float32), np.full(10, 10.0, np.float32)

    def _backend_reset(self, seed: int) -> None:
        self._raw_obs, _ = self._fetch.reset(seed=seed)
        self._after_reset()

    def _backend_continue(self) -> None:
        self._raw_obs, _ = self._fetch.reset()
        self._after_reset()

    def _after_reset(self) -> None:
        # Moves the red target marker to this episode's goal (upstream does it in render()).
        self._fetch._render_callback()

    def _backend_step(self, native: np.ndarray) -> tuple[float, bool]:
        self._raw_obs, reward, _, _, info = self._fetch.step(native)
        return float(reward), bool(info["is_success"])

    def _split(self) -> dict[str, np.ndarray]:
        o = self._raw_obs["observation"]
        if self._has_object:
            return {
                "grip_pos": o[0:3],
                "object_pos": o[3:6],
                "fingers": o[9:11],
                "grip_velp": o[20:23],
                "finger_vel": o[23:25],
            }
        return {"grip_pos": o[0:3], "fingers": o[3:5], "grip_velp": o[5:8], "finger_vel": o[8:10]}

    def _state(self) -> np.ndarray:
        p = self._split()
        return np.concatenate([p["grip_pos"], p["fingers"], p["grip_velp"], p["finger_vel"]]).astype(
            np.float32
        )

    #: Tasks whose goal can be in the air: drawn with a stem to the table (``robots.render.goal_markers``).
    AIR_GOALS = ("Reach", "PickAndPlace")
    TABLE_Z = 0.4  # table top height in gymnasium-robotics' Fetch scenes (metres)

    def _markers(self) -> list:
        goal = self._raw_obs["desired_goal"]
        if self.task.backend_task in self.AIR_GOALS:
            return goal_markers(goal, self.TABLE_Z, (1.0, 0.0, 0.0, 1.0))
        # A goal on the table: its success region (5 cm, gymnasium-robotics' threshold) as a flat disc.
        return [table_goal_marker(goal, self.TABLE_Z, 0.05, (1.0, 0.0, 0.0, 1.0))]

    def privileged_state(self) -> FetchState:
        p = self._split()
        return FetchState(
            grip_pos=p["grip_pos"].copy(),
            finger_pos=p["fingers"].copy(),
            object_pos=p["object_pos"].copy() if self._has_object else None,
            goal=np.array(self._raw_obs["desired_goal"], dtype=np.float64),
            block_gripper=bool(self._fetch.block_gripper),
        )

    def _close_backend(self) -> None:
        self._fetch.close()
