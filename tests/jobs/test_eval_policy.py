"""eval_policy end to end: a policy served to simulator actors, expert and random reference rows,
success rates with intervals, strips and fault counts in MLflow, with a simulator and a replica killed."""

from __future__ import annotations

import json

import mlflow
import pytest

from jobs import eval_policy
from xlab.config import apply_overrides
from xlab.errors import XlabError
from xlab.serve.eval_report import select_tasks


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    import torch

    from xlab.policies import build_policy

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("eval_policy") / "tiny"
    build_policy("rt1x-tiny", image_size=32).save_pretrained(path)
    return str(path)


# The whole eval_policy job with injected faults (~45-70 s): slow suite; the fault handling itself is
# tested fast in tests/serve/test_serve_eval.py.
@pytest.mark.slow
def test_eval_policy_job_with_faults(ray_local, policy_dir, tmp_path):
    cfg = apply_overrides(eval_policy.PRESETS["smoke"], {
        "policy": policy_dir,
        "eval.tasks": ["xlab/fetch-reach-v0", "xlab/sawyer-reach-v0"],
        "eval.episodes": 2, "eval.num_simulators": 2, "eval.max_steps": 6, "eval.simulator_cpus": 0.25,
        "server.num_cpus": 0.5, "server.batch_wait_ms": 200,
        "faults.kill_simulator_after": 1, "faults.kill_replica_after": 3,
        "eval.record_rlds": str(tmp_path / "rollouts"),
    })
    out = eval_policy.main(cfg)
    m = out["metrics"]
    # 2 tasks x 2 episodes x (policy, expert, random), none lost despite the two kills.
    assert m["episodes"] == 12 and m["episodes_failed"] == 0
    assert m["simulator_crashes"] == 1 and m["episodes_retried"] >= 1
    assert 0.0 <= m["success/all"] <= 1.0
    assert m["expert/success/fetch-reach-v0"] == 1.0  # the scripted expert solves reach (100% over 50 seeds)
    assert m["success_ci_low/fetch-reach-v0"] <= m["success/fetch-reach-v0"] <= m["success_ci_high/fetch-reach-v0"]
    assert m["action_latency_p50_ms"] > 0
    assert m.get("mean_batch_size", 1.0) >= 1.0  # absent when the replacement replica served no batch yet

    run = mlflow.get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["xlab.policy"] == policy_dir
    assert run.data.metrics["episodes_failed"] == 0
    client = mlflow.MlflowClient()
    names = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"success.json", "success.png", "run_stats.json"} <= names
    strips = client.list_artifacts(out["run_id"], "strips")
    assert len(strips) == 6  # one episode per task and controller
    stats = json.loads(open(client.download_artifacts(out["run_id"], "run_stats.json")).read())
    assert any("crashed" in e for e in stats["events"]) and stats["server"]["requests"] > 0
    # The policy's evaluation episodes became an RLDS dataset (read back with tfds in the writer process).
    for emb in ("fetch", "sawyer"):  # one dataset per robot, 2 policy episodes each
        info = json.loads((tmp_path / "rollouts" / f"xlab_eval_{emb}" / "0.1.0" / "dataset_info.json").read_text())
        assert sum(int(n) for s in info["splits"] for n in s["shardLengths"]) == 2
        assert run.data.tags[f"xlab.rlds_output.{emb}"].endswith(f"xlab_eval_{emb}/0.1.0")


def test_eval_policy_bad_inputs(tmp_path):
    with pytest.raises(XlabError, match="no policy at"):
        eval_policy.main(apply_overrides(eval_policy.PRESETS["smoke"], {"policy": str(tmp_path / "nope")}))
    with pytest.raises(XlabError, match="eval.episodes"):
        apply_overrides(eval_policy.PRESETS["smoke"], {"eval.episodes": 0})
    with pytest.raises(XlabError, match="eval.embodiments"):
        select_tasks((), ("spot",))


def test_demo_collects_the_tasks_it_evaluates():
    import robots
    from jobs import collect_demos

    assert tuple(collect_demos.PRESETS["demo"].collect.tasks) == robots.DEMO_TASKS
    assert tuple(eval_policy.PRESETS["smoke"].eval.tasks) == robots.DEMO_TASKS
