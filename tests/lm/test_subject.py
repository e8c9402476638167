"""The subject helper: every family built through one config with the same shape names, a saved model
loaded by reference, and bad values named by field."""

import pytest
import torch

from xlab.config import apply_overrides
from xlab.errors import XlabError
from xlab.lm import save_causal_lm
from xlab.lm.models import ARCHS
from xlab.lm.subject import SubjectConfig, check_ref, subject_lm

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn"] * 20


def _shape(config) -> tuple[int, int, int]:
    """(width, layers, heads) read with each family's own attribute names."""
    names = {"GPT2Config": ("n_embd", "n_layer", "n_head")}.get(
        type(config).__name__, ("hidden_size", "num_hidden_layers", "num_attention_heads"))
    return tuple(getattr(config, n) for n in names)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_family_takes_the_same_shape_overrides(arch):
    cfg = apply_overrides(SubjectConfig(), {"arch": arch, "d_model": 32, "n_layer": 3, "n_head": 4, "n_ctx": 48,
                                            "vocab_size": 300})
    model, tok = subject_lm(cfg, texts=TEXTS, seed=1)
    assert _shape(model.config) == (32, 3, 4) and len(tok) <= 300 and model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id
    ids = torch.tensor([tok("the cat sat")["input_ids"]])
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape[-1] == len(tok) and torch.isfinite(out.loss)
    if arch == "llama":  # the head size follows the new width (setting hidden_size afterwards would not)
        assert model.model.layers[0].self_attn.head_dim == 8


def test_preset_shape_when_nothing_is_overridden_and_a_given_tokenizer():
    from xlab.studydata.arithmetic import digit_tokenizer

    tok = digit_tokenizer()
    model, same = subject_lm(SubjectConfig(arch="gpt_neox", size="tiny"), tokenizer=tok)
    assert same is tok and _shape(model.config) == (64, 2, 2) and model.config.pad_token_id == tok.pad_token_id


def test_ref_loads_a_saved_model_and_bad_refs_fail_in_one_line(tmp_path):
    model, tok = subject_lm(SubjectConfig(arch="llama", vocab_size=300), texts=TEXTS)
    save_causal_lm(model, tok, tmp_path / "m")
    cfg = SubjectConfig(ref=str(tmp_path / "m"))
    assert not cfg.trains
    check_ref(cfg)
    loaded, tok2 = subject_lm(cfg)
    assert type(loaded).__name__ == "LlamaForCausalLM" and not loaded.training and len(tok2) == len(tok)
    with pytest.raises(XlabError, match="subject.ref: no saved causal LM"):
        check_ref(SubjectConfig(ref=str(tmp_path / "nothing")))
    check_ref(SubjectConfig(ref="models:/somewhere/1"))  # MLflow URIs are checked when loaded


def test_bad_values_name_the_field():
    for key, value, field in (("arch", "t5", "subject.arch"), ("size", "huge", "subject.size"),
                              ("n_layer", -1, "subject.n_layer"), ("vocab_size", 10, "subject.vocab_size")):
        with pytest.raises(XlabError, match=field):
            apply_overrides(SubjectConfig(), {key: value})
    with pytest.raises(XlabError, match="model.n_head"):
        subject_lm(SubjectConfig(d_model=30, n_head=4), texts=TEXTS)


@pytest.mark.slow  # ~30 s: a Ray worker imports transformers (the jobs' end-to-end slow tests take this path too)
def test_a_logged_subject_loads_by_its_uri_in_a_ray_worker(ray_local, mlflow_uri):
    """What the jobs do: log the trained subject, then Ray tasks / Tune trials load it by URI."""
    import mlflow
    import ray

    from xlab.lm.subject import log_subject

    cfg = SubjectConfig(arch="gpt_neox", vocab_size=300)
    model, tok = subject_lm(cfg, texts=TEXTS)
    with mlflow.start_run() as run:
        uri = log_subject(model, tok, cfg)
    assert uri == f"runs:/{run.info.run_id}/subject_model"
    assert mlflow.get_run(run.info.run_id).data.tags["xlab.subject_model"] == uri

    @ray.remote(num_cpus=0.5)
    def load(ref: str) -> tuple[str, int]:
        m, t = subject_lm(SubjectConfig(ref=ref))
        return type(m).__name__, len(t)

    assert ray.get(load.remote(uri)) == ("GPTNeoXForCausalLM", len(tok))
