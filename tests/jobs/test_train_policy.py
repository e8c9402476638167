"""train_policy end to end: RLDS mixture -> 2-worker Ray Train (DDP) -> checkpoints, a worker killed and
resumed -> policy logged to MLflow, registered, loaded back by alias, acting.

The RLDS datasets are synthetic numpy episodes of two fake embodiments, written by a Ray task with
the TensorFlow runtime env (this test process never imports TensorFlow). Actions depend on the
image colour so the policy has something to learn.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from conftest import write_fake_rlds
from jobs import train_policy
from xlab.config import apply_overrides
from xlab.errors import XlabError
from xlab.policies.training import dataset_names

IMAGE = 32
HISTORY = 2


@pytest.fixture(scope="module")
def rlds_dirs(ray_local, tmp_path_factory) -> list[str]:
    return write_fake_rlds(str(tmp_path_factory.mktemp("rlds_policy")))


def small_config(dirs: list[str], **extra) -> train_policy.Config:
    return apply_overrides(train_policy.PRESETS["smoke"], {
        "data.dataset_dirs": dirs, "data.embedding_backend": "hash-fallback", "data.shuffle_buffer": 64,
        "policy.preset": "rt1x-tiny", "policy.image_size": IMAGE, "policy.history": HISTORY,
        "train.steps": 60, "train.batch_size": 8, "train.num_workers": 2, "train.log_every": 5,
        "train.checkpoint_every": 20, "registry.model_name": "test-rt1x", "registry.alias": "smoke",
        **extra,
    })


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_train_survive_a_worker_kill_and_register_the_policy(rlds_dirs, mlflow_uri):
    # Rank 1 dies (os._exit) at step 30; the last checkpoint is step 20, so the group resumes there.
    # With the demo recipe's levers on: 2-step action chunks, random shift, warm-up + cosine schedule.
    cfg = small_config(rlds_dirs, **{"train.inject_failure_at": 30, "train.max_failures": 2,
                                     "policy.action_chunk": 2, "train.augment_shift": 2,
                                     "train.lr_schedule": "cosine", "train.warmup_steps": 5})
    out = train_policy.main(cfg)

    assert out["final_step"] == 60
    assert out["restarts"] == 1 and out["resumed_from"] == [20]  # no steps lost beyond the interval (30 - 20)
    client = mlflow.MlflowClient()
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    lrs = {m.step: m.value for m in client.get_metric_history(out["run_id"], "train/lr")}
    assert lrs[10] > lrs[30] > lrs[60] and lrs[60] < 0.01 * lrs[10]  # cosine decay to ~0 after the warm-up
    losses = client.get_metric_history(out["run_id"], "train/loss")
    by_step: dict[int, float] = {}
    for m in losses:
        by_step[m.step] = m.value  # after a restart a step may be logged twice: keep either
    steps = sorted(by_step)
    assert steps[-1] == 60 and steps[0] == 5
    first, last = by_step[steps[0]], by_step[steps[-1]]
    assert last < 0.8 * first, f"loss did not fall: {first:.3f} -> {last:.3f}"
    assert client.get_metric_history(out["run_id"], "train/resumed_from_step")[0].value == 20
    for name in ("fake_arm", "fake_mobile"):
        assert client.get_metric_history(out["run_id"], f"train/token_acc/{name}"), name

    # The registered model loads back by alias and acts.
    from xlab.policies.mlflow_model import load_policy_model, load_registered_policy

    assert out["model_uri"] == "models:/test-rt1x@smoke"
    policy = load_registered_policy(out["model_uri"])
    emb_dim = int(getattr(policy.config, "embed_dim", 384))
    images = np.zeros((2, HISTORY, IMAGE, IMAGE, 3), np.uint8)
    images[0, ..., 0] = 200
    images[1, ..., 2] = 200
    action = policy.act(images, np.ones((2, emb_dim), np.float32))
    assert_rt1_action(action, batch=2)
    assert policy.config.action_chunk == 2
    model = load_policy_model(out["model_uri"])
    assert set(model.statistics) == {"fake_arm", "fake_mobile"}
    assert model.bounds["vocab_size"] == 256 and "world_vector" in model.bounds["bounds"]
    version = client.get_model_version_by_alias("test-rt1x", "smoke")
    assert version.run_id == out["run_id"]
    summary = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/train_summary.json"))
    assert summary["final_step"] == 60


def assert_rt1_action(action: dict, batch: int) -> None:
    sizes = {"world_vector": 3, "rotation_delta": 3, "gripper_closedness_action": 1,
             "base_displacement_vector": 2, "base_displacement_vertical_rotation": 1, "terminate_episode": 3}
    assert set(sizes) <= set(action), sorted(action)
    for k, n in sizes.items():
        a = np.asarray(action[k])
        assert a.shape == (batch, n), (k, a.shape)
        assert np.isfinite(a).all(), k
    assert (np.abs(np.asarray(action["world_vector"])) <= 2.0 + 1e-6).all()
    assert (np.asarray(action["terminate_episode"]).sum(-1) == 1).all()


def test_policy_round_trips_through_the_registry(mlflow_uri, tmp_path):
    import torch

    from xlab.policies import build_policy
    from xlab.policies.mlflow_model import load_registered_policy, log_policy

    torch.manual_seed(0)
    policy = build_policy("rt1x-tiny", image_size=IMAGE, history=HISTORY)
    stats = tmp_path / "dataset_statistics.json"
    stats.write_text(json.dumps({"num_steps": 3}))
    mlflow.set_experiment("test_policy_registry")
    with mlflow.start_run():
        uri = log_policy(policy, registered_model_name="test-rt1x-roundtrip", alias="champion",
                         stats_paths={"a": stats, "missing": tmp_path / "nope.json"})
    assert uri == "models:/test-rt1x-roundtrip@champion"
    loaded = load_registered_policy(uri)
    for (k, v), (k2, v2) in zip(policy.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k
    emb = np.zeros((1, int(getattr(policy.config, "embed_dim", 384))), np.float32)
    images = np.zeros((1, HISTORY, IMAGE, IMAGE, 3), np.uint8)
    policy.eval()
    assert_rt1_action(loaded.act(images, emb), batch=1)
    # The generic pyfunc interface gives the same action dict.
    pred = mlflow.pyfunc.load_model(uri).predict({"image": images, "embedding": emb})
    assert_rt1_action(pred, batch=1)


def test_missing_dataset_dir_says_to_collect_demos_first(tmp_path):
    cfg = apply_overrides(train_policy.PRESETS["smoke"], {"data.dataset_dirs": [str(tmp_path / "nope" / "0.1.0")]})
    with pytest.raises(XlabError, match=r"data.dataset_dirs.*xlab run collect_demos"):
        train_policy.main(cfg)


def test_config_errors_name_the_field():
    with pytest.raises(XlabError, match="data.weights"):
        apply_overrides(train_policy.PRESETS["smoke"], {"data.weights": [1.0]})
    with pytest.raises(XlabError, match="train.batch_size"):
        apply_overrides(train_policy.PRESETS["smoke"], {"train.batch_size": 1})
    assert dataset_names(["a/xlab_sawyer/0.1.0", "b/xlab_sawyer/0.1.0", "c/fetch"]) == [
        "xlab_sawyer", "xlab_sawyer_", "fetch"]


def test_lr_schedule_warms_up_then_decays():
    from xlab.policies.training import PolicyTrainConfig, lr_factor

    f = lr_factor(PolicyTrainConfig(steps=100, warmup_steps=10, lr_schedule="cosine"))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert lr_factor(PolicyTrainConfig(steps=100))(50) == 1.0
    with pytest.raises(XlabError, match="train.eval_tasks"):
        PolicyTrainConfig(eval_every=10)
    with pytest.raises(XlabError, match="train.lr_schedule"):
        PolicyTrainConfig(lr_schedule="step")
