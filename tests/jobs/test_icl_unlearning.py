"""The in-context unlearning job: config checks, the pieces on a tiny set-up, and the smoke study end to end."""

from __future__ import annotations

import mlflow
import pytest

from jobs import icl_unlearning as job
from xlab.analysis.unlearning_study import results_table, trial_label
from xlab.config import apply_overrides
from xlab.errors import XlabError


def test_bad_values_are_clear_errors():
    base = job.PRESETS["smoke"]
    with pytest.raises(XlabError, match="data.ood_domain"):
        apply_overrides(base, {"data.ood_domain": "authors"})
    with pytest.raises(XlabError, match="data.train_domain"):
        apply_overrides(base, {"data.train_domain": "planets"})
    with pytest.raises(XlabError, match="learn.steps"):
        apply_overrides(base, {"learn.steps": 0})
    with pytest.raises(XlabError, match="unlearn.methods"):
        apply_overrides(base, {"unlearn.methods": ["dpo"]})
    with pytest.raises(XlabError, match="prompt.format"):
        apply_overrides(base, {"prompt.format": "alpaca"})
    with pytest.raises(XlabError, match="subject.n_ctx"):
        apply_overrides(base, {"subject.n_ctx": 0})


def test_paper_preset_follows_the_authors_protocol():
    u = job.PRESETS["paper"].unlearn
    assert job.PRESETS["paper"].prompt.format == "paper"
    assert set(u.methods) == {"lora_paper", "lora", "full"}  # the authors' LoRA beside xlab's
    assert u.targets == ("answer", "name")  # TOFU: the answer in the tags; AGE: the person
    assert trial_label("lora", "answer") == "lora[answer]" and trial_label("lora", None) == "lora"


def test_paper_layout_and_lora_trial(mlflow_uri, tmp_path):
    """The authors' layout end to end on a tiny model: taught, tuned with q/v LoRA, prompts logged as fed."""
    from xlab.lm import save_causal_lm

    cfg = apply_overrides(job.PRESETS["smoke"], {
        "data.n_subjects": 3, "data.ood_subjects": 2, "data.qa_per_subject": 2, "learn.steps": 20,
        "unlearn.epochs": 1.0, "unlearn.lens_examples": 4, "subject.vocab_size": 300, "prompt.format": "paper",
        "data.target": "answer",
    })
    train_rows, ood_rows, _ = job.make_data(cfg)
    model, tok, _ = job.teach_facts(cfg, train_rows + ood_rows)
    save_causal_lm(model, tok, tmp_path / "subject")
    tcfg = apply_overrides(cfg, {"unlearn.base_model": str(tmp_path / "subject"), "unlearn.method": "lora_paper"})
    with mlflow.start_run() as run:
        job.trial(tcfg)
    samples = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/samples.json")
    forget = next(x for x in samples["train"] if x["kind"] == "forget")
    assert forget["prompt"].startswith("[INST] <<UNL>>\n") and forget["prompt"].endswith(" [/INST]")
    row = next(r for r in train_rows if r.question in forget["prompt"])
    assert f"<<UNL>>\n{row.answer}\n<</UNL>>" in forget["prompt"]  # TOFU setting: the answer in the tags
    m = mlflow.get_run(run.info.run_id).data.metrics
    assert 0 < m["trainable_params"] < 10_000  # q/v adapters only, tags frozen


def test_pieces_teach_then_unlearn_one_trial(mlflow_uri, tmp_path):
    """Teach 3 authors' facts to a tiny GPT-2, then one full fine-tune trial logs before/after metrics."""
    from xlab.lm import save_causal_lm

    cfg = apply_overrides(job.PRESETS["smoke"], {
        "data.n_subjects": 3, "data.ood_subjects": 2, "data.qa_per_subject": 3, "learn.steps": 40,
        "unlearn.epochs": 1.0, "unlearn.lens_examples": 4, "subject.vocab_size": 300,
    })
    train_rows, ood_rows, splits = job.make_data(cfg)
    assert len(train_rows) == 9 and len(ood_rows) == 6
    assert len(splits.train) == 2 * 7 and len(splits.test_in) == 2 * 2 and len(splits.test_ood) == 12
    model, tok, history = job.teach_facts(cfg, train_rows + ood_rows)
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    save_causal_lm(model, tok, tmp_path / "subject")
    tcfg = apply_overrides(cfg, {"unlearn.base_model": str(tmp_path / "subject"), "unlearn.method": "full"})
    with mlflow.start_run() as run:
        out = job.trial(tcfg)
    assert set(out) >= {"after_in_forget_acc", "after_in_retain_acc", "after_ood_forget_acc", "after_ood_retain_acc"}
    logged = mlflow.get_run(run.info.run_id)
    m = logged.data.metrics
    for key in ("before/in/forget_acc", "before/ood/retain_acc", "after/train/forget_acc", "steps"):
        assert key in m
    assert m["steps"] == round(1.0 * 14 / 4)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"logit_lens.png", "logit_lens.json", "samples.json"} <= artifacts
    table = results_table([logged])
    assert {(r["stage"], r["split"]) for r in table} == {("before", "in"), ("before", "ood"), ("after", "in"),
                                                          ("after", "ood")}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_study_lora_and_full_trials_unlearn(ray_local, mlflow_uri):
    out = job.main(job.PRESETS["smoke"])
    parent = mlflow.get_run(out["run_id"])
    assert parent.info.status == "FINISHED"
    children = mlflow.search_runs(experiment_ids=[parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  output_format="list")
    assert {c.data.params["unlearn.method"] for c in children} == {"lora", "full"}
    assert all(c.info.status == "FINISHED" for c in children)
    # The subject model learned the facts before unlearning.
    assert min(out["knowledge"].values()) >= 0.9
    table = out["table"].set_index(["method", "split", "stage"])
    for method in ("lora", "full"):
        # Before tuning the model never says "forgot"; the tags alone cost some recall.
        assert table.loc[(method, "in", "before")].forget_acc == 0.0
        assert table.loc[(method, "in", "before")].retain_acc >= 0.5
    # Full fine-tuning teaches forgetting on request on held-out rows and on the other source,
    # while most held-out facts are still answered when the tags hold a distractor.
    for split in ("in", "ood"):
        after = table.loc[("full", split, "after")]
        assert after.forget_acc >= 0.3 and after.retain_acc >= 0.3
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"results.json", "forget_retain.png", "logit_lens.png", "facts.json"} <= artifacts
    # the subject is an MLflow logged model (not a run artifact), tagged on the run; the trials loaded it
    assert parent.data.tags["xlab.subject_model"] == f"runs:/{parent.info.run_id}/subject_model"
    assert "lora/in/forget_acc" in parent.data.metrics
