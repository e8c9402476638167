"""Two real Ray nodes on this machine (``tests/cluster.py``): training with one worker per node, a node lost
mid-run and survived, checkpoint storage checked up front, Tune trials on both nodes, a policy server on
one node serving simulators on the other, and a submitted job of every family.

Drivers run as separate processes (``drivers.py``) that join the cluster, as a user's job would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
from cluster import WORKER_IP, TwoNodeCluster

pytestmark = pytest.mark.slow
DRIVERS = Path(__file__).with_name("drivers.py")


@pytest.fixture(scope="module")
def two_nodes():
    cluster = TwoNodeCluster()
    try:
        cluster.start()  # inside the try: a node that fails to start must not leave the other running
        yield cluster
    finally:
        cluster.stop()


def start_driver(cluster: TwoNodeCluster, what: str, out: Path, *args: str, **env: str) -> subprocess.Popen:
    log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, str(DRIVERS), what, str(out), *args],
        env=cluster.driver_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, out: Path, timeout: float) -> dict:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "timeout"
    log = out.with_suffix(".log").read_text(errors="replace")
    assert rc == 0 and out.exists(), f"driver {rc}:\n{log[-6000:]}"
    return json.loads(out.read_text())


def run_driver(cluster: TwoNodeCluster, what: str, out: Path, *args: str, timeout: float = 900) -> dict:
    return finish(start_driver(cluster, what, out, *args), out, timeout)


@pytest.mark.timeout(300)
def test_storage_that_one_node_cannot_see_is_refused_up_front(two_nodes, tmp_path):
    if two_nodes.isolation != "mount-namespace":
        pytest.skip("needs root for a private mount namespace: both nodes see every path of this machine")
    # The head's temp dir: the second node has its own directory at that path (like ./ray_results in a
    # job's working directory on the head of a real cluster).
    head_only = Path(two_nodes.temp_dir) / "ray_results"
    res = run_driver(two_nodes, "storage", tmp_path / "head_only.json", "--storage", str(head_only))
    assert not res["ok"]
    assert "is on this node only" in res["error"] and "XLAB_STORAGE_PATH" in res["error"], res["error"]
    assert len(res["error"].splitlines()) == 1
    shared = run_driver(two_nodes, "storage", tmp_path / "shared.json", "--storage", str(tmp_path / "shared"))
    assert shared["ok"]


def _registered_checkpoint(storage: Path) -> dict | None:
    """The state of the newest checkpoint Ray Train has registered (its snapshot file names it): the one a
    restart resumes from. A checkpoint directory can exist in storage before the controller registers it."""
    for snap in storage.glob("lm-2node-*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snap.read_text()).get("latest_checkpoint_result") or {}
            return torch.load(snap.parent / latest["checkpoint_dir_name"] / "state.pt", weights_only=True)
        except Exception:  # no checkpoint yet, or the snapshot is being rewritten
            continue
    return None


def _latest_checkpoint(storage: Path) -> dict | None:
    for path in sorted(
        storage.glob("lm-2node-*/checkpoint_*/state.pt"), key=lambda p: p.stat().st_mtime, reverse=True
    ):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # still being written
            continue
    return None


@pytest.mark.timeout(1200)
def test_lm_pretraining_one_worker_per_node_survives_losing_the_worker_node(two_nodes, tmp_path, mlflow_uri):
    storage, every = tmp_path / "storage", 25
    # The controller polls workers every 0.5 s: a reported checkpoint is registered up to a poll later (more on
    # a loaded machine), and a restart resumes from the registered one. Batches of 64 make an interval of 25
    # steps take seconds, well over that lag, so the work lost is bounded by the interval as on a real job.
    out = tmp_path / "lm.json"
    proc = start_driver(
        two_nodes,
        "lm",
        out,
        "--work",
        str(tmp_path / "work"),
        "--storage",
        str(storage),
        "--steps",
        "300",
        "--checkpoint_every",
        str(every),
        "--batch_size",
        "64",
        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.5",
    )
    deadline, first = time.monotonic() + 600, None
    while first is None and time.monotonic() < deadline and proc.poll() is None:
        first = _latest_checkpoint(storage)
        time.sleep(0.2)
    assert first is not None, f"no checkpoint: {out.with_suffix('.log').read_text()[-4000:]}"
    assert len(set(first["worker_nodes"])) == 2, first["worker_nodes"]  # one worker on each node
    registered = None
    while registered is None and time.monotonic() < deadline and proc.poll() is None:
        registered = _registered_checkpoint(storage)
        time.sleep(0.2)
    assert registered is not None, f"no registered checkpoint: {out.with_suffix('.log').read_text()[-4000:]}"
    seen = registered["step"]
    assert seen < 300, "training finished before the node could be killed"
    killed = two_nodes.kill_worker_node()
    assert killed >= 2  # raylet and at least one worker
    try:
        res = finish(proc, out, timeout=900)
    finally:
        two_nodes.start_worker_node()  # back to two nodes for the next test
    assert res["step"] == 300 and res["restarts"] == 1, res
    resumed = res["resumed_from"][0]
    assert resumed >= seen and resumed % every == 0, (resumed, seen)
    client = mlflow.MlflowClient()
    assert [m.value for m in client.get_metric_history(res["run_id"], "train/restarts")] == [1.0]
    (restart,) = client.get_metric_history(res["run_id"], "train/resumed_from_step")
    assert restart.value == resumed
    # Work lost: the steps trained before the node died that were done again, at most one interval.
    before = [
        m.step
        for m in client.get_metric_history(res["run_id"], "train/loss")
        if m.timestamp < restart.timestamp
    ]
    assert max(before) - resumed <= every, (max(before), resumed)
    assert res["loss"][-1] < res["loss"][0]


@pytest.mark.timeout(1200)
def test_policy_training_with_one_worker_per_node(two_nodes, tmp_path, mlflow_uri):
    two_nodes.wait_nodes(2)
    res = run_driver(
        two_nodes,
        "policy",
        tmp_path / "policy.json",
        "--work",
        str(tmp_path / "work"),
        "--storage",
        str(tmp_path / "storage"),
        "--steps",
        "30",
        "--checkpoint_every",
        "15",
    )
    assert res["final_step"] == 30 and res["restarts"] == 0
    assert len(res["worker_nodes"]) == 2 and len(set(res["worker_nodes"])) == 2, res["worker_nodes"]
    assert res["model_uri"] == "models:/two-node-rt1x@smoke"
    assert os.path.isdir(tmp_path / "storage")


@pytest.mark.timeout(1800)
def test_a_submitted_job_trains_on_both_nodes_and_needs_shared_storage(two_nodes, tmp_path):
    """`xlab submit grokking --train.num_workers 2` on two nodes: refused in one line before training while the
    checkpoint storage is the job's own directory (on the head only), done once XLAB_STORAGE_PATH is shared."""
    from conftest import run_cli

    two_nodes.wait_nodes(2)
    args = "--preset smoke --sweep.ops add --data.p 13 --data.train_frac 0.5"
    args += " --model.d_model 32 --model.d_mlp 64 --train.steps 40 --train.eval_every 20"
    args += " --train.num_workers 2 --train.cpus_per_worker 0.5 --train.placement STRICT_SPREAD"
    env = {"RAY_AUTH_MODE": "token", "MLFLOW_TRACKING_URI": "", "XLAB_STORAGE_PATH": ""}
    submit = ("submit", "grokking", "--address", two_nodes.dashboard, "--wait", *args.split())
    refused = run_cli(*submit, env=env, cwd=tmp_path, timeout=900)
    assert refused.returncode == 2, refused.stderr[-3000:]
    job_id = refused.stdout.split()[0]
    logs = run_cli("logs", job_id, "--address", two_nodes.dashboard, env=env).stdout
    assert "is on this node only" in logs and "XLAB_STORAGE_PATH" in logs, logs[-3000:]

    env["XLAB_STORAGE_PATH"] = str(tmp_path / "shared")
    submit_and_wait(two_nodes, "grokking", *args.split(), env=env, cwd=tmp_path)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("grokking").experiment_id])
    # The refused job's run (FAILED, with the storage error), then the job that ran and its trial.
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    (failed,) = [r for r in runs if r.info.status == "FAILED"]
    assert "is on this node only" in failed.data.tags["xlab.error"]


