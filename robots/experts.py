"""Scripted experts for every registered robot env, e.g. to record demonstrations or sanity-check envs.

::

    import gymnasium, robots
    env = gymnasium.make("xlab/fetch-push-v0")
    expert = robots.expert_for("xlab/fetch-push-v0")
    obs, info = env.reset(seed=0)
    while True:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs, env))
        if terminated or truncated:
            break
    info["success"]

``expert.act(obs, env)`` returns a native action (``act_rt1`` the same action as an RT-1 dict). Experts
read privileged simulator state through ``env.unwrapped.privileged_state()`` (the observation is
accepted for a policy-like signature but not needed). Experts with phases reset themselves when
``env.unwrapped.elapsed_steps == 0``, i.e. at the start of each episode.

Sawyer: MetaWorld's own scripted policies (``metaworld.policies.ENV_POLICY_MAP``). Fetch: written here
(gymnasium-robotics ships none): proportional control of the gripper towards waypoints computed from
the object and goal positions. Success rates: ``python -m robots.expert_eval``.
"""

from __future__ import annotations

import abc
import warnings
from typing import Any

import numpy as np

from robots.errors import UnknownRobotEnvError
from robots.tasks import get_task

# Fetch moves its gripper target 5 cm per unit per step; a gain of 10 closes half the error per step,
# fast but without overshoot.
_GAIN = 10.0


def _towards(grip: np.ndarray, target: np.ndarray, gain: float = _GAIN, max_speed: float = 1.0) -> np.ndarray:
    """Proportional command towards ``target``, its length capped at ``max_speed`` (native units)."""
    command = (np.asarray(target) - grip) * gain
    norm = float(np.linalg.norm(command))
    if norm > max_speed:
        command *= max_speed / norm
    return np.clip(command, -1.0, 1.0)


class Expert(abc.ABC):
    """A scripted policy for one env id; subclasses implement :meth:`_act`."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id
        self.task = get_task(env_id)

    def reset(self) -> None:  # noqa: B027 - optional hook: stateless experts need no reset
        """Forget the current episode (called automatically on its first step)."""

    def act(self, obs: Any, env: Any) -> np.ndarray:
        """The native action (float32, in [-1, 1]) for the env's current state."""
        unwrapped = env.unwrapped
        if unwrapped.elapsed_steps == 0:
            self.reset()
        return np.clip(np.asarray(self._act(unwrapped), np.float32), -1.0, 1.0)

    def act_rt1(self, obs: Any, env: Any) -> dict[str, np.ndarray]:
        """The same action as :meth:`act`, as an RT-1 action dict."""
        return env.unwrapped.embodiment.from_native(self.act(obs, env))

    @abc.abstractmethod
    def _act(self, env: Any) -> np.ndarray:
        ...


class MetaWorldExpert(Expert):
    """MetaWorld's hand-written policy for the task, fed its 39-d privileged observation."""

    def __init__(self, env_id: str) -> None:
        super().__init__(env_id)
        from metaworld.policies import ENV_POLICY_MAP

        self.policy = ENV_POLICY_MAP[self.task.backend_task]()
        # MetaWorld's policies warn on every step whose gains exceed the action bounds (clipped anyway).
        warnings.filterwarnings("ignore", message="Constant.*may be too high", category=UserWarning)

    def _act(self, env: Any) -> np.ndarray:
        return self.policy.get_action(env.privileged_state())


class FetchReachExpert(Expert):
    """Move the gripper straight to the goal."""

    def _act(self, env: Any) -> np.ndarray:
        s = env.privileged_state()
        return np.append(_towards(s.grip_pos, s.goal), -1.0)


class FetchPushExpert(Expert):
    """Go (above the block) to a point behind it on the goal line, descend, push it to the goal.

    Decided afresh each step from the geometry, so it recovers when the block turns away: if the
    gripper is no longer behind the block on the line to the goal, it lifts and re-approaches.
    """

    BEHIND = 0.06  # gripper centre behind the block centre when re-approaching (block half-size 0.025)
    CONTACT = 0.045  # gripper centre behind the block centre while pushing
    LIFT = 0.08  # travel height above the block centre, clear of the block
    PUSH_GAIN = 6.0  # slower than free motion so the block does not slide past the goal
    PUSH_SPEED = 1.0  # cap on the pushing command (native units)
    ALIGN = 0.02  # largest sideways offset from the block's goal line at which pushing starts

    def _act(self, env: Any) -> np.ndarray:
        s = env.privileged_state()
        grip, obj, goal = s.grip_pos, s.object_pos, s.goal
        to_goal = goal[:2] - obj[:2]
        dist = float(np.linalg.norm(to_goal))
        if dist < 1e-3:
            return np.zeros(4)
        u = to_goal / dist
        rel = grip[:2] - obj[:2]
        along = float(rel @ u)
        lateral = rel - along * u
        low_z = obj[2]
        behind = obj[:2] - u * self.BEHIND
        if along < -0.03 and np.linalg.norm(lateral) < self.ALIGN and abs(grip[2] - low_z) < 0.02:
            # In contact position: drive the gripper to where it is when the block sits on the goal.
            target = np.append(goal[:2] - u * self.CONTACT, low_z)
            return np.append(_towards(grip, target, self.PUSH_GAIN, self.PUSH_SPEED), -1.0)
        if np.linalg.norm(grip[:2] - behind) < 0.015:
            return np.append(_towards(grip, np.append(behind, low_z)), -1.0)
        if grip[2] < low_z + self.LIFT - 0.02:
            return np.append(_towards(grip, np.append(grip[:2], low_z + self.LIFT)), -1.0)
        return np.append(_towards(grip, np.append(behind, low_z + self.LIFT)), -1.0)


