"""Evaluate a policy in simulation at scale: a batching policy server, N simulator actors, success rates with CIs.

The policy (``--policy models:/NAME@alias``, ``runs:/RUN_ID/policy`` or a ``save_pretrained``
directory) is deployed as a Ray Serve application (:mod:`xlab.serve.server`: one forward pass per
batch of requests from all simulators, ``server.replicas`` replicas); ``eval.num_simulators`` Ray
actors (:mod:`xlab.serve.simulator`) run ``eval.episodes`` episodes of every task and ask the server
for actions. The scripted expert and a random policy run the same episodes (same seeds) as
reference rows. The MLflow run gets success rate per task and embodiment with Wilson 95% intervals,
a bar plot with the intervals, image strips of sample episodes, server batch statistics, and how
many episodes were retried after a simulator crash or hang, or failed. Runs of different policies
compare with ``xlab runs eval_policy``.

    xlab run eval_policy --preset smoke --policy models:/rt1x-policy@latest-train
    xlab run eval_policy --policy runs:/<run id>/policy --eval.embodiments fetch --eval.episodes 50
    xlab run eval_policy --policy expert --eval.tasks xlab/sawyer-reach-v0       # the expert alone
    xlab run eval_policy --preset smoke --eval.transport websocket     # simulators as network clients
    xlab run eval_policy --preset paper --policy models:/rt1x-policy@prod       # all 14 tasks, 100 episodes
"""

from __future__ import annotations

import dataclasses
from typing import Any

from robots.tasks import DEMO_TASKS
from xlab.config import JobConfig, check
from xlab.serve.faults import FaultConfig


@dataclasses.dataclass
class EvalConfig:
    tasks: tuple[str, ...] = ()
    """Env ids to evaluate (default: every task of eval.embodiments)."""
    embodiments: tuple[str, ...] = ("sawyer", "fetch")
    """Embodiments whose registered tasks are evaluated when eval.tasks is empty."""
    episodes: int = 10
    """Episodes per task (M) for the policy and for each reference."""
    references: tuple[str, ...] = ("expert", "random")
    """Reference rows run on the same episodes: expert (scripted) and/or random."""
    num_simulators: int = 4
    """Simulator actors (N). For fixed-length episodes on few CPUs, about one per free CPU with the other
    envs as eval.envs_per_simulator is fastest (benchmarks/serving.py, 16 envs on 2 cores: 2 x 8 at
    0.88-1.00 of in-process, 16 x 1 at 0.33-0.35); an actor's envs wait for its longest episode, so where
    episodes end early that gain shrinks (smoke preset: 2 x 5 took 93 s, 4 x 1 85 s)."""
    envs_per_simulator: int = 1
    """Environments each simulator steps side by side (one server request per step for all of them)."""
    simulator_cpus: float = 0.25
    """CPUs reserved per simulator actor (fractional: many simulators share a core while they wait)."""
    simulator_node_resource: str = ""
    """Run the simulators only on the nodes that define this custom Ray resource (a CPU node type; '': anywhere)."""
    image_size: int = 0
    """Camera size the simulators render at (0: the policy's image size); other sizes are resized to the
    policy's exactly as training windows are (PIL bilinear), so match the size the demonstrations were
    recorded at."""
    transport: str = "handle"
    """How simulators reach the policy: handle (Serve handles inside Ray) or websocket (the network endpoint of
    `xlab serve`, on loopback with a one-run API key: one frame per step, history kept by the server)."""
    execution: str = "ensemble"
    """How a chunking policy's action chunks are executed: ensemble (temporal ensembling), open-loop or first."""
    max_steps: int = 0
    """Horizon override (0: each task's max_episode_steps)."""
    mode: str = "argmax"
    """Policy actions: argmax (deterministic) or sample."""
    seed: int = 123
    """Episode seeds: seed*100000 + task*1000 + i (identical for policy and references)."""
    strips_per_task: int = 1
    """Episodes per task and controller whose frames become an image strip in MLflow."""
    episode_timeout_s: float = 300.0
    """A simulator group running longer than this is treated as hung: killed, restarted, retried."""
    max_attempts: int = 3
    """Tries per episode group before its episodes are reported as failed."""
    max_restarts: int = 5
    """Restarts per simulator (crash or hang) before it is retired; each must be back within restart_timeout_s."""
    restart_timeout_s: float = 120.0
    """How long a restarted simulator may take to answer again before it is retired."""
    deadline_s: float = 0.0
    """Total time bound of the evaluation; episodes not run by then are reported failed (0: derived from
    episode_timeout_s, max_attempts and the episodes per simulator, never reached by a healthy run)."""
    record_rlds: str = ""
    """Write the policy's evaluation episodes as an RLDS dataset under this dir ('' = don't)."""

    def __post_init__(self) -> None:
        check(self.episodes >= 1, "eval.episodes", f"must be >= 1, got {self.episodes}")
        check(self.num_simulators >= 1, "eval.num_simulators", f"must be >= 1, got {self.num_simulators}")
        check(self.envs_per_simulator >= 1, "eval.envs_per_simulator", "must be >= 1")
        check(self.mode in ("argmax", "sample"), "eval.mode", f"must be argmax or sample, got {self.mode!r}")
        check(set(self.references) <= {"expert", "random"}, "eval.references",
              f"choose from expert, random; got {self.references}")
        check(self.max_attempts >= 1, "eval.max_attempts", "must be >= 1")
        twice = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        check(not twice, "eval.tasks", f"lists {', '.join(twice)} twice; list each task once (raise eval.episodes)")
        check(self.max_restarts >= 0, "eval.max_restarts", "must be >= 0")
        check(self.restart_timeout_s > 0, "eval.restart_timeout_s", "must be > 0")
        check(self.deadline_s >= 0, "eval.deadline_s", "must be >= 0 (0: derived)")
        check(self.simulator_cpus > 0, "eval.simulator_cpus", "must be > 0")
        check(self.transport in ("handle", "websocket"), "eval.transport",
              f"must be handle or websocket, got {self.transport!r}")
        check(self.execution in ("ensemble", "open-loop", "first"), "eval.execution",
              f"must be ensemble, open-loop or first, got {self.execution!r}")


