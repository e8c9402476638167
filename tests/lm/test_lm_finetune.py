"""In-process training: loss falls, schedules, prompt masking of pairs, perplexity."""

import math

import pytest
import torch

from xlab.errors import XlabError
from xlab.lm.finetune import LMTrainConfig, perplexity, train_on_pairs, train_on_texts
from xlab.lm.loop import lr_factor
from xlab.lm.models import build_causal_lm
from xlab.lm.packing import pack_blocks, pair_batch, tokenize_documents
from xlab.lm.tokenizer import train_bpe

TEXTS = [f"{n} plus {m} is {n + m}." for n in range(20) for m in range(20)]


@pytest.fixture(scope="module")
def tok():
    return train_bpe(TEXTS, vocab_size=300)


def test_train_on_texts_lowers_loss_and_perplexity(tok):
    model = build_causal_lm("gpt2", "tiny", vocab_size=len(tok))
    before = perplexity(model, tok, TEXTS[:50], block_size=64)
    calls = []
    cfg = LMTrainConfig(steps=60, batch_size=8, lr=3e-3, warmup_steps=6, block_size=64, log_every=20)
    history = train_on_texts(model, tok, TEXTS, cfg, log_fn=lambda s, m: calls.append((s, m)))
    assert [c[0] for c in calls] == [20, 40, 60] and [r["step"] for r in history] == [20, 40, 60]
    assert history[-1]["train/loss"] < history[0]["train/loss"] < math.log(len(tok)) + 1
    after = perplexity(model, tok, TEXTS[:50], block_size=64)
    assert after < before / 5
    assert history[-1]["train/tokens"] == 60 * 8 * 64 and history[-1]["train/tokens_per_s"] > 0


def test_adopt_constant_schedule_and_accumulation(tok):
    model = build_causal_lm("llama", "tiny", vocab_size=len(tok))
    cfg = LMTrainConfig(steps=30, batch_size=8, grad_accum=2, lr=3e-3, schedule="constant", optimizer="adopt",
                        block_size=32, log_every=10)
    history = train_on_texts(model, tok, TEXTS, cfg)
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert all(r["train/lr"] == pytest.approx(3e-3) for r in history)


def test_lr_schedule_warmup_then_cosine_to_min():
    cfg = LMTrainConfig(steps=100, lr=1e-4, warmup_fraction=0.1, min_lr=3.3e-6)
    lrs = [cfg.lr * lr_factor(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[9] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert cfg.lr * lr_factor(100, cfg) == pytest.approx(3.3e-6)


def test_pairs_mask_prompt_tokens_and_learn_completions(tok):
    batch = pair_batch(tok, [("3 plus 4 is", " 7."), ("10 plus 1", " is 11.")], max_length=64)
    for row, lab, mask, (p, c) in zip(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                      [("3 plus 4 is", " 7."), ("10 plus 1", " is 11.")], strict=True):
        n_p = len(tok(p)["input_ids"])
        n_c = len(tok(c)["input_ids"]) + 1  # + EOS
        assert (lab[:n_p] == -100).all() and (lab[n_p:n_p + n_c] == row[n_p:n_p + n_c]).all()
        assert int(mask.sum()) == n_p + n_c and (lab[n_p + n_c:] == -100).all()
        assert lab[n_p + n_c - 1] == tok.eos_token_id
    pairs = [(f"{n} plus {m} is", f" {n + m}.") for n in range(10) for m in range(10)]
    model = build_causal_lm("gpt2", "tiny", vocab_size=len(tok))
    cfg = LMTrainConfig(steps=80, batch_size=16, lr=3e-3, warmup_steps=5, block_size=32, log_every=20)
    history = train_on_pairs(model, tok, pairs, cfg)
    assert history[-1]["train/loss"] < history[0]["train/loss"] / 2


def test_packing_budget_and_errors(tok):
    docs = list(tokenize_documents(tok, ["a b c", "", "  ", "d e"]))
    assert len(docs) == 2 and all(d[0] == tok.eos_token_id for d in docs)
    blocks = pack_blocks([[1] * 10] * 10, 8, max_tokens=50)
    assert blocks.shape == (6, 8)
    with pytest.raises(XlabError, match="block_size"):
        LMTrainConfig(block_size=1)
    with pytest.raises(XlabError, match="split"):
        LMTrainConfig(batch_size=6, grad_accum=4).micro_batch(1)
    model = build_causal_lm("gpt2", "tiny", vocab_size=len(tok))
    with pytest.raises(XlabError, match="context length"):
        train_on_texts(model, tok, TEXTS, LMTrainConfig(block_size=512))
    assert torch.isfinite(torch.tensor(perplexity(model, tok, ["1 plus 1 is 2."], block_size=16)))
