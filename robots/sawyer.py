"""MetaWorld's Sawyer arm as an xlab robot env (``xlab/sawyer-<task>-v0``, MT10 tasks).

Wraps the MetaWorld 3.x task class directly rather than ``gymnasium.make("Meta-World/MT1")``, to
control what MetaWorld leaves to its benchmark wrappers:

* every reset samples new object and goal positions from the env's seeded generator (MetaWorld's own
  envs freeze one "task" per env; ``reset(seed=s)`` here is reproducible per seed);
* the goal is observable in the privileged state (MetaWorld's MT setting), for the scripted experts;
* MetaWorld's own 500-step limit is lifted: Gymnasium's TimeLimit (``max_episode_steps``) ends episodes;
* images come from :class:`~robots.render.FastRenderer` (MetaWorld's renderer is never created).

``state`` is ``[hand x, y, z, gripper opening in [0, 1]]``; ``privileged_state()`` is MetaWorld's
39-d observation (hand, gripper, object poses, previous frame, goal) that its scripted policies read.
"""

from __future__ import annotations

import numpy as np

from robots.base import RobotEnv
from robots.render import goal_markers


class SawyerEnv(RobotEnv):
    """A MetaWorld v3 task on the Sawyer arm; see :class:`robots.base.RobotEnv` for the arguments."""

    EMBODIMENT = "sawyer"
    STATE_DIM = 4

    def _build_backend(self) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        env = ALL_V3_ENVIRONMENTS[self.task.backend_task]()
        # The MT benchmark's settings, without its wrappers: goal in the observation (the cached
        # observation space depends on it), a new random object/goal placement at every reset drawn
        # from env.np_random (seeded by env.seed), and no internal horizon.
        env._partially_observable = False
        env.__dict__.pop("sawyer_observation_space", None)
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        env.max_path_length = 2**62
        self._mw = env
        self.model = env.model
        self.data = env.data
        self._raw_obs = np.zeros(39)

    def _render_fps(self) -> int:
        return int(round(1.0 / self._mw.dt))

    def _state_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        # MetaWorld clips its observation to these (hand workspace; gripper opening in [0, 1]).
        hand = self._mw._HAND_SPACE
        return (
            np.append(hand.low, 0.0).astype(np.float32),
            np.append(hand.high, 1.0).astype(np.float32),
        )

    def _backend_reset(self, seed: int) -> None:
        self._mw.seed(seed)
        self._backend_continue()

    def _backend_continue(self) -> None:
        self._raw_obs, _ = self._mw.reset()

    def _backend_step(self, native: np.ndarray) -> tuple[float, bool]:
        self._raw_obs, reward, _, _, info = self._mw.step(native)
        return float(reward), bool(info["success"])

    def _state(self) -> np.ndarray:
        return self._raw_obs[:4].astype(np.float32)

    #: Tasks whose goal is in the air: drawn with a stem to the table (``robots.render.goal_markers``).
    AIR_GOALS = ("reach-v3", "pick-place-v3")

    def _markers(self) -> list:
        if self.task.backend_task not in self.AIR_GOALS:
            return []
        # Radius 5 cm: the success region of MetaWorld's reach. Yellow: the Sawyer itself is red.
        return goal_markers(self._raw_obs[-3:], 0.0, (1.0, 0.85, 0.0, 1.0), radius=0.05)

    def privileged_state(self) -> np.ndarray:
        """MetaWorld's 39-d observation with the goal position (what ``metaworld.policies`` read)."""
        return self._raw_obs.copy()

    def _close_backend(self) -> None:
        self._mw.close()
