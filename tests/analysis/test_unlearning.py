"""In-context unlearning metrics (clean definitions), special tokens, LoRA wrapping and the logit lens."""

from __future__ import annotations

import pytest
import torch

from xlab.analysis.unlearning import (
    add_unlearning_tokens,
    first_token,
    greedy_answers,
    logit_lens_curves,
    normalize,
    plot_logit_lens,
    prompt,
    unlearning_pairs,
    unlearning_scores,
    unwrap_lora,
    wrap_lora,
)
from xlab.studydata.tofu import FORGOT, UNL_CLOSE, UNL_OPEN, make_facts, unlearning_examples


def _examples(n_rows: int = 3):
    rows = make_facts("authors", n_subjects=n_rows, qa_per_subject=1, seed=0)
    return unlearning_examples(rows, target="name", seed=0)


def test_scores_use_the_clean_definitions():
    ex = _examples(3)  # forget, retain, forget, retain, forget, retain
    gold = [e.gold for e in ex]
    outputs = [
        FORGOT, gold[1],          # row 0: forgets, retains
        gold[2], FORGOT,          # row 1: leaks the gold answer on forget, over-forgets on retain
        " Forgot. ", gold[5] + "  ",  # row 2: normalization (case, period, whitespace)
    ]
    s = unlearning_scores(ex, outputs)
    # A forget example answered with the gold answer is NOT correct; a retain "forgot" is not either.
    assert s["forget_acc"] == pytest.approx(2 / 3)
    assert s["retain_acc"] == pytest.approx(2 / 3)
    assert s["forget_leak"] == pytest.approx(1 / 3)
    assert s["retain_forgot"] == pytest.approx(1 / 3)
    assert s["n_forget"] == s["n_retain"] == 3
    # The authors' bug would count every forget example as retained: here all-"forgot" retains nothing.
    assert unlearning_scores(ex, [FORGOT] * 6)["retain_acc"] == 0.0
    assert unlearning_scores(ex, gold)["forget_acc"] == 0.0
    with pytest.raises(ValueError):
        unlearning_scores(ex, outputs[:2])
    assert normalize("  The Pale  Garden Prize. ") == "the pale garden prize"


def _tiny_lm():
    from xlab.lm import build_causal_lm, train_bpe

    ex = _examples(3)
    texts = [prompt(e.question) + " " + e.gold for e in ex] + [f" {FORGOT}"] * 3
    tok = train_bpe(texts, vocab_size=300)
    model = build_causal_lm("gpt2", "tiny", vocab_size=len(tok), n_ctx=64, seed=0)
    return model, tok, ex


def test_tags_become_single_new_tokens_with_distinct_embeddings():
    model, tok, ex = _tiny_lm()
    old = model.get_input_embeddings().weight.shape[0]
    ids = add_unlearning_tokens(model, tok, seed=0)
    assert ids == [old, old + 1] and model.get_input_embeddings().weight.shape[0] == old + 2
    emb = model.get_input_embeddings().weight
    assert not torch.allclose(emb[ids[0]], emb[ids[1]])
    enc = tok(prompt(ex[0].user_turn), add_special_tokens=False)["input_ids"]
    assert enc.count(ids[0]) == 1 and enc.count(ids[1]) == 1
    assert UNL_OPEN not in tok.decode(enc, skip_special_tokens=True)
    assert add_unlearning_tokens(model, tok) == ids  # idempotent
    assert unlearning_pairs(ex[:1])[0] == (f"Question: {UNL_OPEN}{ex[0].target}{UNL_CLOSE} {ex[0].question}\nAnswer:",
                                           f" {FORGOT}")


