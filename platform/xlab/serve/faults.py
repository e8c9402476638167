"""Fault injection for a simulated evaluation: kill a simulator or a policy replica, or hang a simulator,
part-way through a real run, to check that it recovers (the ``--faults.*`` section of eval_policy).

    hook = fault_hook(FaultConfig(kill_simulator_after=2), server_app)
    run_episodes(pool, specs, on_group_done=hook)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class FaultConfig:
    """Fault injection, to check recovery on a real run (all 0: off)."""

    kill_simulator_after: int = 0
    """Kill simulator 0 after this many finished episode groups."""
    kill_replica_after: int = 0
    """Kill a policy server replica (SIGKILL) after this many finished groups."""
    hang_simulator_after: int = 0
    """Make the next group of one simulator hang after this many finished groups."""


def fault_hook(cfg: FaultConfig, server_app: str | None) -> Callable[[int, Any], None]:
    """An ``on_group_done(groups_done, pool)`` callback for :func:`~xlab.serve.evaluate.run_episodes` that
    fires each configured fault once, when that many episode groups have finished."""
    fired: set[str] = set()

    def hook(groups_done: int, pool: Any) -> None:
        import os
        import signal

        if cfg.kill_simulator_after and groups_done >= cfg.kill_simulator_after and "sim" not in fired:
            fired.add("sim")
            print(f"[eval_policy] fault injection: killed simulator {pool.kill()} mid-episode", flush=True)
        if cfg.hang_simulator_after and groups_done >= cfg.hang_simulator_after and "hang" not in fired:
            fired.add("hang")
            print("[eval_policy] fault injection: the next episode group will hang", flush=True)
            pool.inject_hang = True
        if server_app and cfg.kill_replica_after and groups_done >= cfg.kill_replica_after and "rep" not in fired:
            from xlab.serve.server import replica_pids

            fired.add("rep")
            pid = replica_pids(server_app)[0]
            print(f"[eval_policy] fault injection: killing policy replica pid {pid}", flush=True)
            os.kill(pid, signal.SIGKILL)

    return hook
