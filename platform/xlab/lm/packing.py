"""Token blocks for causal-LM training: EOS-prefixed documents packed into fixed-length blocks.

The study's pipeline: every document gets EOS in front, the token streams are concatenated and cut
into ``block_size`` blocks, and the result is truncated to a token budget identical across corpora::

    ids = tokenize_documents(tok, texts)                  # iterator of [EOS, t1, t2, ...] per document
    blocks = pack_blocks(ids, block_size=512, max_tokens=5_000_000)   # int32 [n_blocks, 512]
    for batch in iter_block_batches(blocks, 8, seed=0, rank=0, world_size=2):   # this worker's shard
        ...

Prompt/completion pairs become right-padded batches whose prompt and padding labels are -100
(:func:`pair_batch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlab.errors import XlabError


def tokenize_documents(tokenizer: Any, texts: Iterable[str], *, batch_size: int = 512) -> Iterator[list[int]]:
    """Token ids of each non-empty document with EOS prepended (fast tokenizer, batched)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise XlabError("the tokenizer has no eos_token: train it with xlab.lm.tokenizer.train_bpe")
    batch: list[str] = []

    def flush() -> Iterator[list[int]]:
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            yield [eos, *ids]

    for text in texts:
        if text and text.strip():
            batch.append(text)
        if len(batch) >= batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def pack_blocks(
    token_lists: Iterable[Sequence[int]], block_size: int, *, max_tokens: int | None = None,
    drop_remainder: bool = True,
) -> np.ndarray:
    """Concatenate ``token_lists`` and cut into ``[n, block_size]`` int32 blocks.

    Stops at ``max_tokens`` (rounded down to whole blocks: the identical per-corpus budget). A last
    partial block is dropped unless ``drop_remainder`` is False (then it is right-padded with -1).
    """
    if block_size < 2:
        raise XlabError(f"block_size must be >= 2, got {block_size}")
    limit = (max_tokens // block_size) * block_size if max_tokens else None
    if limit == 0:
        raise XlabError(f"max_tokens={max_tokens} is less than one block of {block_size} tokens")
    chunks: list[np.ndarray] = []
    n = 0
    for ids in token_lists:
        arr = np.asarray(ids, dtype=np.int32)
        if limit is not None and n + arr.size >= limit:
            chunks.append(arr[: limit - n])
            n = limit
            break
        chunks.append(arr)
        n += arr.size
    flat = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
    full = flat.size // block_size
    blocks = flat[: full * block_size].reshape(full, block_size)
    rest = flat[full * block_size:]
    if rest.size and not drop_remainder:
        pad = np.full(block_size, -1, np.int32)
        pad[: rest.size] = rest
        blocks = np.concatenate([blocks, pad[None]], axis=0)
    return blocks


def blocks_to_batch(blocks: np.ndarray) -> dict[str, torch.Tensor]:
    """``input_ids``/``labels``/``attention_mask`` of a ``[b, T]`` block array (-1 = padding)."""
    arr = torch.from_numpy(np.ascontiguousarray(blocks)).long()
    mask = arr >= 0
    ids = arr.clamp_min(0)
    labels = torch.where(mask, ids, torch.full_like(ids, -100))
    if bool(mask.all()):
        return {"input_ids": ids, "labels": labels}
    return {"input_ids": ids, "labels": labels, "attention_mask": mask.long()}


def save_blocks(blocks: np.ndarray, path: str | Path) -> Path:
    """Write blocks as a ``.npy`` file (memory-mapped by :func:`load_blocks`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp.npy")
    np.save(tmp, blocks.astype(np.int32))
    tmp.replace(p)
    return p


def load_blocks(path: str | Path) -> np.ndarray:
    """The blocks of a ``.npy`` file, memory-mapped (read lazily: workers stream what they use)."""
    p = Path(path)
    if not p.exists():
        raise XlabError(f"no token blocks at {p}; the pretraining job writes them (pack step) before training")
    return np.load(p, mmap_mode="r")


def iter_block_batches(
    blocks: np.ndarray, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
    skip_batches: int = 0, epochs: int | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless (or ``epochs``) shuffled batches of this worker's shard of ``blocks``.

    Each epoch is a fresh permutation (seeded by ``seed`` and the epoch) cut into global batches of
    ``batch_size x world_size`` blocks; worker ``rank`` gets rows ``rank::world_size`` of each, so
    workers never see the same block in an epoch. ``skip_batches`` jumps ahead without reading data
    (resume: the batch order after a restart equals the uninterrupted one).
    """
    n = int(blocks.shape[0])
    per_epoch = n // (batch_size * world_size)
    if per_epoch == 0:
        raise XlabError(f"{n} blocks cannot fill one batch of {batch_size} x {world_size} workers: "
                        "give more tokens (data budget) or a smaller batch")
    epoch, start = divmod(skip_batches, per_epoch)
    while epochs is None or epoch < epochs:
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for b in range(start, per_epoch):
            glob = order[b * batch_size * world_size:(b + 1) * batch_size * world_size]
            idx = np.sort(glob[rank::world_size])  # sorted reads from the memory map
            yield blocks_to_batch(np.asarray(blocks[idx]))
        start = 0
        epoch += 1


def pair_batch(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int, *, eos_after_completion: bool = True,
    start: bool = False,
) -> dict[str, torch.Tensor]:
    """Right-padded batch of prompt+completion whose labels are -100 except on completion tokens.

    Too-long examples lose tokens from the start of the prompt (the completion is kept whole).
    ``start``: prompts begin the way the tokenizer starts a sequence (:mod:`xlab.lm.sequence_start`).
    """
    from xlab.lm.sequence_start import start_ids

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    prefix = start_ids(tokenizer, start)
    rows, labels = [], []
    for prompt, completion in pairs:
        p = prefix + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] + ([eos] if eos_after_completion else [])
        if not c:
            raise XlabError(f"empty completion for prompt {prompt[:60]!r}: every pair needs completion tokens")
        c = c[:max_length - 1]
        p = p[max(0, len(p) - (max_length - len(c))):]
        rows.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lb) in enumerate(zip(rows, labels, strict=True)):
        ids[i, : len(r)] = torch.tensor(r)
        lab[i, : len(lb)] = torch.tensor(lb)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "labels": lab, "attention_mask": mask}
