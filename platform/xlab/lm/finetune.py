"""In-process training of small causal LMs on texts or prompt/completion pairs, and perplexity.

Analysis jobs create and tune their subject models with these; they run the same optimizer loop as
the Ray Train pretraining workers (:func:`xlab.lm.loop.train_steps`)::

    from xlab.lm.finetune import LMTrainConfig, perplexity, train_on_pairs, train_on_texts
    cfg = LMTrainConfig(steps=300, batch_size=16, lr=1e-3, warmup_steps=30, block_size=128)
    history = train_on_texts(model, tok, texts, cfg, log_fn=lambda step, m: print(step, m["train/loss"]))
    history = train_on_pairs(model, tok, [("2+2=", " 4"), ...], cfg)   # loss on completions only
    ppl = perplexity(model, tok, held_out_texts, block_size=128)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from xlab.config import check
from xlab.errors import XlabError
from xlab.lm.loop import LMTrainConfig, MetricsFn, build_optimizer_and_schedule, train_steps
from xlab.lm.models import context_length
from xlab.lm.packing import blocks_to_batch, iter_block_batches, pack_blocks, pair_batch, tokenize_documents

__all__ = ["LMTrainConfig", "perplexity", "train_on_pairs", "train_on_texts"]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_block(model: Any, block_size: int) -> None:
    ctx = context_length(model)
    check(block_size <= ctx, "train.block_size", f"{block_size} exceeds the model's context length {ctx}")


def _text_blocks(tokenizer: Any, texts: Sequence[str], block_size: int) -> np.ndarray:
    docs = list(tokenize_documents(tokenizer, texts))
    if not docs:
        raise XlabError("no non-empty text to train or evaluate on")
    blocks = pack_blocks(docs, block_size)
    if blocks.shape[0] == 0:  # less than one block of text: train on the one shorter block there is
        blocks = pack_blocks(docs, sum(len(d) for d in docs))
    return blocks


def train_on_texts(
    model: Any, tokenizer: Any, texts: Sequence[str], cfg: LMTrainConfig, *, log_fn: MetricsFn | None = None,
) -> list[dict[str, float]]:
    """Causal-LM training on ``texts`` packed into ``cfg.block_size`` blocks (EOS before each document).

    Batches of ``cfg.batch_size`` blocks are drawn epoch by epoch in a seeded random order (with
    replacement across epochs when there are fewer blocks than a batch). Returns the metric history.
    """
    _check_block(model, cfg.block_size)
    blocks = _text_blocks(tokenizer, texts, cfg.block_size)
    micro = cfg.micro_batch(1)
    torch.manual_seed(cfg.seed)
    if blocks.shape[0] >= micro:
        batches: Iterator[dict[str, torch.Tensor]] = iter_block_batches(blocks, micro, seed=cfg.seed)
    else:
        rng = np.random.default_rng(cfg.seed)
        batches = (blocks_to_batch(blocks[rng.integers(0, blocks.shape[0], micro)]) for _ in iter(int, 1))
    opt, sched = build_optimizer_and_schedule(model, cfg)
    return train_steps(model, batches, cfg, optimizer=opt, scheduler=sched, device=_device(model), log_fn=log_fn)


def _pair_batches(tokenizer: Any, pairs: Sequence[tuple[str, str]], micro: int, block: int,
                  seed: int, start: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(pairs))
        if len(order) < micro:
            order = rng.integers(0, len(pairs), micro)
        for b in range(len(order) // micro):
            yield pair_batch(tokenizer, [pairs[i] for i in order[b * micro:(b + 1) * micro]], block, start=start)


def train_on_pairs(
    model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], cfg: LMTrainConfig, *,
    log_fn: MetricsFn | None = None, start: bool = False,
) -> list[dict[str, float]]:
    """Supervised training on (prompt, completion) pairs: the loss covers completion tokens (and the EOS
    appended to each completion) only; batches are right-padded to their longest example (at most
    ``cfg.block_size`` tokens, prompts cut from the left). ``start``: every prompt begins the way the
    tokenizer starts a sequence (:mod:`xlab.lm.sequence_start`), as the analysis studies feed it.
    Returns the metric history."""
    check(len(pairs) > 0, "pairs", "give at least one (prompt, completion) pair")
    _check_block(model, cfg.block_size)
    torch.manual_seed(cfg.seed)
    batches = _pair_batches(tokenizer, pairs, cfg.micro_batch(1), cfg.block_size, cfg.seed, start)
    opt, sched = build_optimizer_and_schedule(model, cfg)
    return train_steps(model, batches, cfg, optimizer=opt, scheduler=sched, device=_device(model), log_fn=log_fn)


@torch.no_grad()
def block_nll(model: Any, blocks: np.ndarray, *, batch_size: int = 8, device: Any = None) -> tuple[float, int]:
    """Summed next-token NLL and the number of predicted tokens over ``blocks`` (-1 = padding)."""
    device = device or _device(model)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, blocks.shape[0], batch_size):
        batch = blocks_to_batch(np.asarray(blocks[i:i + batch_size]))
        ids = batch["input_ids"].to(device)
        mask = batch.get("attention_mask")
        logits = model(input_ids=ids, attention_mask=mask.to(device) if mask is not None else None).logits
        labels = batch["labels"][:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels.flatten(),
                                                ignore_index=-100, reduction="sum")
        total += float(nll)
        count += int((labels != -100).sum())
    model.train(was_training)
    return total, count


def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], *, block_size: int, batch_size: int = 8) -> float:
    """exp(mean next-token NLL) of ``texts`` packed into ``block_size`` blocks (EOS before each document;
    the last partial block counts too)."""
    _check_block(model, block_size)
    docs = list(tokenize_documents(tokenizer, texts))
    if not docs:
        raise XlabError("perplexity needs at least one non-empty text")
    blocks = pack_blocks(docs, block_size, drop_remainder=False)
    total, count = block_nll(model, blocks, batch_size=batch_size)
    return math.exp(total / max(count, 1))
