"""Evaluation at scale: M episodes per task spread over N simulator actors, with fault recovery.

:class:`SimulatorPool` starts N :class:`~xlab.serve.simulator.Simulator` actors (restartable);
:func:`run_episodes` hands each free actor the next group of episodes (``envs_per_simulator`` run
side by side in one actor) and collects results as they finish. Faults are handled here:

* an actor that **crashes** (its process dies) is restarted by Ray (``max_restarts=-1``); its group
  is re-queued and run again (``attempts`` + 1);
* an actor that **hangs** (a group takes longer than ``episode_timeout_s``) is killed and
  restarted, and its group re-queued;
* after ``max_attempts`` a group's episodes are reported with ``status="failed"``: counted in the
  results, never silently dropped;
* every wait is bounded: a simulator that does not come back within ``restart_timeout_s`` or used up
  ``max_restarts`` is retired; past the total ``deadline_s``, or with no simulator left, the
  episodes not yet run are reported as failed.

Server-side faults (a dead policy replica) are retried inside the simulators. :func:`summarize`
turns results into success rates with Wilson 95% intervals per task and embodiment.

    pool = SimulatorPool(4, server_app="xlab-policy")
    results, stats = run_episodes(pool, make_specs(["xlab/fetch-reach-v0"], 20, "policy"))
    summarize(results)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlab.errors import XlabError
from xlab.serve.simulator import CONTROLLERS, EpisodeResult, EpisodeSpec, Simulator


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at 0/n and n/n, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def make_specs(env_ids: Sequence[str], episodes: int, controller: str = "policy", *, seed: int = 0,
               max_steps: int = 0, mode: str = "argmax", record_per_task: int = 0,
               record: str = "strip") -> list[EpisodeSpec]:
    """``episodes`` specs per env id, seeds ``seed*100000 + task*1000 + i`` (the same for every controller:
    policies, expert and random are compared on identical initial states)."""
    if controller not in CONTROLLERS:
        raise ValueError(f"unknown controller {controller!r}; choose from {CONTROLLERS}")
    twice = sorted({e for e in env_ids if list(env_ids).count(e) > 1})
    if twice:
        raise XlabError(f"task(s) listed twice: {', '.join(twice)}; list each task once (raise episodes instead)")
    return [
        EpisodeSpec(env_id, seed * 100_000 + t * 1_000 + i, controller, f"{controller}/{env_id}/{i}", max_steps,
                    mode, record if i < record_per_task else "")
        for t, env_id in enumerate(env_ids) for i in range(episodes)
    ]


class SimulatorPool:
    """N restartable simulator actors (optionally connected to a policy server application); ``node_resource``:
    only on the nodes that define this custom resource (see :data:`xlab.serve.server.NODE_SHARE`)."""

    def __init__(self, num_simulators: int, *, server_app: str | None = None, image_size: int = 0,
                 history: int = 0, num_cpus: float = 0.25, server_retries: int = 20,
                 execution: str = "ensemble", server_url: str = "", api_key: str = "",
                 node_resource: str = "") -> None:
        import ray

        from xlab.serve.server import _alive_node_resources, check_node_resource, node_resources

        if node_resource:
            check_node_resource(node_resource, _alive_node_resources(), "eval.simulator_node_resource")
        actor_cls = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=num_cpus,
                               resources=node_resources(node_resource))(Simulator)
        self.actors = [
            actor_cls.options(name=None).remote(server_app, image_size, history, server_retries, f"sim-{i}",
                                                execution, server_url, api_key)
            for i in range(num_simulators)
        ]
        self.inject_hang = False  # fault injection: the next dispatched group hangs (see run_episodes)
        self.busy: set[int] = set()  # actors running a group right now (maintained by run_episodes)

    def __len__(self) -> int:
        return len(self.actors)

    def pids(self) -> list[int]:
        import ray

        return ray.get([a.pid.remote() for a in self.actors])

    def node_ids(self) -> list[str]:
        """The Ray node of each simulator."""
        import ray

        return ray.get([a.node_id.remote() for a in self.actors])

    def kill(self, index: int | None = None) -> int:
        """Kill actor ``index`` (default: a busy one) the way a crash would; Ray restarts it and the
        evaluator retries its episodes. Returns the index killed."""
        import ray

        if index is None:
            index = min(self.busy) if self.busy else 0
        ray.kill(self.actors[index], no_restart=False)
        return index

    def shutdown(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []


@dataclass
class RunStats:
    seconds: float = 0.0
    episodes: int = 0
    env_steps: int = 0
    retried_episodes: int = 0
    failed_episodes: int = 0
    simulator_crashes: int = 0
    simulator_hangs: int = 0
    server_retries: int = 0
    events: list[str] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        return self.env_steps / self.seconds if self.seconds else 0.0


def _groups(specs: Sequence[EpisodeSpec], size: int) -> list[list[EpisodeSpec]]:
    """Chunks of ``size`` specs with one controller and mode each (a group shares one server request)."""
    by_key: dict[tuple[str, str], list[EpisodeSpec]] = {}
    for s in specs:
        by_key.setdefault((s.controller, s.mode), []).append(s)
    return [group[i:i + size] for group in by_key.values() for i in range(0, len(group), size)]


def _check_unique_ids(specs: Sequence[EpisodeSpec]) -> None:
    seen: set[str] = set()
    for s in specs:
        if s.episode_id in seen:
            raise XlabError(f"episode id {s.episode_id!r} appears twice (a task listed twice?): every episode "
                            "needs its own id or one result would be dropped")
        seen.add(s.episode_id)


def default_deadline_s(n_groups: int, n_simulators: int, episode_timeout_s: float, max_attempts: int,
                       restart_timeout_s: float) -> float:
    """A total bound no healthy run reaches: every group's every attempt timing out, plus restarts."""
    rounds = math.ceil(n_groups / max(n_simulators, 1))
    return rounds * max_attempts * (episode_timeout_s + restart_timeout_s) + restart_timeout_s


