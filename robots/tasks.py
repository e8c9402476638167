"""The registered robot tasks: env id, embodiment, backend task, instruction, horizon and camera.

One :class:`TaskSpec` per Gymnasium id (``xlab/<embodiment>-<task>-v0``). Instructions are short
natural-language commands in the style of RT-1's (MetaWorld and gymnasium-robotics ship none); the
colours they name are the colours the goal markers render with.

Horizons (``max_episode_steps``, enforced by Gymnasium's TimeLimit from ``gymnasium.make``; override
with ``gymnasium.make(id, max_episode_steps=N)``) leave room beyond what the scripted experts need:
MetaWorld's experts finish the MT10 tasks in 40-110 steps (peg-insert-side sometimes ~250), Fetch's
in 10-40.
"""

from __future__ import annotations

from dataclasses import dataclass

from robots.errors import UnknownRobotEnvError
from robots.render import CameraSpec

#: Looks at the Sawyer's table from the front left, high enough to see drawer, door and window handles.
SAWYER_CAMERA = CameraSpec(lookat=(0.0, 0.6, 0.1), distance=1.3, azimuth=-150.0, elevation=-40.0)
#: Faces the Fetch across its table (robot at the back), high enough to keep goals in the air in view.
FETCH_CAMERA = CameraSpec(lookat=(1.3, 0.75, 0.45), distance=1.0, azimuth=150.0, elevation=-60.0)
#: The slide table is long: further back and higher, to keep the distant goal in view.
FETCH_SLIDE_CAMERA = CameraSpec(lookat=(1.45, 0.75, 0.42), distance=1.5, azimuth=180.0, elevation=-50.0)


@dataclass(frozen=True)
class TaskSpec:
    """One registered env: what it simulates and how it is presented."""

    env_id: str
    embodiment: str
    backend_task: str  # MetaWorld env name ("reach-v3") or gymnasium-robotics Fetch task ("Reach")
    instruction: str
    max_episode_steps: int
    camera: CameraSpec


def _sawyer(task: str, instruction: str, steps: int = 200) -> TaskSpec:
    return TaskSpec(f"xlab/sawyer-{task}-v0", "sawyer", f"{task}-v3", instruction, steps, SAWYER_CAMERA)


def _fetch(
    task: str, backend: str, instruction: str, steps: int, camera: CameraSpec = FETCH_CAMERA
) -> TaskSpec:
    return TaskSpec(f"xlab/fetch-{task}-v0", "fetch", backend, instruction, steps, camera)


_SPECS = [
    # MetaWorld MT10 (v3 names).
    _sawyer("reach", "move the gripper to the yellow target"),
    _sawyer("push", "push the puck to the green target"),
    _sawyer("pick-place", "pick up the puck and put it on the yellow target"),
    _sawyer("door-open", "open the door"),
    _sawyer("drawer-open", "open the drawer"),
    _sawyer("drawer-close", "close the drawer"),
    _sawyer("button-press-topdown", "press the button down from the top"),
    _sawyer("peg-insert-side", "insert the peg into the hole from the side", steps=300),
    _sawyer("window-open", "slide the window open"),
    _sawyer("window-close", "slide the window closed"),
    # gymnasium-robotics Fetch.
    _fetch("reach", "Reach", "move the gripper to the red target", 50),
    _fetch("push", "Push", "push the black block to the red target", 100),
    _fetch("pick-place", "PickAndPlace", "pick up the black block and move it to the red target", 100),
    _fetch("slide", "Slide", "slide the puck to the red target", 100, FETCH_SLIDE_CAMERA),
]

#: All registered tasks by Gymnasium id.
TASKS: dict[str, TaskSpec] = {spec.env_id: spec for spec in _SPECS}
#: Registered Gymnasium ids, in a stable order (Sawyer MT10, then Fetch).
ENV_IDS: tuple[str, ...] = tuple(TASKS)
#: The tasks of `make demo` (collect -> train -> evaluate on the same four) on both robots: goals that
#: are randomized every episode and must be seen (both reaches), objects to move whose positions are
#: randomized (the drawer, the button). fetch-push is not among them: the CPU-sized policy never learned
#: it (0 of 10 in every measured run, README), and a task no run succeeds at says nothing about a recipe.
DEMO_TASKS: tuple[str, ...] = (
    "xlab/sawyer-drawer-close-v0", "xlab/sawyer-button-press-topdown-v0", "xlab/sawyer-reach-v0",
    "xlab/fetch-reach-v0",
)

#: The natural-language instruction of each env id.
TASK_INSTRUCTIONS: dict[str, str] = {spec.env_id: spec.instruction for spec in _SPECS}


def get_task(env_id: str) -> TaskSpec:
    """The TaskSpec of a registered id (raises UnknownRobotEnvError listing the ids)."""
    try:
        return TASKS[env_id]
    except KeyError:
        raise UnknownRobotEnvError(f"unknown robot env {env_id!r}; registered: {list(ENV_IDS)}") from None
