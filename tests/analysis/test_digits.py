"""Digit metrics on a scripted causal LM whose next-token distributions are set by hand."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from xlab.analysis.digits import (
    cell_table,
    digit_token_sets,
    evaluate_digits,
    greedy_digits,
    heatmaps,
    mc_dropout,
    next_token_probs,
)
from xlab.studydata.arithmetic import Problem, digit_tokenizer


class ScriptedLM(nn.Module):
    """Test double for the metric math: p(next | text) comes from ``script[text]`` (token -> prob);
    unscripted texts get a uniform distribution. Called like an HF causal LM (``.logits``)."""

    def __init__(self, tokenizer, script: dict[str, dict[str, float]]):
        super().__init__()
        self.tok = tokenizer
        self.script = script
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the module a device
        self.calls = 0
        self.seen: list[list[int]] = []

    def forward(self, input_ids, **_):
        self.calls += 1
        vocab = len(self.tok)
        b, t = input_ids.shape
        logits = torch.zeros(b, t, vocab)
        for i in range(b):
            self.seen.append(input_ids[i].tolist())
            text = self.tok.decode(input_ids[i].tolist(), skip_special_tokens=True)
            if text in self.script:
                probs = torch.full((vocab,), 1e-12)
                for token, p in self.script[text].items():
                    probs[self.tok.convert_tokens_to_ids(token)] = p
                logits[i, -1] = probs.log()
        return types.SimpleNamespace(logits=logits)


def _digit_script():
    # 12 * 34 = 408. First digit: p(4)=0.6. Greedy higher digits: "4", then "1" (p 0.5 beats the gold 0).
    prompt = "12 * 34 = "
    return {
        prompt: {"4": 0.6, "3": 0.3, "<eos>": 0.1},
        prompt + "4": {"1": 0.5, "0": 0.4, "9": 0.1},
        prompt + "41": {"8": 0.2, "2": 0.7, "<eos>": 0.1},  # after the model's own (wrong) digits
        prompt + "40": {"8": 0.9, "5": 0.1},  # after the gold higher digits
        # 3 * 3 = 9: one-digit answer, first = last digit.
        "3 * 3 = ": {"9": 0.25, "<eos>": 0.75},
    }


def test_confidences_and_accuracies_match_the_script_exactly():
    tok = digit_tokenizer()
    model = ScriptedLM(tok, _digit_script())
    rec, small = evaluate_digits(model, tok, [Problem(12, 34), Problem(3, 3)])
    assert rec["answer"] == "408" and rec["own_higher_digits"] == "41" and not rec["higher_digits_correct"]
    assert rec["first_conf"] == pytest.approx(0.6)
    assert rec["first_correct"] is True
    assert rec["last_uncond_conf"] == pytest.approx(0.2)
    assert rec["last_uncond_correct"] is False  # greedy token after "41" is 2
    assert rec["last_cond_conf"] == pytest.approx(0.9)
    assert rec["last_cond_correct"] is True
    # One-digit product: the last digit is the first; greedy picks <eos>, so it is not correct.
    assert small["first_conf"] == pytest.approx(0.25) == small["last_cond_conf"] == small["last_uncond_conf"]
    assert small["first_correct"] is False and small["own_higher_digits"] == ""
    table = cell_table([rec, small])
    assert list(zip(table.n, table.m, strict=True)) == [(1, 1), (2, 2)]
    assert table.set_index(["n", "m"]).loc[(2, 2), "last_cond_conf"] == pytest.approx(0.9)
    fig = heatmaps(table, ["first_conf", "last_uncond_conf", "last_cond_conf", "first_correct"])
    assert len(fig.axes) >= 4


def _merging_tokenizer():
    """A BPE whose vocabulary merges digit runs ("40", "408")."""
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    chars = ["<eos>", *"0123456789", " ", "*", "="]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({"40": len(vocab), "408": len(vocab) + 1})
    core = Tokenizer(BPE(vocab=vocab, merges=[("4", "0"), ("40", "8")]))
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<eos>")


def test_merged_digit_tokens_are_summed_by_their_first_digit():
    tok = _merging_tokenizer()
    sets = digit_token_sets(tok)
    assert sets[4, tok.convert_tokens_to_ids("40")] == 1 and sets[4, tok.convert_tokens_to_ids("408")] == 1
    assert sets[0, tok.convert_tokens_to_ids("40")] == 0 and sets.sum() == 12
    # p(first digit 4) = p("4") + p("40") + p("408") = 0.1 + 0.2 + 0.15; the greedy token "5" is wrong.
    model = ScriptedLM(tok, {"12 * 34 = ": {"4": 0.1, "40": 0.2, "408": 0.15, "5": 0.55}})
    (rec,) = evaluate_digits(model, tok, [Problem(12, 34)])
    assert rec["first_conf"] == pytest.approx(0.45)
    assert rec["first_correct"] is False


def test_greedy_digits_and_batched_probabilities():
    tok = digit_tokenizer()
    model = ScriptedLM(tok, _digit_script())
    assert greedy_digits(model, tok, ["12 * 34 = "], [2], digit_token_sets(tok)) == ["41"]
    ids = [tok("12 * 34 = ")["input_ids"], tok("3 * 3 = ")["input_ids"], tok("12 * 34 = 4")["input_ids"]]
    probs = next_token_probs(model, ids)
    assert probs.shape == (3, len(tok))
    assert probs[0, tok.convert_tokens_to_ids("4")] == pytest.approx(0.6)
    assert probs[2, tok.convert_tokens_to_ids("1")] == pytest.approx(0.5)


def _tiny_gpt2(tok, dropout: float):
    import transformers as T

    cfg = T.GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                       resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    torch.manual_seed(0)
    return T.GPT2LMHeadModel(cfg)


def test_mc_dropout_spread_is_positive_with_dropout_and_zero_without():
    tok = digit_tokenizer()
    model = _tiny_gpt2(tok, dropout=0.0)
    problems = [Problem(12, 34), Problem(567, 89), Problem(3, 7)]
    plain = evaluate_digits(model, tok, problems)
    with_mc = evaluate_digits(model, tok, problems, mc_passes=6, mc_p=0.3)
    without = evaluate_digits(model, tok, problems, mc_passes=4, mc_p=0.0)
    for r in with_mc:
        assert all(r[f"{m}_mc_std"] > 0 for m in ("first", "last_uncond", "last_cond"))
    for r in without:
        assert all(r[f"{m}_mc_std"] == 0 for m in ("first", "last_uncond", "last_cond"))
        assert r["first_mc_mean"] == pytest.approx(r["first_conf"], abs=1e-6)
    # MC dropout leaves the model as it was: eval mode, dropout back at 0, same deterministic numbers.
    assert not model.training
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    again = evaluate_digits(model, tok, problems)
    assert [r["first_conf"] for r in again] == pytest.approx([r["first_conf"] for r in plain])


def test_mc_dropout_restores_training_state_and_probability():
    tok = digit_tokenizer()
    model = _tiny_gpt2(tok, dropout=0.05)
    model.train()
    with mc_dropout(model, 0.4):
        assert all(m.p == 0.4 for m in model.modules() if isinstance(m, nn.Dropout))
    assert model.training and all(m.p == 0.05 for m in model.modules() if isinstance(m, nn.Dropout))


def test_every_sequence_fed_starts_with_the_tokenizers_start_token():
    tok = digit_tokenizer()  # adds no prefix and has no BOS: sequences start with its EOS
    model = ScriptedLM(tok, _digit_script())
    evaluate_digits(model, tok, [Problem(12, 34)])
    assert model.seen and all(ids[0] == tok.eos_token_id for ids in model.seen)
    model.seen.clear()
    evaluate_digits(model, tok, [Problem(12, 34)], start=False)
    assert all(ids[0] != tok.eos_token_id for ids in model.seen)


def _tiny_llama(tok):
    import transformers as T

    cfg = T.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(0)
    return T.LlamaForCausalLM(cfg)


def test_mc_dropout_sites_llama_has_attention_dropout_only_and_hooks_add_mlp_and_resid():
    from xlab.analysis.mc_dropout import dropout_sites

    tok = digit_tokenizer()
    llama = _tiny_llama(tok)
    assert dropout_sites(llama) == ["model.layers.0.self_attn.attention_dropout",
                                    "model.layers.1.self_attn.attention_dropout"]
    assert not any(isinstance(m, nn.Dropout) for m in llama.modules())
    with mc_dropout(llama, 0.2) as active:
        assert active == dropout_sites(llama)
    with mc_dropout(llama, 0.2, sites=("native", "mlp", "resid")) as active:
        assert {"blocks.0.mlp", "blocks.1.resid"} <= set(active) and len(active) == 6
    with mc_dropout(llama, 0.2, sites=("mlp",)) as active:
        assert active == ["blocks.0.mlp", "blocks.1.mlp"]
        assert all(m.attention_dropout == 0.0 for m in llama.modules() if hasattr(m, "attention_dropout"))
    assert all(m.attention_dropout == 0.0 for m in llama.modules() if hasattr(m, "attention_dropout"))
    # MLP dropout by hook spreads the confidences of a model that has no dropout modules.
    problems = [Problem(12, 34), Problem(567, 89)]
    rec = evaluate_digits(llama, tok, problems, mc_passes=5, mc_p=0.3, mc_sites=("mlp",))
    assert all(r["first_mc_std"] > 0 for r in rec)
    with pytest.raises(Exception, match="MC dropout site"):
        evaluate_digits(llama, tok, problems, mc_passes=1, mc_sites=("embedding",))