def run_episodes(
    pool: SimulatorPool,
    specs: Sequence[EpisodeSpec],
    *,
    envs_per_simulator: int = 1,
    episode_timeout_s: float = 300.0,
    max_attempts: int = 3,
    max_restarts: int = 5,
    restart_timeout_s: float = 120.0,
    deadline_s: float | None = None,
    progress: Callable[[int, int, RunStats], None] | None = None,
    on_group_done: Callable[[int, SimulatorPool], None] | None = None,
) -> tuple[list[EpisodeResult], RunStats]:
    """Run every spec on the pool; returns one result per spec (same order) and run statistics.

    Every wait is bounded: a simulator is restarted at most ``max_restarts`` times and must answer
    within ``restart_timeout_s`` of a restart, else it is retired; after ``deadline_s`` (default:
    :func:`default_deadline_s`) or once no simulator is left, what did not run is reported as failed.
    ``on_group_done(groups_done, pool)`` is called after each finished group (fault injection hooks).
    """
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    _check_unique_ids(specs)
    t0 = time.perf_counter()
    stats = RunStats()
    queue: deque[tuple[list[EpisodeSpec], int]] = deque((g, 1) for g in _groups(specs, envs_per_simulator))
    if deadline_s is None:
        deadline_s = default_deadline_s(len(queue), len(pool), episode_timeout_s, max_attempts, restart_timeout_s)
    deadline = time.monotonic() + deadline_s
    free = deque(range(len(pool)))
    inflight: dict[Any, tuple[int, list[EpisodeSpec], int, float]] = {}
    timed_out: set[int] = set()
    restarts: Counter[int] = Counter()
    probes: dict[Any, tuple[int, float]] = {}  # restarted actors: a cheap call that returns once it is back
    results: dict[str, EpisodeResult] = {}
    groups_done = 0
    total = len(specs)

    def give_up(group: list[EpisodeSpec], attempt: int, why: str) -> None:
        for s in group:
            results[s.episode_id] = EpisodeResult(s.episode_id, s.env_id, s.controller, s.seed, status="failed",
                                                  attempts=attempt, error=why)
        stats.failed_episodes += len(group)
        stats.events.append(f"gave up on {len(group)} episode(s) after {attempt} attempt(s) ({why})")

    def requeue(group: list[EpisodeSpec], attempt: int, why: str) -> None:
        if attempt < max_attempts:
            queue.appendleft((group, attempt + 1))
            stats.retried_episodes += len(group)
            stats.events.append(f"retry {len(group)} episode(s) ({why}), attempt {attempt + 1}/{max_attempts}")
        else:
            give_up(group, attempt, why)

    def restart(actor: int) -> None:
        """Wait (bounded) for Ray to bring ``actor`` back, unless it used up its restarts."""
        restarts[actor] += 1
        if restarts[actor] > max_restarts:
            stats.events.append(f"simulator {actor} retired after {max_restarts} restarts")
            return
        probes[pool.actors[actor].pid.remote()] = (actor, time.monotonic())

    def release(actor: int) -> None:
        """``actor`` finished a group: free again, or restarting if it was killed for a timeout meanwhile."""
        if actor in timed_out:
            timed_out.discard(actor)
            restart(actor)
        else:
            free.append(actor)

    while queue or inflight:  # restarting actors (probes) only matter while work is queued
        if time.monotonic() > deadline:
            why = f"evaluation deadline of {deadline_s:.0f}s exceeded"
            for _actor, group, attempt, _ in inflight.values():
                give_up(group, attempt, why)
            while queue:
                give_up(*queue.popleft(), why)
            break
        if queue and not free and not inflight and not probes:
            while queue:
                give_up(*queue.popleft(), "no simulator left (every one used up its restarts)")
            break
        while queue and free:
            actor = free.popleft()
            group, attempt = queue.popleft()
            sent = group
            if pool.inject_hang:  # the retry of this group (re-queued from `group`) runs normally
                pool.inject_hang = False
                sent = [dataclasses.replace(group[0], hang=True), *group[1:]]
            ref = pool.actors[actor].run_episodes.remote(sent)
            inflight[ref] = (actor, group, attempt, time.monotonic())
            pool.busy.add(actor)
        ready, _ = ray.wait([*inflight, *probes], num_returns=1, timeout=1.0)
        for ref in ready:
            if ref in probes:
                actor, since = probes.pop(ref)
                try:
                    ray.get(ref)
                    free.append(actor)
                except RayActorError:  # still restarting: ask again shortly (until restart_timeout_s)
                    time.sleep(0.2)
                    probes[pool.actors[actor].pid.remote()] = (actor, since)
                continue
            actor, group, attempt, _ = inflight.pop(ref)
            pool.busy.discard(actor)
            try:
                out = ray.get(ref)
            except (RayActorError, GetTimeoutError) as e:
                hung = actor in timed_out
                timed_out.discard(actor)
                if hung:
                    stats.simulator_hangs += 1
                else:
                    stats.simulator_crashes += 1
                requeue(group, attempt, "simulator hung and was restarted" if hung
                        else f"simulator crashed: {type(e).__name__}")
                restart(actor)  # back to work once Ray has restarted it
                continue
            except Exception as e:  # an error inside the episode (e.g. server unreachable after retries)
                release(actor)
                requeue(group, attempt, f"episode error: {str(e).strip().splitlines()[-1][:200]}")
                continue
            release(actor)
            for r in out:
                r.attempts = attempt
                results[r.episode_id] = r
                stats.env_steps += r.steps
                stats.server_retries += r.server_retries
            groups_done += 1
            if on_group_done is not None:
                on_group_done(groups_done, pool)
            if progress is not None:
                progress(len(results), total, stats)
        now = time.monotonic()
        for ref, (actor, since) in list(probes.items()):
            if now - since > restart_timeout_s:
                del probes[ref]
                stats.events.append(f"simulator {actor} did not come back within {restart_timeout_s:.0f}s: retired")
        for actor, _group, _attempt, started in list(inflight.values()):
            if now - started > episode_timeout_s and actor not in timed_out:
                timed_out.add(actor)  # its ref now fails with RayActorError and the group is re-queued
                stats.events.append(f"simulator {actor} exceeded {episode_timeout_s:.0f}s: killed and restarted")
                pool.kill(actor)
    stats.seconds = time.perf_counter() - t0
    stats.episodes = len(results)
    return [results[s.episode_id] for s in specs], stats


