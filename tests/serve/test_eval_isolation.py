"""Evaluations do not share a Serve application, impossible server resources fail at once, and every
wait (collect_demos rollouts, `xlab submit --wait`) has a deadline with a clear one-line message."""

from __future__ import annotations

import time

import pytest

from xlab.errors import XlabError
from xlab.serve import server as server_mod
from xlab.serve.server import APP_NAME, app_name, check_node_resource, check_server_resources


def test_each_evaluation_gets_its_own_serve_application():
    a, b = app_name("0123456789abcdef0123"), app_name("fedcba9876543210fedc")
    assert a != b and a.startswith(f"{APP_NAME}-") and b.startswith(f"{APP_NAME}-")
    assert app_name(None) != app_name(None)  # no run: a random suffix
    import inspect

    from jobs import eval_policy

    source = inspect.getsource(eval_policy.main)
    assert "app_name(run.info.run_id)" in source and '"xlab-policy"' not in source


def test_server_resources_that_no_node_has_are_refused():
    check_server_resources(2, 1.0, 1.0, [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}])
    with pytest.raises(XlabError, match=r"^bad config value for server.num_gpus: 1 replica\(s\) x 1 GPU") as e:
        check_server_resources(1, 1.0, 1.0, [{"CPU": 16.0}])
    assert "\n" not in str(e.value)
    with pytest.raises(XlabError, match="server.num_gpus"):  # two replicas, one GPU
        check_server_resources(2, 1.0, 1.0, [{"CPU": 16.0, "GPU": 1.0}])
    with pytest.raises(XlabError, match="server.num_cpus"):
        check_server_resources(1, 4.0, 0.0, [{"CPU": 2.0}, {"CPU": 2.0}])


def test_a_node_resource_no_node_defines_is_refused():
    nodes = [{"CPU": 8.0, "head_node": 1.0, "node:127.0.0.1": 1.0}, {"CPU": 2.0, "GPU": 1.0, "gpu_node": 1.0}]
    check_server_resources(1, 1.0, 1.0, nodes, "gpu_node")
    with pytest.raises(XlabError, match="server.num_cpus"):  # the GPU node has 2 CPUs, the head's 8 do not count
        check_server_resources(1, 4.0, 0.0, nodes, "gpu_node")
    with pytest.raises(XlabError) as e:
        check_server_resources(1, 1.0, 0.0, nodes, "worker_node")
    assert str(e.value) == (
        "bad config value for server.node_resource: no node of this cluster defines the resource 'worker_node' "
        "(custom resources: gpu_node, head_node); start the node with "
        "`ray start --resources='{\"worker_node\": 1}'` or leave server.node_resource empty"
    )
    assert check_node_resource("", nodes, "eval.simulator_node_resource") == nodes


def test_start_policy_server_checks_resources_before_deploying(tmp_path, monkeypatch):
    from xlab.policies import build_policy

    path = build_policy("rt1x-tiny").save_pretrained(tmp_path / "p")
    monkeypatch.setattr(server_mod, "_alive_node_resources", lambda: [{"CPU": 2.0}])

    def never(*a, **k):
        raise AssertionError("Serve was started")

    monkeypatch.setattr(server_mod.serve, "start", never)
    t0 = time.monotonic()
    with pytest.raises(XlabError, match="server.num_gpus"):
        server_mod.start_policy_server(str(path), num_gpus=1)
    assert time.monotonic() - t0 < 60


def test_submit_wait_has_a_deadline(monkeypatch):
    from xlab.cli import submit as submit_mod

    class FakeStatus:
        value = "RUNNING"

    class FakeClient:
        def get_job_status(self, submission_id):
            return FakeStatus()

    monkeypatch.setattr(submit_mod, "client", lambda address: FakeClient())
    t0 = time.monotonic()
    with pytest.raises(XlabError, match=r"job raysubmit_1 still RUNNING after 0 s of waiting \(--wait-timeout\)"):
        submit_mod.wait_for("raysubmit_1", "http://127.0.0.1:8265", timeout=0.2, poll=0.05)
    assert time.monotonic() - t0 < 5
    with pytest.raises(XlabError, match="--wait-timeout must be > 0"):
        submit_mod.submit("grokking", [], "http://127.0.0.1:8265", wait=True, wait_timeout=0)


@pytest.mark.timeout(120)
def test_collect_waits_fail_when_no_task_finishes(ray_local):
    import ray

    from xlab.runtime import iter_finished

    @ray.remote(num_cpus=0.1)
    def hang(seconds: float) -> int:
        time.sleep(seconds)
        return 1

    refs = [hang.remote(0), hang.remote(300)]
    # The quick task has finished before the watch starts: on a loaded machine a worker can take longer
    # than the 2 s stall timeout just to start, which would make it "unfinished" too.
    ray.wait(refs[:1], timeout=60)
    got = []
    t0 = time.monotonic()
    with pytest.raises(XlabError, match=r"collect_demos rollouts: 1 of 2 tasks unfinished .*collect.stall_timeout_s=2"):
        for v in iter_finished(refs, stall_timeout_s=2, what="collect_demos rollouts", field="collect.stall_timeout_s"):
            got.append(v)
    assert got == [1] and time.monotonic() - t0 < 60
