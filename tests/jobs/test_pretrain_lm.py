"""The pretrain_lm job: config checks, and the smoke path end to end (corpora -> blocks -> Ray Tune trials
of Ray Train pretraining -> models in MLflow -> few-shot logic evaluation -> comparison table)."""

import mlflow
import pytest

from jobs import pretrain_lm
from xlab.config import apply_overrides
from xlab.errors import XlabError
from xlab.lm.io import load_causal_lm


def test_presets_and_bad_configs():
    smoke, paper = pretrain_lm.PRESETS["smoke"], pretrain_lm.PRESETS["paper"]
    assert smoke.data.corpora == ("python", "man-en") and len(paper.data.corpora) == 13
    # The paper's set-up: GPT-2 124M, ctx 2048, 200M tokens, AdamW 1e-4, 10% warm-up, cosine to 3.3e-6, 24 x 2048.
    t = paper.train
    assert (paper.model.size, t.block_size, t.batch_size, t.lr, t.min_lr, t.warmup_fraction, t.epochs) == (
        "gpt2-small", 2048, 24, 1e-4, 3.3e-6, 0.1, 3.0)
    assert paper.data.train_tokens == 200_000_000 and t.parallel_strategy == "fsdp" and t.precision == "bf16"
    assert t.resolved(200_000_000 // 2048).steps == 3 * (200_000_000 // 2048) // 24
    with pytest.raises(XlabError, match="train.block_size"):
        apply_overrides(smoke, {"train.block_size": 256})
    with pytest.raises(XlabError, match="model.arch"):
        apply_overrides(smoke, {"model.arch": "bert"})
    with pytest.raises(XlabError, match="registry.alias"):
        apply_overrides(smoke, {"registry.alias": "latest"})
    with pytest.raises(XlabError, match="resume_from"):
        apply_overrides(smoke, {"resume_from": "/tmp/x"})
    with pytest.raises(XlabError, match="split"):
        apply_overrides(smoke, {"train.batch_size": 15, "train.grad_accum": 2}).train.resolved(100)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_two_corpora_end_to_end(ray_local, mlflow_uri, tmp_path):
    cfg = apply_overrides(pretrain_lm.PRESETS["smoke"], {
        "data.root": str(tmp_path / "corpora"), "data.work_dir": str(tmp_path / "lm"), "data.max_bytes": 800_000,
        "data.train_tokens": 200_000, "eval.n": 12, "train.eval_every": 40, "registry.model_prefix": "xlab-test-pt",
    })
    out = pretrain_lm.main(cfg)
    parent = mlflow.get_run(out["run_id"])
    assert parent.info.status == "FINISHED"
    rows = out["rows"]
    assert {(r["corpus"], r["task"]) for r in rows} == {(c, t) for c in ("python", "man-en") for t in ("fld", "babi")}
    for r in rows:
        assert r["status"] == "FINISHED"
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["valid_rate"] <= 1 and 0 <= r["choice_accuracy"] <= 1
        # Learning happened: validation perplexity falls well below the untrained model's (~ vocabulary size).
        assert r["val_ppl"] < r["val_ppl_first"] / 2 and r["train_loss_last"] < r["train_loss_first"]
    assert rows[0]["ast_depth_mean"] is not None or rows[1]["ast_depth_mean"] is not None
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(out["run_id"])}
    assert {"comparison.json", "comparison.md", "accuracy_per_corpus.png", "loss_curves.png", "corpora",
            "tokenizer", "blocks_manifest.json"} <= arts
    # Identical budgets, and each final model is registered and loads back as a transformers model.
    entry = out["manifest"]["tokenizers"]["mixture"]
    assert entry["blocks"]["python"]["train_tokens"] == entry["blocks"]["man-en"]["train_tokens"]
    model, tok = load_causal_lm("models:/xlab-test-pt-python@pretrained")
    assert model.config.vocab_size == len(tok) and model.config.n_layer == 2