def summarize(results: Sequence[EpisodeResult]) -> list[dict[str, Any]]:
    """One row per (controller, env id) and per (controller, embodiment): success rate, Wilson 95% CI,
    episodes, failed, mean steps. Failed episodes count as unsuccessful (they are in ``episodes``)."""
    import robots

    rows: dict[tuple[str, str, str], list[EpisodeResult]] = {}
    for r in results:
        emb = robots.get_task(r.env_id).embodiment
        rows.setdefault((r.controller, "task", r.env_id), []).append(r)
        rows.setdefault((r.controller, "embodiment", emb), []).append(r)
        rows.setdefault((r.controller, "all", "all"), []).append(r)
    out = []
    for (controller, level, key), rs in rows.items():
        n, k = len(rs), sum(r.success for r in rs)
        lo, hi = wilson_interval(k, n)
        ok = [r for r in rs if r.status == "ok"]
        out.append({"controller": controller, "level": level, "name": key, "episodes": n, "successes": k,
                    "success_rate": k / n if n else 0.0, "ci_low": lo, "ci_high": hi,
                    "failed": n - len(ok), "retried": sum(r.attempts > 1 for r in rs),
                    "mean_steps": sum(r.steps for r in ok) / len(ok) if ok else 0.0})
    order = {"task": 0, "embodiment": 1, "all": 2}
    return sorted(out, key=lambda r: (r["controller"], order[r["level"]], r["name"]))
