"""Simulator actors: Ray actors that step robot environments with actions from the policy server.

A :class:`Simulator` runs a group of episodes (one or more environments of any registered
embodiment) in lockstep: each control step it pushes the new frames into its own
:class:`~xlab.policies.HistoryBuffer` (the server is stateless), sends ONE request with every
environment's window to the policy server, and steps all environments with the returned actions.
The scripted expert and a random policy run in the same actors without the server, as reference
rows. Episodes can be recorded (all frames, states and RT-1 actions) so that evaluation rollouts
become RLDS data.

Faults: a request that fails because the server replica died is retried (Serve restarts the
replica; callers back off and count the retries). A simulator that crashes or hangs is the
evaluator's job (:mod:`xlab.serve.evaluate`): actors are created with ``max_restarts=-1`` and
the evaluator re-runs their episodes.

Rendering happens here (MuJoCo), so these processes never import TensorFlow.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

os.environ.setdefault("USE_TF", "0")  # sentence-transformers -> transformers must not pull TensorFlow in

CONTROLLERS = ("policy", "expert", "random")


@dataclass
class EpisodeSpec:
    """One evaluation episode: which env, which seed, who controls it."""

    env_id: str
    seed: int
    controller: str = "policy"
    """policy (through the server), expert (scripted) or random."""
    episode_id: str = ""
    max_steps: int = 0
    """Horizon override (0: the task's max_episode_steps)."""
    mode: str = "argmax"
    """Policy action mode: argmax (deterministic) or sample."""
    record: str = ""
    """"" (nothing), "strip" (every 4th frame, for videos) or "full" (frames, states, actions: RLDS)."""
    hang: bool = False
    """Fault injection: the simulator stops responding during this episode (tests the evaluator's timeout)."""


@dataclass
class EpisodeResult:
    episode_id: str
    env_id: str
    controller: str
    seed: int
    success: bool = False
    steps: int = 0
    status: str = "ok"
    """ok, or failed (the episode could not be completed after retries: counted, never dropped)."""
    attempts: int = 1
    server_retries: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[tuple[float, float]] = field(default_factory=list)
    """Per request: (waiting in the replica for the batch, the batch's forward pass), from the server's timing."""
    frames: Any = None
    episode: Any = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Simulator:
    """Body of the simulator actor (``SimulatorActor = ray.remote(...)(Simulator)``); one process each."""

    def __init__(self, server_app: str | None = None, image_size: int = 0, history: int = 0,
                 server_retries: int = 20, name: str = "", execution: str = "ensemble", server_url: str = "",
                 api_key: str = "") -> None:
        self.server_app = server_app
        self.server_url = server_url
        self.api_key = api_key or None
        self.camera_size = image_size
        self.image_size = image_size
        self.history = history
        self.max_server_retries = server_retries
        self.name = name or f"sim-{os.getpid()}"
        self.execution = execution
        self.action_chunk, self.state_dim = 1, 0
        self._handle = None
        self._clients: list[Any] = []  # WebSocket transport: one connection per policy env slot
        self._envs: dict[str, list[Any]] = {}
        info: dict[str, Any] = {}
        if server_app:
            from ray import serve

            self._handle = serve.get_app_handle(server_app)
            info = self._handle.info.remote().result(timeout_s=300)
        elif server_url:
            info = self._connect(1)[0].metadata
        if info:
            self.image_size = int(info["image_size"])  # what the policy takes
            self.camera_size = self.camera_size or self.image_size  # what the simulator renders
            self.history = self.history or int(info["history"])
            self.action_chunk = int(info.get("action_chunk", 1))
            self.state_dim = int(info.get("state_dim", 0))

    def _connect(self, n: int) -> list[Any]:
        """At least ``n`` open connections to the WebSocket endpoint (kept across episode groups)."""
        from xlab.serve.client import PolicyClient

        while len(self._clients) < n:
            self._clients.append(PolicyClient(self.server_url, self.api_key, timeout=120.0,
                                              reconnect_s=10.0 * (1 + self.max_server_retries)))
        return self._clients[:n]

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this simulator runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def _env(self, env_id: str, slot: int, max_steps: int, images: bool = True) -> Any:
        import gymnasium

        envs = self._envs.setdefault(f"{env_id}/{max_steps}/{images}", [])
        while len(envs) <= slot:
            kwargs = {"max_episode_steps": max_steps} if max_steps else {}
            # Scripted and random references see no images: physics alone runs ~20x faster than rendering.
            size = (self.camera_size or 64) if images else None
            envs.append(gymnasium.make(env_id, image_size=size, **kwargs))
        return envs[slot]

    def _frames(self, images: np.ndarray) -> np.ndarray:
        """Camera frames as the policy takes them: resized exactly as training windows are (if sizes differ)."""
        if images.shape[1] == self.image_size and images.shape[2] == self.image_size:
            return images
        from xlab.rlds.transforms import resize_images

        return resize_images(images, (self.image_size, self.image_size))

    def _request(self, windows: np.ndarray, pad: np.ndarray, instructions: list[str], mode: str,
                 result_counters: list[EpisodeResult], state: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Ask the server for action chunks ``[B, K, ...]``; on a dead replica back off and retry (counted
        per episode)."""
        from ray.exceptions import RayActorError, RayTaskError

        request = {"images": windows, "pad_mask": pad, "instruction": instructions, "mode": mode,
                   "client": self.name, "chunk": True, "timing": True}
        if state is not None:
            request["state"] = state
        delay = 0.2
        for attempt in range(self.max_server_retries + 1):
            try:
                out = self._handle.act.remote(request).result(timeout_s=120)
                timing = out.pop("timing")
                for r in result_counters:
                    r.server_ms.append((timing["queue_ms"], timing["inference_ms"]))
                return out
            except (RayActorError, RayTaskError, TimeoutError) as e:
                if attempt == self.max_server_retries:
                    raise RuntimeError(f"policy server unreachable after {attempt} retries: {e}") from e
                for r in result_counters:
                    r.server_retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _socket_request(self, frames: np.ndarray, states: np.ndarray | None, live: np.ndarray, query: np.ndarray,
                        first: np.ndarray, instructions: list[str], mode: str,
                        results: list[EpisodeResult]) -> dict[str, np.ndarray]:
        """WebSocket transport: one frame per live env (the server keeps the histories, ``infer`` only for
        ``query``), every frame sent before any reply is read so the server batches them. Returns the chunks
        of ``query`` ``[len(query), K, ...]``; reconnections are counted as server retries."""
        from xlab.rlds.schema import ACTION_KEYS

        clients = self._connect(len(live))
        before = [c.reconnects for c in clients]
        wanted = set(query.tolist())
        for j in np.flatnonzero(live):
            obs = {"observation/image": frames[j], "prompt": instructions[j], "reset": bool(first[j]),
                   "infer": int(j) in wanted, "mode": mode}
            if states is not None:
                obs["observation/state"] = np.asarray(states[j], np.float32)
            clients[j].send(obs)
        replies = {int(j): clients[j].receive() for j in np.flatnonzero(live)}
        for j in query:
            timing = replies[int(j)]["server_timing"]
            results[j].server_ms.append((timing["queue_ms"], timing["inference_ms"]))
        for j, c in enumerate(clients):
            results[j].server_retries += c.reconnects - before[j]
        return {k: np.stack([replies[int(j)][k] for j in query]) for k in ACTION_KEYS}

    def run_episodes(self, specs: list[EpisodeSpec]) -> list[EpisodeResult]:
        """Run ``specs`` side by side (one env each) until all end; returns one result per spec."""
        import robots
        from xlab.policies import HistoryBuffer
        from xlab.policies.chunking import ChunkExecutor
        from xlab.policies.session import fit_state

        controllers = {s.controller for s in specs}
        if "policy" in controllers and self._handle is None and not self.server_url:
            raise RuntimeError("policy episodes need a simulator connected to a policy server (server_app)")
        n = len(specs)
        t0 = time.perf_counter()
        results = [EpisodeResult(s.episode_id, s.env_id, s.controller, s.seed) for s in specs]
        slots: dict[str, int] = {}
        envs, obs = [], []
        for s in specs:
            images = s.controller == "policy" or bool(s.record)
            key = f"{s.env_id}/{s.max_steps}/{images}"
            slot = slots[key] = slots.get(key, -1) + 1
            env = self._env(s.env_id, slot, s.max_steps, images)
            envs.append(env)
            obs.append(env.reset(seed=s.seed)[0])
        instructions = [robots.get_task(s.env_id).instruction for s in specs]
        experts = [robots.expert_for(s.env_id) if s.controller == "expert" else None for s in specs]
        rngs = [np.random.default_rng(s.seed) for s in specs]
        policy_idx = np.array([i for i, s in enumerate(specs) if s.controller == "policy"], dtype=np.int64)
        m = max(1, len(policy_idx))
        buffer = HistoryBuffer(m, self.history or 1)
        states = HistoryBuffer(m, self.history or 1) if self.state_dim else None
        executor = ChunkExecutor(m, self.action_chunk, self.execution)
        done = np.zeros(n, bool)
        records: list[dict[str, list]] = [{"images": [], "states": [], "actions": []} for _ in specs]
        while not done.all():
            if any(s.hang and not d for s, d in zip(specs, done, strict=True)):
                time.sleep(3600)  # fault injection: a simulator that stops responding
            actions: list[dict[str, np.ndarray] | None] = [None] * n
            if len(policy_idx) and not done[policy_idx].all():
                live = ~done[policy_idx]
                query = np.flatnonzero(executor.needs_query() & live)
                frames = np.stack([obs[i]["image"] for i in policy_idx])
                raw_states = np.stack([obs[i]["state"] for i in policy_idx]) if self.state_dim else None
                t = time.perf_counter()
                if self.server_url:  # WebSocket: the server resizes and keeps the history
                    first = np.array([results[i].steps == 0 for i in policy_idx])
                    out = self._socket_request(frames, raw_states, live, query, first,
                                               [instructions[i] for i in policy_idx], specs[policy_idx[0]].mode,
                                               [results[i] for i in policy_idx])
                else:
                    windows, pad = buffer.push(self._frames(frames))
                    state_windows = None
                    if states is not None:
                        state_windows, _ = states.push(fit_state(raw_states, self.state_dim))
                    if len(query):
                        out = self._request(windows[query], pad[query], [instructions[policy_idx[j]] for j in query],
                                            specs[policy_idx[query[0]]].mode, [results[policy_idx[j]] for j in query],
                                            None if state_windows is None else state_windows[query])
                if len(query):
                    ms = (time.perf_counter() - t) * 1000
                    executor.add(query, out)
                    for j in query:
                        results[policy_idx[j]].latencies_ms.append(ms)
                for j in np.flatnonzero(live):
                    actions[policy_idx[j]] = executor.next(int(j))
            for i, s in enumerate(specs):
                if done[i]:
                    continue
                env = envs[i]
                if s.controller == "expert":
                    actions[i] = experts[i].act_rt1(obs[i], env)
                elif s.controller == "random":
                    native = rngs[i].uniform(-1, 1, env.unwrapped.embodiment.native_action_space.shape)
                    actions[i] = env.unwrapped.embodiment.from_native(native.astype(np.float32))
                if s.record:
                    rec = records[i]
                    if s.record == "full" or results[i].steps % 4 == 0:
                        rec["images"].append(obs[i]["image"])
                    if s.record == "full":
                        rec["states"].append(obs[i]["state"])
                        rec["actions"].append(actions[i])
                obs[i], _, terminated, truncated, info = env.step(env.unwrapped.embodiment.to_native(actions[i]))
                results[i].steps += 1
                results[i].success = bool(info["success"])
                done[i] = terminated or truncated
        for i, s in enumerate(specs):
            results[i].seconds = time.perf_counter() - t0
            if s.record:
                results[i].frames = np.stack(records[i]["images"] + [obs[i]["image"]])
            if s.record == "full":
                results[i].episode = self._episode(s, records[i], obs[i], results[i].success)
        return results

    @staticmethod
    def _episode(spec: EpisodeSpec, rec: dict[str, list], last_obs: dict, success: bool) -> Any:
        """The recorded episode as an RLDS :class:`~xlab.rlds.schema.Episode` (last step: terminate)."""
        import robots
        from xlab.rlds.schema import Episode

        actions = rec["actions"] + [robots.rt1_action(terminate=True)]
        images = np.stack(rec["images"] + [last_obs["image"]])
        rewards = np.zeros(len(images), np.float32)
        rewards[-1] = float(success)
        task = robots.get_task(spec.env_id)
        return Episode(
            images=images, states=np.stack(rec["states"] + [last_obs["state"]]).astype(np.float32),
            actions={k: np.stack([a[k] for a in actions]) for k in actions[0]}, instruction=task.instruction,
            rewards=rewards, embodiment=task.embodiment, task=spec.env_id,
            episode_id=spec.episode_id or f"{spec.env_id}/{spec.seed}", success=success, seed=spec.seed,
        )

    def close(self) -> None:
        for c in self._clients:
            c.close()
        self._clients = []
        for envs in self._envs.values():
            for env in envs:
                env.close()
        self._envs.clear()
