"""Simulated robots for the RT-X half of xlab: Gymnasium envs, the RT-1 action space, scripted experts.

Importing ``robots`` first chooses a headless OpenGL backend for MuJoCo (``robots.gl``: ``MUJOCO_GL``
egl, else osmesa, when unset; it must happen before mujoco is imported) and then registers the envs::

    import gymnasium
    import robots

    env = gymnasium.make("xlab/sawyer-drawer-open-v0", render_mode="rgb_array")   # image 128x128
    obs, info = env.reset(seed=0)        # obs = {"image": uint8 (128,128,3), "state": float32 (4,)}
    info["instruction"]                  # "open the drawer"
    expert = robots.expert_for("xlab/sawyer-drawer-open-v0")
    obs, reward, terminated, truncated, info = env.step(expert.act(obs, env))
    info["success"]                      # success reached at any step so far (sticky)

Ids (``robots.ENV_IDS``): ``xlab/sawyer-<task>-v0`` for the ten MetaWorld MT10 tasks (reach, push,
pick-place, door-open, drawer-open, drawer-close, button-press-topdown, peg-insert-side, window-open,
window-close) and ``xlab/fetch-<task>-v0`` for reach, push, pick-place and slide. Options of
``gymnasium.make``: ``image_size`` (int, (h, w) or None), ``camera``, ``terminate_on_success``
(default True), ``action_format`` ("native" or "rt1"), ``max_episode_steps``, ``render_mode``.

Modules: :mod:`robots.base` (the env interface), :mod:`robots.actions` (RT-1 action dict,
``EMBODIMENTS``, ``RT1ActionWrapper``), :mod:`robots.experts` (``expert_for``), :mod:`robots.tasks`
(ids, instructions, horizons, cameras), :mod:`robots.gl` (OpenGL backend, TensorFlow guard).
MuJoCo, MetaWorld and gymnasium-robotics are imported only when an env is created.
"""

from robots import gl  # noqa: I001 - must run before anything imports mujoco

import gymnasium

from robots.actions import (
    EMBODIMENTS,
    RT1_ACTION_KEYS,
    Embodiment,
    RT1ActionWrapper,
    get_embodiment,
    rt1_action,
    rt1_action_space,
)
from robots.errors import (
    RenderingUnavailableError,
    RobotEnvConfigError,
    RobotsError,
    TensorFlowInProcessError,
    UnknownRobotEnvError,
)
from robots.experts import Expert, expert_for
from robots.tasks import DEMO_TASKS, ENV_IDS, TASK_INSTRUCTIONS, TASKS, TaskSpec, get_task

_ENTRY_POINTS = {"sawyer": "robots.sawyer:SawyerEnv", "fetch": "robots.fetch:FetchEnv"}


def register_envs() -> None:
    """Register every task in ``robots.TASKS`` with Gymnasium (idempotent; done on import)."""
    for spec in TASKS.values():
        if spec.env_id not in gymnasium.registry:
            gymnasium.register(
                id=spec.env_id,
                entry_point=_ENTRY_POINTS[spec.embodiment],
                kwargs={"task": spec.env_id},
                max_episode_steps=spec.max_episode_steps,
            )


register_envs()

__all__ = [
    "EMBODIMENTS",
    "DEMO_TASKS",
    "ENV_IDS",
    "RT1_ACTION_KEYS",
    "TASKS",
    "TASK_INSTRUCTIONS",
    "Embodiment",
    "Expert",
    "RT1ActionWrapper",
    "RenderingUnavailableError",
    "RobotEnvConfigError",
    "RobotsError",
    "TaskSpec",
    "TensorFlowInProcessError",
    "UnknownRobotEnvError",
    "expert_for",
    "get_embodiment",
    "get_task",
    "gl",
    "register_envs",
    "rt1_action",
    "rt1_action_space",
]
