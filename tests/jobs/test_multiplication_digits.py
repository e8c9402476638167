"""The multiplication-digits job: config checks, summary metrics, a saved model evaluated by reference,
and the smoke study end to end with its effect."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from jobs import multiplication_digits as job
from xlab.config import apply_overrides
from xlab.errors import XlabError


def test_bad_values_are_clear_errors(tmp_path):
    base = job.PRESETS["smoke"]
    with pytest.raises(XlabError, match="eval.mc_sites"):
        apply_overrides(job.PRESETS["smoke"], {"eval.mc_sites": ["embedding"]})
    with pytest.raises(XlabError, match="eval.mc_p"):
        apply_overrides(base, {"eval.mc_p": 1.5})
    with pytest.raises(XlabError, match="subject.n_ctx"):
        apply_overrides(base, {"subject.n_ctx": 12})
    with pytest.raises(XlabError, match="data.max_digits"):
        apply_overrides(base, {"data.max_digits": 0})
    # A --subject.ref directory that is not there fails before any Ray work.
    with pytest.raises(XlabError, match="subject.ref: no saved causal LM"):
        job.main(apply_overrides(base, {"subject.ref": str(tmp_path / "nothing")}))


def test_summary_metrics_contrasts_on_a_hand_table():
    rows = []
    for n in (1, 2):
        for m in (1, 2):
            rows.append({"n": n, "m": m, "first_conf": 0.9, "last_uncond_conf": 0.2 if n == m == 2 else 0.5,
                         "last_cond_conf": 0.6, "first_correct": 1.0, "last_uncond_correct": 0.0,
                         "last_cond_correct": 1.0})
    out = job.summary_metrics(pd.DataFrame(rows), max_digits=2)
    assert out["largest/first_conf"] == pytest.approx(0.9)
    assert out["cond_gain_largest"] == pytest.approx(0.4)
    assert out["all/last_uncond_conf"] == pytest.approx((0.5 * 3 + 0.2) / 4)
    # "Big" cells for 2-digit operands: n + m >= 2, i.e. every cell.
    assert out["first_minus_last_conf"] == pytest.approx(0.9 - (0.5 * 3 + 0.2) / 4)
    assert out["first_minus_last_acc"] == pytest.approx(1.0)


def test_subject_training_and_evaluation_by_reference(tmp_path):
    from xlab.lm import save_causal_lm
    from xlab.studydata.arithmetic import make_problems

    cfg = apply_overrides(job.PRESETS["smoke"], {
        "data.max_digits": 2, "train.steps": 30, "train.log_every": 5, "data.train_problems": 2000,
    })
    problems = make_problems(range(1, 3), range(1, 3), per_cell=3, seed=0)
    model, tok, history = job.train_subject(cfg, problems)
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    save_causal_lm(model, tok, tmp_path / "m")
    ev = apply_overrides(cfg, {"eval.mc_passes": 3, "eval.mc_sites": ["native", "mlp"]}).eval
    records, active = job.evaluate_cells(str(tmp_path / "m"), problems, ev, seed=0)
    assert len(records) == 12
    # GPT-2 has dropout modules (native sites) and the hook adds one MLP site per block.
    assert any(a.endswith("attn_dropout") for a in active) and "blocks.0.mlp" in active
    assert all(0.0 <= r["first_conf"] <= 1.0 and r["first_mc_std"] >= 0.0 for r in records)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_study_first_digit_beats_last_digit(ray_local, mlflow_uri):
    out = job.main(job.PRESETS["smoke"])
    run = mlflow.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    # The study's effect on the larger problems: the first digit is predicted more confidently and more
    # accurately than the last one.
    assert m["first_minus_last_conf"] > 0.1
    assert m["first_minus_last_acc"] > 0.1
    assert len(out["table"]) == 25
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"heatmap_confidence.png", "heatmap_accuracy.png", "heatmap_mc_dropout.png", "cells.json",
            "records.json", "mc_active_sites.json"} <= artifacts
    assert run.data.tags["xlab.subject_model"] == out["model"] == f"runs:/{run.info.run_id}/subject_model"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_any_model_by_path(ray_local, mlflow_uri, tmp_path):
    """--subject.ref: a saved HF causal LM (here a random tiny GPT-2) is analysed without training."""
    from xlab.lm import build_causal_lm, save_causal_lm
    from xlab.studydata.arithmetic import digit_tokenizer

    tok = digit_tokenizer()
    save_causal_lm(build_causal_lm("gpt2", "tiny", vocab_size=len(tok), n_ctx=32), tok, tmp_path / "rand")
    cfg = apply_overrides(job.PRESETS["smoke"], {"subject.ref": str(tmp_path / "rand"), "data.max_digits": 2,
                                                 "data.eval_per_cell": 2, "eval.mc_passes": 2})
    out = job.main(cfg)
    assert out["model"] == str(tmp_path / "rand") and len(out["table"]) == 4
    assert "xlab.subject_model" not in mlflow.get_run(out["run_id"]).data.tags  # nothing trained, nothing logged
