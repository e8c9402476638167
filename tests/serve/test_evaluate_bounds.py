"""run_episodes' bookkeeping with fake simulators (no Ray cluster): every wait is bounded, losses are
reported as failed, duplicate tasks are refused (issue #15, item 9)."""

import time

import pytest
import ray
from ray.exceptions import RayActorError

from xlab.errors import XlabError
from xlab.serve.evaluate import make_specs, run_episodes
from xlab.serve.simulator import EpisodeResult

TASK = "xlab/sawyer-reach-v0"


class Ref:
    def __init__(self, value=None, error=None, ready=True):
        self.value, self.error, self.ready = value, error, ready


class Method:
    def __init__(self, fn):
        self.remote = fn


class FakeActor:
    """``behaviour(group) -> Ref``; ``alive``: whether a probe (pid) finds it back after a restart."""

    def __init__(self, behaviour, alive=True):
        self.run_episodes = Method(behaviour)
        self.pid = Method(lambda: Ref(1234) if self.alive else Ref(error=RayActorError()))
        self.alive = alive


class FakePool:
    def __init__(self, actors):
        self.actors, self.inject_hang, self.busy, self.killed = actors, False, set(), []

    def __len__(self):
        return len(self.actors)

    def kill(self, index=None):
        self.killed.append(index)
        return index


@pytest.fixture(autouse=True)
def fake_ray(monkeypatch):
    def wait(refs, num_returns=1, timeout=None):
        ready = [r for r in refs if r.ready][:num_returns]
        if not ready:
            time.sleep(0.01)
        return ready, [r for r in refs if r not in ready]

    def get(ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    monkeypatch.setattr(ray, "wait", wait)
    monkeypatch.setattr(ray, "get", get)


def ok(group):
    return Ref([EpisodeResult(s.episode_id, s.env_id, s.controller, s.seed, success=True, steps=3) for s in group])


def crash(group):
    return Ref(error=RayActorError())


def test_a_simulator_that_never_comes_back_is_retired_and_its_episodes_fail():
    pool = FakePool([FakeActor(crash, alive=False)])
    t0 = time.monotonic()
    results, stats = run_episodes(pool, make_specs([TASK], 3), max_attempts=2, restart_timeout_s=0.3)
    assert time.monotonic() - t0 < 10
    assert [r.status for r in results] == ["failed"] * 3
    assert stats.failed_episodes == 3 and any("no simulator left" in r.error for r in results)


def test_restart_budget_bounds_a_simulator_that_keeps_crashing():
    pool = FakePool([FakeActor(crash)])
    results, stats = run_episodes(pool, make_specs([TASK], 4), max_attempts=10, max_restarts=2)
    assert all(r.status == "failed" for r in results) and stats.simulator_crashes == 3
    assert any("retired after 2 restarts" in e for e in stats.events)


def test_total_deadline_reports_what_did_not_run():
    pool = FakePool([FakeActor(lambda g: Ref(ready=False))])  # never answers
    t0 = time.monotonic()
    results, stats = run_episodes(pool, make_specs([TASK], 2), deadline_s=0.3, episode_timeout_s=100)
    assert time.monotonic() - t0 < 10
    assert [r.status for r in results] == ["failed"] * 2 and "deadline" in results[0].error


def test_a_timed_out_simulator_that_still_answers_is_watched_again():
    # Each group hangs until the evaluator kills the actor, and then answers (the kill raced the result).
    # The second hang must be caught too: the timed-out mark of the first is cleared by its success.
    pending = []

    def hang(group):
        ref = Ref(ready=False)
        pending.append((ref, group))
        return ref

    pool = FakePool([FakeActor(hang)])
    original_kill = pool.kill

    def kill(index=None):
        ref, group = pending.pop()
        ref.value, ref.ready = ok(group).value, True
        return original_kill(index)

    pool.kill = kill
    results, stats = run_episodes(pool, make_specs([TASK], 2), episode_timeout_s=0.1, deadline_s=20)
    assert pool.killed == [0, 0]
    assert [r.status for r in results] == ["ok", "ok"]


def test_duplicate_tasks_are_refused():
    with pytest.raises(XlabError, match="listed twice"):
        make_specs([TASK, TASK], 2)
    specs = make_specs([TASK], 2)
    with pytest.raises(XlabError, match="appears twice"):
        run_episodes(FakePool([FakeActor(ok)]), [specs[0], specs[0]])


def test_eval_config_rejects_duplicate_tasks():
    from jobs import eval_policy
    from xlab.config import apply_overrides

    with pytest.raises(XlabError, match=r"eval.tasks.*twice"):
        apply_overrides(eval_policy.PRESETS["smoke"], {"eval.tasks": [TASK, TASK]})