def test_lora_trains_adapters_and_tag_embeddings_only_and_merges_back():
    model, tok, ex = _tiny_lm()
    ids = add_unlearning_tokens(model, tok, seed=0)
    total = sum(p.numel() for p in model.parameters())
    net = wrap_lora(model, ids, r=4, alpha=8, dropout=0.1)
    trainable = {n: p.numel() for n, p in net.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("trainable_tokens" in n for n in trainable)
    assert sum(trainable.values()) < 0.2 * total
    # One optimizer step on an unlearning pair changes the model's output; merging keeps that change.
    from xlab.lm import LMTrainConfig, train_on_pairs

    probe = torch.tensor([tok(prompt(ex[0].user_turn), add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        before = net(input_ids=probe).logits[0, -1].clone()
    train_on_pairs(net, tok, unlearning_pairs(ex), LMTrainConfig(steps=3, batch_size=2, lr=1e-2, block_size=64))
    net.eval()
    with torch.no_grad():
        after = net(input_ids=probe).logits[0, -1]
    plain = unwrap_lora(net)
    assert not hasattr(plain, "peft_config") and type(plain).__name__ == "GPT2LMHeadModel"
    with torch.no_grad():
        merged = plain(input_ids=probe).logits[0, -1]
    assert not torch.allclose(before, after)
    assert torch.allclose(after, merged, atol=1e-4)


def test_greedy_answers_batch_like_single_prompts_and_stop_at_twenty_tokens():
    model, tok, ex = _tiny_lm()
    add_unlearning_tokens(model, tok, seed=0)
    prompts = [prompt(e.user_turn) for e in ex]
    batched = greedy_answers(model, tok, prompts, max_new_tokens=20)
    single = [greedy_answers(model, tok, [p], max_new_tokens=20)[0] for p in prompts]
    assert batched == single
    for out in batched:
        assert len(tok(out, add_special_tokens=False)["input_ids"]) <= 20 and "\n" not in out


def test_logit_lens_curves_per_layer_and_last_layer_is_the_output():
    model, tok, ex = _tiny_lm()
    add_unlearning_tokens(model, tok, seed=0)
    model.eval()
    curves = logit_lens_curves(model, tok, ex)
    n_layers = model.config.n_layer
    for kind in ("forget", "retain"):
        assert len(curves[kind]["p_gold"]) == len(curves[kind]["p_forgot"]) == n_layers + 1
    # The last row is the model's own next-token distribution.
    forget = [e for e in ex if e.kind == "forget"]
    with torch.no_grad():
        want_forgot, want_gold = [], []
        for e in forget:
            # The sequence fed starts with the tokenizer's start token (its BOS: it adds no prefix itself).
            ids = torch.tensor([[tok.bos_token_id, *tok(prompt(e.user_turn), add_special_tokens=False)["input_ids"]]])
            p = model(input_ids=ids).logits[0, -1].softmax(-1)
            want_forgot.append(float(p[first_token(tok, FORGOT)]))
            want_gold.append(float(p[first_token(tok, e.gold)]))
    assert curves["forget"]["p_forgot"][-1] == pytest.approx(sum(want_forgot) / len(forget), rel=1e-4)
    assert curves["forget"]["p_gold"][-1] == pytest.approx(sum(want_gold) / len(forget), rel=1e-4)
    fig = plot_logit_lens({"before": curves, "after": curves}, "test")
    assert len(fig.axes) == 2


def test_prompt_layouts_plain_paper_and_chat_template():
    from xlab.analysis.unlearning import example_prompt
    from xlab.analysis.unlearning_prompt import PromptStyle
    from xlab.errors import XlabError

    model, tok, ex = _tiny_lm()
    e = ex[0]
    # plain: xlab's layout, identical to the earlier prompt(user_turn)
    assert example_prompt(e) == prompt(e.user_turn) == f"Question: {UNL_OPEN}{e.target}{UNL_CLOSE} {e.question}\nAnswer:"
    # paper: the authors' Llama-2 layout, tags on their own lines (their literal "<s>" is the sequence start)
    paper = PromptStyle.of("paper", tok)
    assert example_prompt(e, paper) == f"[INST] {UNL_OPEN}\n{e.target}\n{UNL_CLOSE}\n\n{e.question} [/INST]"
    assert paper(e.question) == f"[INST] {e.question} [/INST]"
    assert PromptStyle.of("auto", tok).fmt == "plain"  # no chat template
    with pytest.raises(XlabError, match="chat template"):
        PromptStyle.of("chat", tok)
    # chat: the tokenizer's template renders the same user turn (its own BOS text dropped: the start adds it)
    tok.bos_token = "<s>"
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")
    chat = PromptStyle.of("auto", tok)
    assert chat.fmt == "chat" and example_prompt(e, chat) == example_prompt(e, paper)


def test_paper_lora_adapts_query_and_value_only_with_frozen_tags():
    import transformers as T

    from xlab.analysis.unlearning import lora_targets

    _, tok, ex = _tiny_lm()
    cfg = T.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    llama = T.LlamaForCausalLM(cfg)
    assert lora_targets(llama, "qv") == ["q_proj", "v_proj"] and len(lora_targets(llama)) == 7
    add_unlearning_tokens(llama, tok, seed=0)
    net = wrap_lora(llama, [], r=4, alpha=8, dropout=0.1, scope="qv")
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(("q_proj" in n or "v_proj" in n) and "lora_" in n for n in trainable)
    assert not any("trainable_tokens" in n or "embed" in n for n in trainable)