def submit_and_wait(cluster: TwoNodeCluster, job: str, *args: str, env: dict, cwd: Path) -> str:
    """`xlab submit JOB --wait ARGS` to the cluster; asserts it printed SUCCEEDED and ran the submitted code
    (its log names the unpacked package); returns the job's log."""
    from conftest import run_cli

    done = run_cli(
        "submit", job, "--address", cluster.dashboard, "--wait", *args, env=env, cwd=cwd, timeout=1200
    )
    job_id = done.stdout.split()[0] if done.stdout.strip() else "?"
    logs = run_cli("logs", job_id, "--address", cluster.dashboard, env=env).stdout
    assert done.returncode == 0 and done.stdout.split()[1:] == ["SUCCEEDED"], (
        job,
        done.stderr[-2000:],
        logs[-4000:],
    )
    assert "runtime_resources" in logs, logs[-3000:]  # the submitted code ran, not the cluster's install
    return logs


def _checkpoint_nodes(storage: Path, run_prefix: str) -> list[str]:
    """The worker nodes recorded in the newest checkpoint of the Ray Train runs named ``run_prefix...``."""
    found = sorted(storage.glob(f"{run_prefix}*/checkpoint_*/state.pt"), key=lambda p: p.stat().st_mtime)
    assert found, f"no checkpoint of {run_prefix} in {storage}: {sorted(storage.iterdir())}"
    return torch.load(found[-1], map_location="cpu", weights_only=True)["worker_nodes"]


