"""Serving policies: a batching Ray Serve policy server, simulator actors, evaluation, a WebSocket endpoint.

::

    from xlab.serve import SimulatorPool, make_specs, run_episodes, start_policy_server, summarize
    start_policy_server("models:/rt1x-policy@latest-train")            # Serve app "xlab-policy"
    pool = SimulatorPool(8, server_app="xlab-policy")
    results, stats = run_episodes(pool, make_specs(["xlab/fetch-reach-v0"], 20))
    summarize(results)          # success rate + Wilson 95% CI per task / embodiment

    from xlab.serve import PolicyClient                                 # no Ray: the network endpoint
    with PolicyClient("ws://127.0.0.1:8000") as policy:                 # of `xlab serve POLICY_REF`
        out = policy.infer({"observation/image": frame, "prompt": "reach the red target"})

Modules: :mod:`~xlab.serve.server` (the batching deployment), :mod:`~xlab.serve.simulator` (actors),
:mod:`~xlab.serve.evaluate` (scheduling, fault recovery, statistics), :mod:`~xlab.serve.eval_report`
(an evaluation's metrics, plot, strips and table), :mod:`~xlab.serve.faults` (fault injection), :mod:`~xlab.serve.protocol`
(openpi's msgpack-numpy frames), :mod:`~xlab.serve.gateway` (the WebSocket ingress),
:mod:`~xlab.serve.client`, :mod:`~xlab.serve.remote_episode` (a plain-process runner),
:mod:`~xlab.serve.command` (``xlab serve``). ``jobs/eval_policy.py`` is the job. Names are imported
lazily, so the client side never loads Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunStats": "evaluate",
    "SimulatorPool": "evaluate",
    "make_specs": "evaluate",
    "run_episodes": "evaluate",
    "summarize": "evaluate",
    "wilson_interval": "evaluate",
    "APP_NAME": "server",
    "app_name": "server",
    "check_server_resources": "server",
    "load_any_policy": "server",
    "replica_pids": "server",
    "shutdown_policy_server": "server",
    "start_policy_server": "server",
    "ensure_serve": "server",
    "CONTROLLERS": "simulator",
    "EpisodeResult": "simulator",
    "EpisodeSpec": "simulator",
    "Simulator": "simulator",
    "PolicyClient": "client",
    "ServerFrameError": "client",
    "AuthError": "client",
    "start_gateway": "gateway",
    "serve_policy": "command",
    "run_remote_episodes": "remote_episode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xlab.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"xlab.serve.{_EXPORTS[name]}"), name)
