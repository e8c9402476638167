"""The scrambled_bench job: data, subject training and scoring on a tiny model (fast); smoke end to end (slow)."""

import math

import mlflow
import pytest

from jobs import scrambled_bench
from xlab.analysis.scramble_bench import evaluate_subject
from xlab.config import apply_overrides
from xlab.errors import XlabError

TINY = {"data.n_eval": 4, "data.n_qa": 6, "data.n_train": 60, "data.n_train_qa": 40, "train.steps": 5,
        "train.block_size": 128, "subject.d_model": 0, "eval.conditions": ["random:1.0", "substitute:1.0"],
        "eval.qa_conditions": ["random:0.5"], "eval.shots": [0, 1], "eval.max_new_tokens": 6}


def test_config_errors_name_the_field():
    with pytest.raises(XlabError, match="eval.conditions"):
        apply_overrides(scrambled_bench.PRESETS["smoke"], {"eval.conditions": ["shuffle:1.0"]})
    with pytest.raises(XlabError, match="endpoint_model"):
        apply_overrides(scrambled_bench.PRESETS["smoke"], {"subject.endpoint_url": "http://localhost:1/v1"})


def test_data_is_disjoint_and_a_tiny_subject_is_scored():
    from xlab.evals.generators import HFGenerator

    cfg = apply_overrides(scrambled_bench.PRESETS["smoke"], TINY)
    data = scrambled_bench.build_data(cfg)
    assert not set(data["eval_sentences"]) & set(data["train_sentences"])
    assert not set(data["demo_sentences"]) & set(data["eval_sentences"])
    model, tok, history = scrambled_bench.train_subject(cfg, data, "demo-trained")
    assert history and history[-1]["step"] == 5
    metrics, samples = evaluate_subject(HFGenerator(model, tok), cfg.eval, data, seed=cfg.seed)
    for key in ("recovery/random_1/0shot", "recovery/substitute_1/1shot", "qa/acc/original", "qa/acc/substitute_1",
                "qa/acc/random_0.5", "qa/rpg/random_0.5"):
        assert key in metrics
    assert all(0 <= metrics[k] <= 1 for k in metrics if k.startswith("qa/acc"))
    assert not math.isnan(metrics["recovery/random_1/0shot"])
    assert len(samples["recovery/random_1/0shot"]) == 4


def test_paper_protocol_scores_a_tiny_subject_with_the_authors_format():
    from xlab.analysis.scramble_paper import RECOVERY_DEMOS
    from xlab.evals.generators import HFGenerator

    assert scrambled_bench.PRESETS["paper"].eval.protocol == "paper"
    cfg = apply_overrides(scrambled_bench.PRESETS["smoke"], {**TINY, "eval.protocol": "paper", "eval.shots": [0, 3]})
    data = scrambled_bench.build_data(cfg)
    model, tok, _ = scrambled_bench.train_subject(cfg, data, "nl-only")

    class Recording(HFGenerator):
        prompts: list = []

        def generate(self, prompts, **kw):
            Recording.prompts += prompts
            return super().generate(prompts, **kw)

    metrics, _ = evaluate_subject(Recording(model, tok), cfg.eval, data, seed=cfg.seed)
    assert {"recovery_corpus/random_1/3shot", "ed_recovered/random_1/0shot", "qa/acc/random_0.5"} <= set(metrics)
    few = next(p for p in Recording.prompts if p.startswith("Scrambled Sentence: "))
    assert few.count("Recovered Sentence: ") == 3 and RECOVERY_DEMOS[0] in few
    assert any(p.endswith("among A through D, the answer is") for p in Recording.prompts)
    with pytest.raises(XlabError, match="eval.shots"):
        apply_overrides(cfg, {"eval.shots": [5]})


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_preset_trained_subject_recovers_and_reference_does_not(ray_local, mlflow_uri):
    out = scrambled_bench.main(scrambled_bench.PRESETS["smoke"])
    parent = mlflow.get_run(out["run_id"])
    assert parent.info.status == "FINISHED"
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(out["run_id"])}
    assert {"comparison.png", "summary.json"} <= arts
    trained, ref = out["summary"]["demo-trained"], out["summary"]["nl-only"]
    # Measured (seed 0): demo-trained 0.38 at 100 % random scrambling, nl-only -1.48. The tiny model
    # recognises which template a scrambled sentence comes from; it does not copy the content words.
    assert trained["recovery/random_1/0shot"] > 0.2
    assert trained["recovery/random_1/0shot"] > ref["recovery/random_1/0shot"] + 0.5
    # The letters carry information: full scrambling beats substitution (0.38 vs 0.21 measured).
    assert trained["recovery/random_1/0shot"] > trained["recovery/substitute_1/0shot"]
    values = [v for k, v in trained.items() if k.startswith("recovery/")]
    assert len(set(values)) > 3
    assert all(0.0 <= trained[k] <= 1.0 for k in trained if k.startswith("qa/acc/"))
    assert "qa/rpg/random_1" in trained