@dataclasses.dataclass
class ServerConfig:
    replicas: int = 1
    max_batch_size: int = 64
    batch_wait_ms: float = 50.0
    """Longest wait for a batch to fill (the server waits for all active simulators, up to this)."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    threads: int = 0
    """torch threads per replica (0: torch's default)."""
    node_resource: str = ""
    """Place the replicas only on the nodes that define this custom Ray resource (a GPU node type; '': anywhere)."""

    def __post_init__(self) -> None:
        check(self.replicas >= 1, "server.replicas", f"must be >= 1, got {self.replicas}")
        check(self.max_batch_size >= 1, "server.max_batch_size", "must be >= 1")
        check(self.batch_wait_ms >= 0, "server.batch_wait_ms", "must be >= 0")


@dataclasses.dataclass
class Config(JobConfig):
    policy: str = "models:/rt1x-policy@latest-train"
    """models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/policy, a policy directory, or expert/random."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    faults: FaultConfig = dataclasses.field(default_factory=FaultConfig)


PRESETS = {
    # A few minutes on 2 cores: robots.DEMO_TASKS (the tasks `make demo` records), 10 episodes each.
    "smoke": Config(eval=EvalConfig(
        tasks=DEMO_TASKS,
        episodes=10, num_simulators=4)),
    # `make demo`: the four demo tasks, 20 episodes each (and 20 of the expert and of a random policy).
    "demo": Config(
        policy="models:/rt1x-policy@best-sim",
        eval=EvalConfig(
            tasks=DEMO_TASKS,
            episodes=20, num_simulators=4)),
    # Every registered task, 100 episodes each, 64 simulators against 2 GPU replicas.
    "paper": Config(
        eval=EvalConfig(episodes=100, num_simulators=64, envs_per_simulator=2, simulator_cpus=0.5,
                        strips_per_task=2),
        server=ServerConfig(replicas=2, max_batch_size=128, num_cpus=4, num_gpus=1),
    ),
}
KEY_METRICS = ["success/all", "success/sawyer", "success/fetch", "episodes_failed", "mean_batch_size"]


def main(cfg: Config) -> dict:
    import pandas as pd

    from xlab.serve import (
        SimulatorPool,
        app_name,
        load_any_policy,
        make_specs,
        run_episodes,
        shutdown_policy_server,
        start_policy_server,
        summarize,
    )
    from xlab.serve.eval_report import (
        console_summary,
        eval_metrics,
        log_evaluation,
        record_rlds,
        select_tasks,
    )
    from xlab.serve.faults import fault_hook
    from xlab.session import job_session
    from xlab.track import Tracker

    ev = cfg.eval
    tasks = select_tasks(ev.tasks, ev.embodiments)
    uses_policy = cfg.policy not in ("expert", "random")
    if uses_policy:
        load_any_policy(cfg.policy)  # a bad reference fails now, in one line, before Ray starts
    with job_session("eval_policy", cfg) as run:
        tracker = Tracker()
        tracker.set_tags({"xlab.policy": cfg.policy})
        server_app, server_url, api_key = None, "", ""
        websocket = uses_policy and ev.transport == "websocket"
        if websocket:
            from xlab.serve.gateway import loopback_proxy

            server_url = loopback_proxy()  # before any application: Serve's proxy settings are fixed at start
        if uses_policy:
            server_app = app_name(run.info.run_id)  # its own application: deleted below, and only it
            server = dict(replicas=cfg.server.replicas, max_batch_size=cfg.server.max_batch_size,
                          batch_wait_timeout_s=cfg.server.batch_wait_ms / 1000, num_cpus=cfg.server.num_cpus,
                          num_gpus=cfg.server.num_gpus, threads=cfg.server.threads,
                          node_resource=cfg.server.node_resource)
            if websocket:  # the same batching replica, with its WebSocket front at /<app>/ and a one-run key
                import secrets

                from xlab.serve.gateway import start_gateway

                api_key = secrets.token_hex(16)
                start_gateway(cfg.policy, name=server_app, route_prefix=f"/{server_app}", api_key=api_key, **server)
                server_url = f"{server_url}/{server_app}/"  # the trailing slash: Serve routes "/app" as "/app/"
            else:
                start_policy_server(cfg.policy, name=server_app, **server)
        controllers = (["policy"] if uses_policy else [cfg.policy]) + [r for r in ev.references if r != cfg.policy]
        specs = []
        for c in controllers:
            specs += make_specs(tasks, ev.episodes, c, seed=ev.seed, max_steps=ev.max_steps, mode=ev.mode,
                                record_per_task=ev.episodes if ev.record_rlds and c == "policy" else ev.strips_per_task,
                                record="full" if ev.record_rlds and c == "policy" else "strip")
        pool = SimulatorPool(ev.num_simulators, server_app=None if websocket else server_app,
                             image_size=ev.image_size, execution=ev.execution, num_cpus=ev.simulator_cpus,
                             server_url=server_url, api_key=api_key, node_resource=ev.simulator_node_resource)
        print(f"[eval_policy] {len(specs)} episodes ({', '.join(controllers)} x {len(tasks)} tasks x {ev.episodes}) "
              f"on {ev.num_simulators} simulators", flush=True)
        last = [0.0]

        def progress(done: int, total: int, stats: Any) -> None:
            import time

            if time.monotonic() - last[0] > 10 or done == total:
                last[0] = time.monotonic()
                print(f"[eval_policy] {done}/{total} episodes, {stats.env_steps} env steps, "
                      f"retried {stats.retried_episodes}, failed {stats.failed_episodes}", flush=True)

        hook = fault_hook(cfg.faults, server_app)
        try:
            results, stats = run_episodes(pool, specs, envs_per_simulator=ev.envs_per_simulator,
                                          episode_timeout_s=ev.episode_timeout_s, max_attempts=ev.max_attempts,
                                          max_restarts=ev.max_restarts, restart_timeout_s=ev.restart_timeout_s,
                                          deadline_s=ev.deadline_s or None, progress=progress, on_group_done=hook)
            server_stats = None
            if server_app:
                from ray import serve

                server_stats = serve.get_app_handle(server_app).stats.remote().result(timeout_s=60)
        finally:
            pool.shutdown()
            if server_app:
                shutdown_policy_server(server_app)
        rows = summarize(results)
        metrics = eval_metrics(rows, results, stats, server_stats, main_controller=controllers[0])
        log_evaluation(run.info.run_id, rows, results, stats, server_stats, metrics, ev.strips_per_task)
        if ev.record_rlds:
            for emb, info in record_rlds(ev.record_rlds, results, cfg.policy).items():
                tracker.set_tags({f"xlab.rlds_output.{emb}": info["path"]})
                print(f"[eval_policy] wrote {info['episodes_read_back']} {emb} evaluation episodes as RLDS: "
                      f"{info['path']}")
        print(console_summary(rows, stats, server_stats, n_tasks=len(tasks)))
        return {"run_id": run.info.run_id, "table": pd.DataFrame(rows), "metrics": metrics, "stats": stats,
                "results": results}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("eval_policy")
