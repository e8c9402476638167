"""Serving policies to many simulated robots: a batching Ray Serve policy server, simulator actors, evaluation.

::

    from xlab.serve import SimulatorPool, make_specs, run_episodes, start_policy_server, summarize
    start_policy_server("models:/rt1x-policy@latest-train")            # Serve app "xlab-policy"
    pool = SimulatorPool(8, server_app="xlab-policy")
    results, stats = run_episodes(pool, make_specs(["xlab/fetch-reach-v0"], 20))
    summarize(results)          # success rate + Wilson 95% CI per task / embodiment

Modules: :mod:`~xlab.serve.server` (the deployment), :mod:`~xlab.serve.simulator` (actors),
:mod:`~xlab.serve.evaluate` (scheduling, fault recovery, statistics). ``jobs/eval_policy.py`` is the job.
"""

from xlab.serve.evaluate import RunStats, SimulatorPool, make_specs, run_episodes, summarize, wilson_interval
from xlab.serve.server import (
    APP_NAME,
    app_name,
    check_server_resources,
    load_any_policy,
    replica_pids,
    shutdown_policy_server,
    start_policy_server,
)
from xlab.serve.simulator import CONTROLLERS, EpisodeResult, EpisodeSpec, Simulator

__all__ = [
    "APP_NAME",
    "app_name",
    "check_server_resources",
    "CONTROLLERS",
    "EpisodeResult",
    "EpisodeSpec",
    "RunStats",
    "Simulator",
    "SimulatorPool",
    "load_any_policy",
    "make_specs",
    "replica_pids",
    "run_episodes",
    "shutdown_policy_server",
    "start_policy_server",
    "summarize",
    "wilson_interval",
]
