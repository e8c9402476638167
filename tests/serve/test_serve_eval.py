"""The policy server and simulator actors on a real Ray cluster: batching, equivalence, faults, references.

A tiny untrained rt1x-tiny policy at 32 px keeps forward passes cheap; episodes are capped at a few
steps (``max_steps``) so every test runs real MuJoCo simulators in seconds.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from xlab.serve import (
    SimulatorPool,
    make_specs,
    replica_pids,
    run_episodes,
    shutdown_policy_server,
    start_policy_server,
    summarize,
    wilson_interval,
)

APP = "test-policy"


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    import torch

    from xlab.policies import build_policy

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("policy") / "tiny"
    build_policy("rt1x-tiny", image_size=32).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def server(ray_local, policy_dir):
    # A batch fires as soon as every active simulator has sent its request, so the timeout only bounds
    # the wait for a straggler (an env reset). It must outlast a simulator's round trip (reply, env step,
    # render, next request: ~0.25 s on a quiet machine), or the simulators lock into split batches that
    # each wait it out; 2 s leaves a loaded machine room.
    handle = start_policy_server(policy_dir, name=APP, max_batch_size=8, batch_wait_timeout_s=2.0, num_cpus=0.5)
    yield handle
    shutdown_policy_server(APP)


@pytest.fixture(scope="module")
def pool(server):
    pool = SimulatorPool(3, server_app=APP, num_cpus=0.25)
    yield pool
    pool.shutdown()


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35  # 0/10 is not "certainly 0"
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.75
    lo, hi = wilson_interval(5, 10)
    assert lo < 0.5 < hi and abs((0.5 - lo) - (hi - 0.5)) < 1e-9


def test_server_actions_equal_in_process_actions(server, policy_dir):
    from xlab.policies import load_policy
    from xlab.rlds.text_embed import embed_instructions

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 2, 32, 32, 3), dtype=np.uint8)
    pad = np.array([[True, True], [False, True], [True, True]])
    instruction = "move the gripper to the red target"
    served = server.act.remote({"images": images, "pad_mask": pad, "instruction": instruction,
                                "client": "t"}).result(timeout_s=60)
    local = load_policy(policy_dir).act(images, np.repeat(embed_instructions([instruction]), 3, 0), pad_mask=pad)
    assert served.keys() == local.keys()
    for k in local:
        np.testing.assert_allclose(served[k], local[k], atol=1e-6)


def test_batching_across_simulators(server, pool):
    # Warm up handles and envs first. A simulator keeps its envs per (env, horizon, images), so the warm-up
    # uses the measured horizon: an env built during the measured run (seconds on a fresh clone) staggers
    # the simulators' starts and they never meet in a batch.
    specs = make_specs(["xlab/fetch-reach-v0"], 3, "policy", max_steps=12)
    run_episodes(pool, specs)
    server.stats.remote(reset=True).result()
    results, stats = run_episodes(pool, specs)
    assert [r.status for r in results] == ["ok"] * 3 and all(r.steps == 12 for r in results)
    s = server.stats.remote().result()
    assert s["requests"] == 36
    # 3 simulators in lockstep: batches of 3, of 2 while they fall into step. On a loaded machine a
    # simulator's env step can outlast the batch wait now and then, so some batches are smaller; one
    # forward pass for all 3 must still be common, and no step may run alone throughout.
    assert s["batch_sizes"].get(3, 0) >= 3 and s["mean_batch"] > 1.5, s
    assert all(len(r.latencies_ms) == 12 for r in results)


def test_expert_scores_its_known_success_and_random_does_not(pool):
    specs = make_specs(["xlab/fetch-reach-v0"], 3, "expert") + make_specs(["xlab/fetch-reach-v0"], 3, "random",
                                                                           max_steps=10)
    results, _ = run_episodes(pool, specs)
    rows = {(r["controller"], r["level"]): r for r in summarize(results)}
    assert rows[("expert", "task")]["success_rate"] == 1.0  # 100% over 50 seeds (README)
    assert rows[("random", "task")]["success_rate"] < 1.0
    assert rows[("expert", "task")]["episodes"] == 3


def test_killed_simulator_and_killed_replica_are_recovered(server, pool):
    fired = []

    def chaos(groups_done: int, p: SimulatorPool) -> None:
        if groups_done == 1 and "sim" not in fired:
            fired.append("sim")
            p.kill()  # a busy simulator: its episode dies mid-way
        if groups_done == 2 and "replica" not in fired:
            fired.append("replica")
            os.kill(replica_pids(APP)[0], signal.SIGKILL)

    specs = make_specs(["xlab/fetch-reach-v0"], 9, "policy", max_steps=6)
    results, stats = run_episodes(pool, specs, on_group_done=chaos, max_attempts=4)
    assert fired == ["sim", "replica"]
    assert len(results) == 9 and all(r.status == "ok" for r in results), stats.events
    # Every episode ran to its horizon, or ended early because the (untrained) policy hit the goal.
    assert all(r.steps == 6 or (r.success and 1 <= r.steps < 6) for r in results), [(r.steps, r.success)
                                                                                     for r in results]
    assert stats.simulator_crashes == 1 and stats.retried_episodes >= 1
    assert stats.server_retries >= 1 or any(r.attempts > 1 for r in results)
    assert stats.failed_episodes == 0
    # The replacement replica serves again.
    assert server.info.remote().result(timeout_s=120)["history"] >= 1


def test_hung_simulator_is_restarted_and_episode_retried(pool):
    pool.inject_hang = True
    specs = make_specs(["xlab/fetch-reach-v0"], 2, "expert")
    results, stats = run_episodes(pool, specs, episode_timeout_s=10)
    assert stats.simulator_hangs == 1 and stats.retried_episodes >= 1
    assert all(r.status == "ok" and r.success for r in results)
    assert max(r.attempts for r in results) == 2


def test_episodes_that_keep_failing_are_reported_not_dropped(ray_local):
    pool = SimulatorPool(1, num_cpus=0.25)  # no server: policy episodes cannot run
    try:
        results, stats = run_episodes(pool, make_specs(["xlab/fetch-reach-v0"], 2, "policy"), max_attempts=2)
    finally:
        pool.shutdown()
    assert [r.status for r in results] == ["failed", "failed"]
    assert stats.failed_episodes == 2 and "policy server" in results[0].error
    row = [r for r in summarize(results) if r["level"] == "task"][0]
    assert row["episodes"] == 2 and row["failed"] == 2 and row["success_rate"] == 0.0
