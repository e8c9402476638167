"""The SAE polysemy job: pipeline pieces on a tiny model (fast), and the smoke preset end to end through
Ray Tune and MLflow (slow)."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from jobs import sae_polysemy as job
from xlab.analysis.ps_plots import layer_label, summary_plots
from xlab.analysis.ps_study import cache_activations, dense_baseline, ps_pairs, summary_metrics
from xlab.config import apply_overrides
from xlab.errors import XlabError

TINY = {"train.steps": 30, "data.corpus_chars": 40_000, "subject.vocab_size": 1024, "subject.n_layer": 2}


@pytest.fixture(scope="module")
def tiny_subject():
    return job.subject_and_texts(apply_overrides(job.PRESETS["smoke"], TINY))


def test_pipeline_pieces_on_a_tiny_subject(tiny_subject, mlflow_uri):
    model, tok, texts = tiny_subject
    pairs, counts = ps_pairs(tok, seed=0, max_pairs=40)
    assert counts["pairs_used"] == len(pairs) <= 40 and counts["pairs_dropped_multi_token"] >= 0
    assert sum(p.label for p in pairs) * 2 == len(pairs)
    # the paper's filter (word one token in the template only) keeps every pair the xlab filter keeps
    _, paper_counts = ps_pairs(tok, seed=0, lemma_in_context=False)
    assert paper_counts["pairs_dropped_multi_token"] <= ps_pairs(tok, seed=0)[1]["pairs_dropped_multi_token"]
    points = ["resid.1", "attn.1", "mlp.0"]
    cache = cache_activations(model, tok, texts, pairs, points, act_tokens=3000, act_block=48, log=lambda _: None)
    d = model.config.n_embd
    for p in points:
        assert cache[p]["train"].shape == (3000, d)
        assert cache[p]["ps"].shape == (len(pairs), 2, d)
    dense = pd.DataFrame(dense_baseline(cache, [p.target_word for p in pairs]))
    assert set(dense.module) == {"resid", "attn", "mlp"} and dense.f1.between(0, 1).all()
    assert dense.cos_auc.between(0, 1).all() and dense.cos_auc_centered.between(0, 1).all()

    # one trial, run directly (no Tune): trains an SAE on the cached activations and logs to MLflow
    cfg = apply_overrides(
        job.PRESETS["smoke"],
        {
            "sae.activation": "topk",
            "sae.k": 8,
            "sae.expansion": 4,
            "sae.steps": 60,
            "target.layer": -1,
            "target.module": "attn",
        },
    )
    trial = job.make_trial(cache, n_layers=2)
    with mlflow.start_run() as run:
        out = trial(cfg)
    assert 0 <= out["ps_accuracy"] <= 1 and 0 <= out["ps_f1"] <= 1
    assert out["l0"] <= 8 and out["explained_variance"] <= 1 and out["layer_index"] == 1
    logged = mlflow.get_run(run.info.run_id).data.metrics
    assert logged["ps_f1"] == pytest.approx(out["ps_f1"]) and "train/recon" in logged

    # the summary plots from a small table
    table = pd.DataFrame(
        [
            {
                "activation": a,
                "expansion": 4,
                "layer": 1,
                "module": m,
                "mse": 0.1 * i,
                "l0": 4.0 + i,
                "explained_variance": 0.9,
                "dead_frac": 0.0,
                "ps_f1": 0.5,
                "ps_accuracy": 0.5,
            }
            for i, (a, m) in enumerate([("relu", "resid"), ("topk", "attn"), ("jumprelu", "mlp")])
        ]
    )
    figs = summary_plots(table, dense, n_layers=2)
    # layers are labelled with the TransformerLens hook of the same activation
    assert "TL blocks.1 resid_pre" in layer_label(0, 2) and "TL blocks.1 resid_post" in layer_label(1, 2)
    assert set(figs) == {
        "ps_eval_vs_mse_l0.png",
        "ps_eval_by_layer_module.png",
        "sense_signal_by_layer_module.png",
    }
    metrics = summary_metrics(table, dense)
    assert metrics["best_f1"] == 0.5 and metrics["best_f1_attn"] == 0.5 and "mean_ev_topk" in metrics
    assert "spearman_f1_vs_mse" not in metrics  # constant F1: the correlation is NaN and dropped


def test_bad_config_values():
    with pytest.raises(XlabError, match="target.module"):
        apply_overrides(job.PRESETS["smoke"], {"target.module": "embed"})
    with pytest.raises(XlabError, match="sae.activation"):
        apply_overrides(job.PRESETS["smoke"], {"sae.activation": "gelu"})
    with pytest.raises(XlabError, match="subject.arch"):
        apply_overrides(job.PRESETS["smoke"], {"subject.arch": "t5"})


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_preset_end_to_end(ray_local, mlflow_uri):
    cfg = job.PRESETS["smoke"]
    out = job.main(cfg)
    parent = mlflow.get_run(out["run_id"])
    assert parent.info.status == "FINISHED"
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
    )
    n = (
        len(cfg.sweep.activations)
        * len(cfg.sweep.expansions)
        * len(cfg.sweep.layers)
        * len(cfg.sweep.modules)
    )
    assert len(children) == n and all(c.info.status == "FINISHED" for c in children)
    for c in children:
        m = c.data.metrics
        assert {
            "mse",
            "l0",
            "explained_variance",
            "dead_frac",
            "ps_accuracy",
            "ps_precision",
            "ps_recall",
            "ps_specificity",
            "ps_f1",
            "ps_cos_same",
        } <= set(m)
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {
        "ps_eval_table.json",
        "dense_baseline.json",
        "ps_eval_vs_mse_l0.png",
        "ps_eval_by_layer_module.png",
        "sense_signal_by_layer_module.png",
    } <= arts
    # the subject model is an MLflow logged model (not a run artifact): its URI is tagged on the run
    assert parent.data.tags["xlab.subject_model"] == f"runs:/{parent.info.run_id}/subject_model"
    table = out["table"]
    assert len(table) == n
    # SAEs learn: TopK explains most of the variance, every variant a good part of it
    assert table[table.activation == "topk"].explained_variance.min() > 0.7
    assert table.explained_variance.min() > 0.3
    # TopK keeps exactly k features at most
    assert table[table.activation == "topk"].l0.max() <= cfg.sae.k + 1e-6
    # the logged model reloads through the hook layer
    from xlab.analysis.hooks import module_map
    from xlab.lm import load_causal_lm

    model, _ = load_causal_lm(f"runs:/{parent.info.run_id}/subject_model")
    assert module_map(model).n_layers == cfg.subject.n_layer
