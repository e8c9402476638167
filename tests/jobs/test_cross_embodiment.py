"""cross_embodiment: the comparison table, transfer gains and config checks; end to end (slow) on synthetic
RLDS data: a Tune grid of mixture weights, one Ray Train run per weight, each policy rolled out in the
real simulators, one parent run with the comparison plot."""

from __future__ import annotations

import mlflow
import pytest

from conftest import write_fake_rlds
from jobs import cross_embodiment as xe
from xlab.config import apply_overrides
from xlab.errors import XlabError


def test_table_and_gains_compare_single_embodiment_with_mixture():
    rows = [
        {"weight": 1.0, "success_sawyer": 0.6, "success_fetch": 0.0, "success_mean": 0.3, "train_token_acc": 0.8},
        {"weight": 0.5, "success_sawyer": 0.7, "success_fetch": 0.4, "success_mean": 0.55, "train_token_acc": 0.7},
        {"weight": 0.5, "success_sawyer": 0.5, "success_fetch": 0.2, "success_mean": 0.35, "train_token_acc": 0.7},
        {"weight": 0.0, "success_sawyer": 0.0, "success_fetch": 0.5, "success_mean": 0.25, "train_token_acc": 0.8},
    ]
    names = ["xlab_sawyer", "xlab_fetch"]
    table = xe.comparison_table(rows, [], names)
    assert list(table["variant"]) == ["xlab_sawyer only", "mix 0.5/0.5", "xlab_fetch only"]
    assert list(table["seeds"]) == [1, 2, 1]
    assert table.loc[1, "success_sawyer"] == pytest.approx(0.6)  # mean over the two seeds
    gains = xe.transfer_gains(table, names, ["sawyer", "fetch"])
    assert gains["success/mixture_gain/sawyer"] == pytest.approx(0.0)   # 0.6 (mix) - 0.6 (sawyer only)
    assert gains["success/mixture_gain/fetch"] == pytest.approx(-0.2)   # 0.3 (mix) - 0.5 (fetch only)
    assert gains["success/mixture_gain_min"] == pytest.approx(-0.2)
    fig = xe.comparison_plot(table, ["sawyer", "fetch"], ["xlab/sawyer-reach-v0"])
    assert len(fig.axes) == 2


def test_config_errors():
    with pytest.raises(XlabError, match="experiment.weights"):
        apply_overrides(xe.PRESETS["smoke"], {"experiment.weights": [1.5]})
    with pytest.raises(XlabError, match="data.dataset_dirs"):
        apply_overrides(xe.PRESETS["smoke"], {"data.dataset_dirs": ["a/0.1.0"]})
    with pytest.raises(XlabError, match="collect_demos"):
        xe.main(apply_overrides(xe.PRESETS["smoke"], {"data.dataset_dirs": ["nope/a/0.1.0", "nope/b/0.1.0"]}))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cross_embodiment_sweep_end_to_end(ray_local, mlflow_uri, tmp_path):
    dirs = write_fake_rlds(str(tmp_path / "rlds"), names=("arm_a", "arm_b"), episodes=4)
    cfg = apply_overrides(xe.PRESETS["smoke"], {
        "data.dataset_dirs": dirs, "data.embedding_backend": "hash-fallback", "data.shuffle_buffer": 32,
        "policy.image_size": 32, "train.steps": 20, "train.batch_size": 8, "train.log_every": 10,
        "train.checkpoint_every": 20, "train.warmup_steps": 5, "experiment.weights": [1.0, 0.0],
        "experiment.seeds": [0], "experiment.episodes": 2,
        "experiment.eval_tasks": ["xlab/fetch-reach-v0", "xlab/sawyer-reach-v0"],
    })
    out = xe.main(cfg)
    table = out["table"]
    assert list(table["variant"]) == ["arm_a only", "arm_b only"]
    for col in ("success_fetch", "success_sawyer", "success_fetch_reach_v0", "success_sawyer_reach_v0"):
        assert col in table and table[col].between(0, 1).all()
    client = mlflow.MlflowClient()
    parent = client.get_run(out["run_id"])
    assert parent.info.status == "FINISHED"
    assert {"cross_embodiment.png", "cross_embodiment.json"} <= {a.path for a in client.list_artifacts(out["run_id"])}
    children = mlflow.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{out['run_id']}'")
    assert len(children) == 2 and set(children["tags.xlab.variant"]) == {"arm_a only", "arm_b only"}
    # Each trial's policy is logged with the trial run, so eval_policy can re-evaluate it.
    from xlab.policies.mlflow_model import load_registered_policy

    policy = load_registered_policy(f"runs:/{children.iloc[0]['run_id']}/policy")
    assert policy.config.image_size == 32
