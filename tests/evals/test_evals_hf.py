"""HFGenerator on a tiny random GPT-2 with a tokenizer trained here: batching, stops, scoring, evaluation."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tokenizers import decoders as tk_decoders
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from xlab.errors import XlabError
from xlab.evals import HFGenerator, babi_examples, evaluate_fewshot, fld_examples


@pytest.fixture(scope="module")
def tiny():
    fld = fld_examples(12, depth=(1, 1), distractors=(0, 2), branches=(0, 1), seed=5)
    babi = babi_examples(1, 12, seed=5)
    corpus = [e.prompt + " " + e.label for e in fld] + [e.prompt + " " + e.answer for e in babi]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk_decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(hf_tok), n_positions=256, n_embd=32, n_layer=1, n_head=2,
                     bos_token_id=hf_tok.eos_token_id, eos_token_id=hf_tok.eos_token_id)
    model = GPT2LMHeadModel(cfg).eval()  # eval: the manual forward passes below must not drop out
    return model, hf_tok, fld, babi


PROMPTS = ["Passage: Mary went to the kitchen.\nQuestion: Where is Mary?\nAnswer:", "the", "Based on the provided",
           "Passage: John moved to the office.\nSandra went back to the garden.\nQuestion: Where is John?\nAnswer:",
           "sent1: if something is", "hypothesis"]


def test_batched_left_padded_generation_matches_one_by_one(tiny):
    model, tok, _, _ = tiny
    batched = HFGenerator(model, tok, batch_size=4).generate(PROMPTS, max_new_tokens=6)
    single = HFGenerator(model, tok, batch_size=1)
    assert batched == [single.generate([p], max_new_tokens=6)[0] for p in PROMPTS]
    assert len(batched) == len(PROMPTS) and all(isinstance(t, str) for t in batched)
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) <= 6 for t in batched)


def test_stop_strings_cut_the_generation(tiny):
    model, tok, _, _ = tiny
    gen = HFGenerator(model, tok)
    free = gen.generate(PROMPTS, max_new_tokens=24)
    k = max(range(len(free)), key=lambda i: len(free[i]))
    text = free[k]
    assert len(text) >= 6, free
    stop = text[3:5]
    cut = gen.generate([PROMPTS[k]], max_new_tokens=24, stop=[stop])[0]
    assert cut == text[: text.find(stop)] and stop not in cut


def test_loglikelihood_matches_a_manual_forward(tiny):
    model, tok, _, _ = tiny
    gen = HFGenerator(model, tok, batch_size=3)
    ctxs = [PROMPTS[0], PROMPTS[1], PROMPTS[3], PROMPTS[2]]
    conts = [" kitchen", " PROVED", " office", " facts"]
    scores = gen.loglikelihood(ctxs, conts)
    assert len(scores) == 4 and all(s < 0 for s in scores)
    for c, x, s in zip(ctxs, conts, scores, strict=True):
        ids = tok(c + x, add_special_tokens=False)["input_ids"]
        n_ctx = len(tok(c, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
        manual = sum(float(logp[i - 1, ids[i]]) for i in range(n_ctx, len(ids)))
        assert s == pytest.approx(manual, abs=1e-4)
    # An empty context is scored after the bos/eos token.
    assert gen.loglikelihood([""], ["the"])[0] < 0
    with pytest.raises(XlabError, match="contexts"):
        gen.loglikelihood(["a"], [])


def test_prompts_longer_than_the_context_are_left_truncated(tiny):
    model, tok, fld, _ = tiny
    gen = HFGenerator(model, tok)
    long_prompt = "\n\n".join(e.prompt for e in fld)
    assert len(tok(long_prompt)["input_ids"]) > 256
    out = gen.generate([long_prompt, "the"], max_new_tokens=4)
    assert len(out) == 2
    assert gen.loglikelihood([long_prompt], [" PROVED"])[0] < 0
    with pytest.raises(XlabError, match="max_new_tokens"):
        gen.generate(["x"], max_new_tokens=300)


def test_fewshot_evaluation_of_a_tiny_model(tiny):
    model, tok, fld, babi = tiny
    gen = HFGenerator(model, tok, batch_size=8)
    r = evaluate_fewshot(gen, "fld", fld, shots=1, mode="generate")
    assert r["n"] == 12 and 0.0 <= r["valid_rate"] <= 1.0 and len(r["records"]) == 12
    rc = evaluate_fewshot(gen, "fld", fld, shots=1, mode="choice")
    assert rc["valid_rate"] == 1.0 and sum(rc["predictions"].values()) == 12
    rb = evaluate_fewshot(gen, "babi", babi, shots=2, mode="choice")
    assert rb["valid_rate"] == 1.0 and 0.0 <= rb["accuracy"] <= 1.0
    rg = evaluate_fewshot(gen, "babi", babi, shots=2)
    assert all("\n" not in rec["output"] for rec in rg["records"])


def test_llama_family_and_saved_model_round_trip(tiny, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from xlab.evals import logic_suite

    model, tok, _, _ = tiny
    torch.manual_seed(1)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=256, bos_token_id=tok.eos_token_id,
                                         eos_token_id=tok.eos_token_id))
    gen = HFGenerator(llama, tok, batch_size=4)
    batched = gen.generate(PROMPTS, max_new_tokens=5)
    assert batched == [HFGenerator(llama, tok, batch_size=1).generate([p], max_new_tokens=5)[0] for p in PROMPTS]
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded = HFGenerator.from_pretrained(str(tmp_path / "m"))
    assert loaded.generate(PROMPTS[:2], max_new_tokens=4) == HFGenerator(model, tok).generate(PROMPTS[:2],
                                                                                              max_new_tokens=4)
    with pytest.raises(XlabError, match="cannot load"):
        HFGenerator.from_pretrained(str(tmp_path / "nothing"))
    m = logic_suite(loaded, n_fld=6, n_babi=6, babi_tasks=(1, 19), fld_distractors=(0, 2), fld_branches=(0, 1),
                    shots=1, mode="choice")
    assert m["fld/valid_rate"] == 1.0 and m["babi/valid_rate"] == 1.0
    assert {"fld/accuracy", "babi/accuracy", "babi/task1/accuracy", "babi/task19/accuracy"} <= set(m)


def test_a_training_model_is_given_back_in_training_mode(tiny):
    model, tok, _, _ = tiny
    model.train()
    gen = HFGenerator(model, tok)
    gen.generate(["the"], max_new_tokens=2)
    gen.loglikelihood(["the"], [" x"])
    assert model.training
    model.eval()
    gen.generate(["the"], max_new_tokens=2)
    assert not model.training


def test_start_token_prefixes_prompts_and_scored_contexts(tiny):
    model, tok, _, _ = tiny
    seen = []
    handle = model.transformer.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs.get("input_ids", args[0] if args else None)[0].tolist()),
        with_kwargs=True)
    try:
        HFGenerator(model, tok, start=True).generate([PROMPTS[1]], max_new_tokens=2)
        assert seen[0] == [tok.eos_token_id, *tok(PROMPTS[1], add_special_tokens=False)["input_ids"]]
        with_start = HFGenerator(model, tok, start=True).loglikelihood([PROMPTS[1]], [" x"])[0]
        assert seen[-1][0] == tok.eos_token_id
        seen.clear()
        HFGenerator(model, tok).generate([PROMPTS[1]], max_new_tokens=1)
        assert seen[0] == tok(PROMPTS[1], add_special_tokens=False)["input_ids"]  # default: text tokens only
    finally:
        handle.remove()
    ids = [tok.eos_token_id, *tok(PROMPTS[1] + " x", add_special_tokens=False)["input_ids"]]
    n_ctx = 1 + len(tok(PROMPTS[1], add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
    assert with_start == pytest.approx(float(sum(logp[i - 1, ids[i]] for i in range(n_ctx, len(ids)))), rel=1e-4)