class FetchPickPlaceExpert(Expert):
    """Above the block with the gripper open, descend, close, carry to the goal; retry if dropped."""

    LIFT = 0.08

    def reset(self) -> None:
        self.phase = "approach"
        self.closing_steps = 0

    def _act(self, env: Any) -> np.ndarray:
        s = env.privileged_state()
        grip, obj, goal = s.grip_pos, s.object_pos, s.goal
        if self.phase == "approach":
            target = obj + np.array([0.0, 0.0, self.LIFT])
            if np.linalg.norm(grip[:2] - obj[:2]) < 0.01 and abs(grip[2] - target[2]) < 0.03:
                self.phase = "descend"
            return np.append(_towards(grip, target), 1.0)
        if self.phase == "descend":
            if np.linalg.norm(grip - obj) < 0.01:
                self.phase, self.closing_steps = "grasp", 0
            return np.append(_towards(grip, obj), 1.0)
        if self.phase == "grasp":
            self.closing_steps += 1
            if self.closing_steps >= 4:
                self.phase = "carry"
            return np.append(_towards(grip, obj), -1.0)
        # carry
        if np.linalg.norm(grip - obj) > 0.03:  # dropped it
            self.phase = "approach"
            return np.append(np.zeros(3), 1.0)
        return np.append(_towards(grip, goal), -1.0)


class FetchSlideExpert(Expert):
    """Strike the puck once, from behind along its goal line, with a corner of the closed fingers.

    The goal is usually beyond the arm's reach at table height, so the puck must slide there, and
    success at any step counts (sliding through the goal is enough). Aiming matters most: pushed
    with the flat finger face the puck leaves closer to the x axis than aimed (~0.6 of the angle);
    striking with the leading corner of the fingers on the side of the goal line sends it along the
    line from that corner through the puck's centre. ``CORNER`` is that corner relative to the
    gripper site, calibrated on seeds 0-99 (the fingers' outer edge is at y = +-0.015): the expert
    solves ~80-85% of episodes (84.5% on seeds 100-299).
    """

    PUCK_RADIUS = 0.025
    CORNER = (0.0132, 0.013)  # (x, |y|) of the striking finger corner from the gripper site, metres
    RUN_UP = 0.03  # distance travelled before contact
    FOLLOW = 0.08  # distance travelled after contact before stopping
    LIFT = 0.08  # travel height above the puck centre, clear of it

    def reset(self) -> None:
        self.phase = "align"
        self.direction = np.zeros(2)
        self.start = np.zeros(3)
        self.previous: np.ndarray | None = None

    def _act(self, env: Any) -> np.ndarray:
        s = env.privileged_state()
        grip, puck, goal = s.grip_pos, s.object_pos, s.goal
        speed = 0.0 if self.previous is None else float(np.linalg.norm(grip - self.previous))
        self.previous = grip.copy()
        if self.phase == "align":
            to_goal = goal[:2] - puck[:2]
            u = to_goal / max(float(np.linalg.norm(to_goal)), 1e-6)
            corner = np.array([self.CORNER[0], np.sign(u[1]) * self.CORNER[1]])
            start = puck[:2] - (self.PUCK_RADIUS + self.RUN_UP) * u - corner
            low_z = puck[2]
            near = float(np.linalg.norm(grip[:2] - start))
            if near < 0.003 and abs(grip[2] - low_z) < 0.01 and speed < 0.002:
                self.phase, self.direction, self.start = "strike", u, grip.copy()
            elif near < 0.015:
                return np.append(_towards(grip, np.append(start, low_z)), -1.0)
            elif grip[2] < low_z + self.LIFT - 0.02:
                return np.append(_towards(grip, np.append(grip[:2], low_z + self.LIFT)), -1.0)
            else:
                return np.append(_towards(grip, np.append(start, low_z + self.LIFT)), -1.0)
        if self.phase == "strike":
            if np.linalg.norm(grip[:2] - self.start[:2]) < self.RUN_UP + self.FOLLOW:
                return np.append(self.direction, [0.0, -1.0])
            self.phase = "done"
        return np.array([0.0, 0.0, 0.0, -1.0])


_FETCH_EXPERTS: dict[str, type[Expert]] = {
    "Reach": FetchReachExpert,
    "Push": FetchPushExpert,
    "PickAndPlace": FetchPickPlaceExpert,
    "Slide": FetchSlideExpert,
}


def expert_for(env_id: str) -> Expert:
    """A new scripted expert for a registered env id."""
    task = get_task(env_id)
    if task.embodiment == "sawyer":
        expert: Expert = MetaWorldExpert(env_id)
    elif task.backend_task in _FETCH_EXPERTS:
        expert = _FETCH_EXPERTS[task.backend_task](env_id)
    else:
        raise UnknownRobotEnvError(f"no scripted expert for {env_id!r}")
    expert.reset()
    return expert
