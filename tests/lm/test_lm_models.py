"""Model presets for every family, parameter counts of the paper sizes, save -> AutoModelForCausalLM."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from xlab.errors import XlabError
from xlab.lm.models import ARCHS, SIZES, build_causal_lm, count_parameters, flops_per_token


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_models_of_every_family_run_and_are_seeded(arch):
    model = build_causal_lm(arch, "tiny", vocab_size=300)
    assert model.config.vocab_size == 300 and model.config.eos_token_id == 0
    ids = torch.randint(0, 300, (2, 16))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 16, 300) and torch.isfinite(out.loss)
    twin = build_causal_lm(arch, "tiny", vocab_size=300)
    other = build_causal_lm(arch, "tiny", vocab_size=300, seed=1)
    p0, p1, p2 = (next(iter(m.parameters())) for m in (model, twin, other))
    assert torch.equal(p0, p1) and not torch.equal(p0, p2)
    assert flops_per_token(model) > 6 * count_parameters(model, non_embedding=True)


@pytest.mark.parametrize(("arch", "size", "millions"), [
    ("gpt2", "gpt2-small", 124), ("gpt2", "gpt2-774m", 774), ("llama", "llama-774m", 774),
    ("gpt2", "gpt2-1.5b", 1558), ("gpt2", "smoke", 16),
])
def test_paper_sizes_have_the_published_parameter_counts(arch, size, millions):
    with torch.device("meta"):  # no memory: only shapes
        model = build_causal_lm(arch, size, vocab_size=50257)
    assert count_parameters(model) / 1e6 == pytest.approx(millions, rel=0.02)
    assert model.config.max_position_embeddings if arch == "llama" else model.config.n_positions == SIZES[size]["n_ctx"]


def test_overrides_context_dropout_and_errors():
    m = build_causal_lm("gpt2", "tiny", vocab_size=100, n_ctx=32, dropout=0.1, n_head=4)
    assert m.config.n_positions == 32 and m.config.resid_pdrop == 0.1 and m.config.n_head == 4
    with pytest.raises(XlabError, match="model.arch"):
        build_causal_lm("bert", "tiny", vocab_size=100)
    with pytest.raises(XlabError, match="model.size"):
        build_causal_lm("gpt2", "huge", vocab_size=100)
    with pytest.raises(XlabError, match="no field"):
        build_causal_lm("gpt2", "tiny", vocab_size=100, n_wings=2)


def test_saved_model_loads_with_auto_model(tmp_path):
    from xlab.lm.io import load_causal_lm, save_causal_lm
    from xlab.lm.tokenizer import train_bpe

    tok = train_bpe(["hello world, hello there"] * 10, vocab_size=300)
    model = build_causal_lm("llama", "tiny", vocab_size=len(tok))
    save_causal_lm(model, tok, tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    ids = torch.tensor([tok("hello world")["input_ids"]])
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    again, tok2 = load_causal_lm(tmp_path / "m")
    assert tok2("hello")["input_ids"] == tok("hello")["input_ids"] and not again.training
    with pytest.raises(XlabError, match="no causal LM"):
        load_causal_lm(tmp_path / "missing")
