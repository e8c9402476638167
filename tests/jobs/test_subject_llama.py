"""``--subject.arch llama`` in each of the five analysis jobs: the CLI flag parses, the job builds and
trains a tiny Llama through xlab.lm.subject, and the job's analysis runs on it."""

import pytest

from xlab.cli.registry import parse_job_config

LLAMA = ["--preset", "smoke", "--subject.arch", "llama"]


def _is_llama(model) -> bool:
    return type(model).__name__ == "LlamaForCausalLM"


def test_sae_polysemy():
    from jobs import sae_polysemy as job
    from xlab.analysis.hooks import module_map
    from xlab.analysis.sae_train import token_activations

    cfg = parse_job_config("sae_polysemy", [*LLAMA, "--subject.n_layer", "2", "--train.steps", "5",
                                            "--data.corpus_chars", "20000", "--subject.vocab_size", "600"])
    model, tok, texts = job.subject_and_texts(cfg)
    assert _is_llama(model) and module_map(model).n_layers == 2
    acts = token_activations(model, tok, texts[:20], ["resid.1", "mlp.1", "attn.1"], max_tokens=100, block_size=32)
    assert all(a.shape == (100, model.config.hidden_size) for a in acts.values())


def test_lang_neurons():
    from jobs import lang_neurons as job
    from xlab.analysis.lang_neurons import unit_layout, unit_responses

    cfg = parse_job_config("lang_neurons", [*LLAMA, "--train.steps", "5", "--subject.vocab_size", "300"])
    # A few sentences stand in for the gettext catalogs (tests/jobs/test_lang_neurons_job.py reads those).
    texts = ["The file could not be opened.", "Die Datei konnte nicht geöffnet werden.",
             "Le fichier n'a pas pu être ouvert.", "No se pudo abrir el archivo.", "无法打开文件。",
             "ファイルを開けませんでした。"] * 10
    model, tok = job.subject(cfg, texts)
    assert _is_llama(model)
    layout = unit_layout(model)
    resp = unit_responses(model, tok, texts[:6], layout, max_length=32)
    assert resp.shape == (6, layout.n_units) and layout.n_units > 0


def test_scrambled_bench():
    from jobs import scrambled_bench as job
    from xlab.analysis.scramble_bench import evaluate_subject
    from xlab.evals.generators import HFGenerator

    cfg = parse_job_config("scrambled_bench", [
        *LLAMA, "--data.n_eval", "2", "--data.n_qa", "4", "--data.n_train", "40", "--data.n_train_qa", "20",
        "--train.steps", "5", "--eval.conditions", "random:1.0", "--eval.qa_conditions", "random:1.0",
        "--eval.shots", "0", "--eval.max_new_tokens", "4"])
    data = job.build_data(cfg)
    model, tok, _ = job.train_subject(cfg, data, "nl-only")
    assert _is_llama(model) and model.config.hidden_size == cfg.subject.d_model  # the preset's width override
    metrics, _ = evaluate_subject(HFGenerator(model, tok), cfg.eval, data, seed=cfg.seed)
    assert "recovery/random_1/0shot" in metrics and 0 <= metrics["qa/acc/original"] <= 1


def test_icl_unlearning(mlflow_uri, tmp_path):
    import mlflow

    from jobs import icl_unlearning as job
    from xlab.config import apply_overrides
    from xlab.lm import save_causal_lm

    cfg = parse_job_config("icl_unlearning", [
        *LLAMA, "--data.n_subjects", "3", "--data.ood_subjects", "2", "--data.qa_per_subject", "2",
        "--learn.steps", "10", "--unlearn.epochs", "1.0", "--unlearn.lens_examples", "4",
        "--unlearn.max_new_tokens", "4", "--subject.vocab_size", "300"])
    rows, ood, _ = job.make_data(cfg)
    model, tok, _ = job.teach_facts(cfg, rows + ood)
    assert _is_llama(model)
    save_causal_lm(model, tok, tmp_path / "subject")
    tcfg = apply_overrides(cfg, {"unlearn.base_model": str(tmp_path / "subject"), "unlearn.method": "lora"})
    with mlflow.start_run():
        out = job.trial(tcfg)  # LoRA on Llama's projections, the tag embeddings trained
    assert 0 <= out["after_in_forget_acc"] <= 1


@pytest.mark.parametrize("tokenizer", ["digit", "bpe"])
def test_multiplication_digits(tmp_path, tokenizer):
    from jobs import multiplication_digits as job
    from xlab.lm import save_causal_lm
    from xlab.studydata.arithmetic import make_problems

    cfg = parse_job_config("multiplication_digits", [
        *LLAMA, "--data.max_digits", "2", "--train.steps", "5", "--data.train_problems", "300",
        "--subject.tokenizer", tokenizer, "--subject.vocab_size", "300"])
    problems = make_problems(range(1, 3), range(1, 3), per_cell=2, seed=0)
    model, tok, _ = job.train_subject(cfg, problems)
    assert _is_llama(model)
    save_causal_lm(model, tok, tmp_path / "m")
    ev = parse_job_config("multiplication_digits", ["--eval.mc_passes", "2", "--eval.mc_sites", "native", "mlp"]).eval
    records, active = job.evaluate_cells(str(tmp_path / "m"), problems, ev, seed=0)
    assert len(records) == 8 and "blocks.0.mlp" in active
