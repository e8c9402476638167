"""The common Gymnasium env of the simulated robots; ``robots.sawyer`` and ``robots.fetch`` fill it in.

Every env (see :mod:`robots` for the ids) has the same interface whatever the robot:

* observation: ``{"image": uint8 (H, W, 3) RGB, right side up, "state": float32 proprio}``; the image
  is rendered once per step by one renderer per env (``image_size=None`` drops it: physics only);
* ``env.unwrapped.instruction`` and ``info["instruction"]``: the task in words;
* ``info["success"]``: whether the task was achieved at any step of the episode so far (sticky);
  ``info["success_now"]`` is the backend's per-step success (MetaWorld's turns off again when the
  object moves away) and ``info["is_success_any"]`` an alias of ``success``. With
  ``terminate_on_success=True`` (default) the step that first succeeds returns ``terminated=True``;
  an episode is a success iff ``info["success"]`` is True on its last step;
* actions: the robot's native ``Box(-1, 1, (4,))`` or, with ``action_format="rt1"``, RT-1 action dicts
  (:mod:`robots.actions`); ``env.unwrapped.embodiment`` maps between them and
  ``env.unwrapped.step_rt1(action)`` steps the unwrapped env with one;
* ``render_mode="rgb_array"``: ``render()`` returns the current frame (the observation's image).

Experts may read ``env.unwrapped.privileged_state()`` (object and goal positions).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from numpy.typing import ArrayLike

from robots import gl
from robots.actions import Embodiment, get_embodiment, rt1_action_space, terminate_requested
from robots.errors import RobotEnvConfigError
from robots.render import CameraSpec, FastRenderer, Marker
from robots.tasks import TaskSpec, get_task

ImageSize = int | tuple[int, int] | None


def _image_shape(image_size: ImageSize) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        height = width = image_size
    else:
        height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise RobotEnvConfigError(f"image_size must be positive (or None for no image), got {image_size!r}")
    return height, width


class RobotEnv(gym.Env, abc.ABC):
    """Base class of the xlab robot envs; subclasses wrap one simulator backend.

    Args:
        task: a registered env id (``xlab/sawyer-reach-v0``); ``gymnasium.make`` passes it.
        render_mode: None or ``"rgb_array"`` (``render()`` frames have the image size; 128x128 when
            ``image_size=None``).
        image_size: image side (int) or (height, width); None for a state-only observation.
        camera: a :class:`~robots.render.CameraSpec` or a camera name in the model; default: the task's.
        terminate_on_success: end the episode (``terminated=True``) on the first successful step.
        action_format: ``"native"`` (the robot's Box) or ``"rt1"`` (RT-1 action dicts).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 25}
    #: Which embodiment a subclass simulates; checked against the task.
    EMBODIMENT: str = ""

    def __init__(
        self,
        task: str,
        *,
        render_mode: Literal["rgb_array"] | None = None,
        image_size: ImageSize = 128,
        camera: CameraSpec | str | None = None,
        terminate_on_success: bool = True,
        action_format: Literal["native", "rt1"] = "native",
    ) -> None:
        self.task: TaskSpec = get_task(task)
        if self.task.embodiment != self.EMBODIMENT:
            raise RobotEnvConfigError(
                f"{task!r} is a {self.task.embodiment} task, not a {self.EMBODIMENT} one"
            )
        if render_mode not in (None, "rgb_array"):
            raise RobotEnvConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if action_format not in ("native", "rt1"):
            raise RobotEnvConfigError(f"action_format must be 'native' or 'rt1', got {action_format!r}")
        self.embodiment: Embodiment = get_embodiment(self.task.embodiment)
        self.instruction: str = self.task.instruction
        self.render_mode = render_mode
        self.image_shape = _image_shape(image_size)
        self.terminate_on_success = bool(terminate_on_success)
        self.action_format = action_format
        self.camera = camera if camera is not None else self.task.camera
        if self.image_shape is not None or render_mode is not None:
            # Fail at creation, with the fix in the message, rather than at the first render.
            gl.check_no_tensorflow()
            gl.require_rendering()

        self._build_backend()
        self.metadata = {**type(self).metadata, "render_fps": self._render_fps()}
        self.native_action_space: gym.spaces.Box = self.embodiment.native_action_space
        self.action_space = rt1_action_space() if action_format == "rt1" else self.native_action_space
        spaces: dict[str, gym.Space] = {}
        if self.image_shape is not None:
            spaces["image"] = gym.spaces.Box(0, 255, (*self.image_shape, 3), np.uint8)
        low, high = self._state_bounds()
        spaces["state"] = gym.spaces.Box(low, high, (self.STATE_DIM,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

        self._renderer: FastRenderer | None = None
        self._image: np.ndarray | None = None
        self._success = False
        self._backend_seeded = False
        #: Steps taken in the current episode.
        self.elapsed_steps = 0

    # -- subclass hooks ------------------------------------------------------------------------
    STATE_DIM: int = 0

    @abc.abstractmethod
    def _build_backend(self) -> None:
        """Create the simulator; set ``self.model`` and ``self.data`` (MjModel, MjData)."""
        ...

    @abc.abstractmethod
    def _render_fps(self) -> int:
        ...

    @abc.abstractmethod
    def _state_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the proprio vector (float32 arrays of STATE_DIM)."""
        ...

    @abc.abstractmethod
    def _backend_reset(self, seed: int) -> None:
        """Reset the simulator after seeding its random generator with ``seed``."""
        ...

    @abc.abstractmethod
    def _backend_continue(self) -> None:
        """Reset the simulator continuing its own random stream."""
        ...

    @abc.abstractmethod
    def _backend_step(self, native: np.ndarray) -> tuple[float, bool]:
        """Apply a clipped native action; return (reward, per-step success)."""
        ...

    @abc.abstractmethod
    def _state(self) -> np.ndarray:
        """The proprio vector (float32, STATE_DIM)."""
        ...

    @abc.abstractmethod
    def privileged_state(self) -> Any:
        """Simulator state a policy would not see (object and goal positions), for scripted experts."""
        ...

    # -- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._backend_reset(seed)
        elif not self._backend_seeded:
            # Derive the simulator's seed from this env's generator so one seed fixes everything.
            self._backend_reset(int(self.np_random.integers(2**31 - 1)))
        else:
            self._backend_continue()
        self._backend_seeded = True
        self._success = False
        self.elapsed_steps = 0
        return self._observation(), self._info(False)

    def step(self, action: ArrayLike | Mapping[str, ArrayLike]) -> tuple[dict, float, bool, bool, dict]:
        requested = None
        if self.action_format == "rt1":
            requested = terminate_requested(action)  # type: ignore[arg-type]
            native = self.embodiment.to_native(action)  # type: ignore[arg-type]
        else:
            native = np.asarray(action, dtype=np.float32).reshape(self.native_action_space.shape)
        native = np.clip(native, self.native_action_space.low, self.native_action_space.high)
        reward, success_now = self._backend_step(native)
        self.elapsed_steps += 1
        self._success = self._success or success_now
        info = self._info(success_now)
        if requested is not None:
            info["terminate_requested"] = requested
        terminated = self.terminate_on_success and self._success
        return self._observation(), float(reward), terminated, False, info

    def step_rt1(self, action: Mapping[str, ArrayLike]) -> tuple[dict, float, bool, bool, dict]:
        """Step with an RT-1 action dict whatever ``action_format`` is (on the unwrapped env: no TimeLimit)."""
        if self.action_format == "rt1":
            return self.step(action)
        obs, reward, terminated, truncated, info = self.step(self.embodiment.to_native(action))
        info["terminate_requested"] = terminate_requested(action)
        return obs, reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """The current frame (uint8 RGB) when ``render_mode="rgb_array"``, else None."""
        if self.render_mode is None:
            return None
        if self._image is not None:
            return self._image.copy()
        return self._render_frame()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._close_backend()

    def _close_backend(self) -> None:
        pass

    # -- helpers -------------------------------------------------------------------------------
    @property
    def success(self) -> bool:
        """Whether the current episode has succeeded at some step."""
        return self._success

    def _render_frame(self) -> np.ndarray:
        if self._renderer is None:
            height, width = self.image_shape or (128, 128)
            self._renderer = FastRenderer(self.model, height, width, self.camera)
        return self._renderer.render(self.data, self._markers())

    def _markers(self) -> list[Marker]:
        """Visual-only shapes drawn into each frame (e.g. a goal marker); none by default."""
        return []

    def _observation(self) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        if self.image_shape is not None:
            self._image = self._render_frame()
            obs["image"] = self._image
        obs["state"] = self._state()
        return obs

    def _info(self, success_now: bool) -> dict[str, Any]:
        return {
            "instruction": self.instruction,
            "success": self._success,
            "success_now": bool(success_now),
            "is_success_any": self._success,
        }
