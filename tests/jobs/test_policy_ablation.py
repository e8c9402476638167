"""The ablation job's variants, config checks and table (its trials are cross_embodiment's: tested there)."""

from __future__ import annotations

import pytest

from jobs import policy_ablation
from xlab.config import apply_overrides
from xlab.errors import XlabError


def test_every_variant_changes_one_lever_of_the_demo_recipe():
    base = policy_ablation.PRESETS["smoke"]
    assert base.policy.preset == "rt1x-demo" and base.train.augment_shift > 0 and base.train.lr_schedule == "cosine"
    for name, (overrides, execution) in policy_ablation.VARIANTS.items():
        cfg = apply_overrides(base, overrides)
        assert execution in ("ensemble", "open-loop", "first")
        changed = {k for k in ("policy", "train", "data") if getattr(cfg, k) != getattr(base, k)}
        assert len(changed) == (0 if name in ("recipe", "open-loop-chunks") else 1), name


def test_table_is_mean_and_range_over_seeds_in_variant_order():
    rows = [
        {"variant": "recipe", "seed": 0, "success_mean": 0.6, "success_fetch_reach_v0": 0.5},
        {"variant": "recipe", "seed": 1, "success_mean": 0.8, "success_fetch_reach_v0": 0.7},
        {"variant": "no-chunking", "seed": 0, "success_mean": 0.2, "success_fetch_reach_v0": 0.1},
    ]
    table = policy_ablation.ablation_table(rows, ("recipe", "no-chunking"))
    assert table["variant"].tolist() == ["recipe", "no-chunking"]
    assert table["mean"].tolist() == pytest.approx([0.7, 0.2])
    assert table["mean_min"].tolist() == pytest.approx([0.6, 0.2]) and table["seeds"].tolist() == [2, 1]
    assert policy_ablation.ablation_plot(table) is not None


def test_unknown_variant_is_a_config_error():
    with pytest.raises(XlabError, match="experiment.variants"):
        policy_ablation.ExperimentConfig(variants=("recipe", "magic"))