@pytest.mark.timeout(600)
def test_tune_trials_spread_over_both_nodes(two_nodes, tmp_path, mlflow_uri):
    """adopt_toy's own sweep, Adam and ADOPT, one trial each holding a whole node's CPUs: Ray can only
    place them one per node; each trial's MLflow run names the node that ran it."""
    two_nodes.wait_nodes(2)
    out = tmp_path / "sweep.json"
    proc = start_driver(
        two_nodes,
        "sweep",
        out,
        "--cpus_per_trial",
        str(two_nodes.cpus),
        XLAB_STORAGE_PATH=str(tmp_path / "storage"),  # Tune's trial state, seen by both nodes
    )
    res = finish(proc, out, timeout=540)
    trials, nodes = res["trials"], res["nodes"]
    assert sorted(t["optimizer"] for t in trials) == ["adam", "adopt"], trials
    assert all(t["status"] == "FINISHED" for t in trials), trials
    assert {t["node_id"] for t in trials} == set(nodes), (trials, nodes)  # one trial on each node
    assert {t["node_ip"] for t in trials} == set(nodes.values()) and WORKER_IP in nodes.values(), trials


@pytest.mark.timeout(600)
def test_a_policy_replica_on_one_node_serves_simulators_on_the_other(two_nodes, tmp_path):
    """The policy server pinned to the second node (its custom resource ``worker_node``), simulator actors to
    the head (``head_node``): every step of every episode is an action from the remote replica."""
    two_nodes.wait_nodes(2)
    res = run_driver(
        two_nodes, "serve", tmp_path / "serve.json", "--work", str(tmp_path), "--steps", "6", timeout=540
    )
    nodes = res["nodes"]
    (head,) = set(nodes) - {n for n, ip in nodes.items() if ip == WORKER_IP}
    assert nodes[res["replica_node"]] == WORKER_IP, res
    assert res["simulator_nodes"] == [head, head], res
    episodes = res["episodes"]
    assert [e["status"] for e in episodes] == ["ok", "ok"], episodes
    assert all(e["steps"] >= 1 and e["server_replies"] == e["steps"] for e in episodes), episodes
    assert res["server_requests"] == sum(e["steps"] for e in episodes), res


@pytest.mark.timeout(1800)
def test_every_job_family_is_submitted_to_two_nodes(two_nodes, tmp_path):
    """`xlab submit --wait` of collect_demos, then train_policy on the demonstrations it wrote, then pretrain_lm,
    to the two-node cluster (grokking: the test above). Data, corpora and checkpoints live in `shared/`, a
    directory both nodes see (an NFS/EFS mount on a real cluster); the trainers' two workers run one per node."""
    two_nodes.wait_nodes(2)
    shared = tmp_path / "shared"
    storage = shared / "ray_results"
    # No MLFLOW_TRACKING_URI: a head on loopback records into the submitting directory's mlflow.db.
    env = {"RAY_AUTH_MODE": "token", "MLFLOW_TRACKING_URI": "", "XLAB_STORAGE_PATH": str(storage)}
    two_workers = "--train.num_workers 2 --train.cpus_per_worker 0.5 --train.placement STRICT_SPREAD".split()

    collect = "--preset smoke --collect.embodiments fetch --collect.tasks xlab/fetch-reach-v0"
    collect += " --collect.episodes_per_task 6"
    collect += f" --collect.image_size 32 --collect.output_dir {shared / 'rlds'}"
    submit_and_wait(two_nodes, "collect_demos", *collect.split(), env=env, cwd=tmp_path)
    demos = shared / "rlds" / "xlab_fetch" / "0.1.0"
    assert (demos / "dataset_statistics.json").is_file(), sorted(shared.rglob("*"))

    policy = f"--preset smoke --data.dataset_dirs {demos} --data.shuffle_buffer 32 --policy.image_size 32"
    policy += " --policy.history 2 --train.steps 20 --train.batch_size 8 --train.log_every 5"
    policy += " --train.checkpoint_every 10 --registry.model_name two-node-submitted --registry.alias smoke"
    submit_and_wait(two_nodes, "train_policy", *policy.split(), *two_workers, env=env, cwd=tmp_path)
    assert len(set(_checkpoint_nodes(storage, "train_policy-"))) == 2

    lm = f"--preset smoke --data.corpora python --data.root {shared / 'corpora'} --data.work_dir {shared / 'lm'}"
    lm += " --data.max_bytes 300000 --data.test_fraction 0.1 --data.train_tokens 40000 --data.val_tokens 2048"
    lm += " --tokenizer.vocab_size 512 --tokenizer.train_bytes 100000"
    lm += " --train.eval_every 10 --train.log_every 5 --eval.n 4"
    submit_and_wait(two_nodes, "pretrain_lm", *lm.split(), *two_workers, env=env, cwd=tmp_path)
    assert len(set(_checkpoint_nodes(storage, "python-"))) == 2

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for job in ("collect_demos", "train_policy", "pretrain_lm"):
        runs = client.search_runs([client.get_experiment_by_name(job).experiment_id])
        assert runs and all(r.info.status == "FINISHED" for r in runs), (job, [r.info.status for r in runs])
    collected = client.search_runs([client.get_experiment_by_name("collect_demos").experiment_id])[0]
    assert collected.data.metrics["episodes"] == 6
    assert client.get_model_version_by_alias("two-node-submitted", "smoke").source
