"""The study's data pipeline after the corpora: tokenizer(s), EOS-prefixed packing, identical budgets.

:func:`prepare_blocks` takes the corpora (``datasets.DatasetDict``\\ s with train/test splits, already
shuffled with seed 42 and split 1% by :func:`xlab.corpora.build_corpus`), trains one byte-level
BPE on an equal-bytes mixture of them (or one per corpus), tokenizes each document with EOS in front,
packs fixed-length blocks, and truncates every corpus to the same number of training tokens (the
smallest corpus sets it when one cannot reach the budget). It writes memory-mapped ``.npy`` blocks
and a ``manifest.json``; the same inputs return the cached manifest::

    manifest = prepare_blocks({"python": dd_py, "man-en": dd_en}, "data/lm/run1", block_size=512,
                              train_tokens=5_000_000, val_tokens=100_000, vocab_size=8192)
    manifest["tokenizers"]["mixture"]["blocks"]["python"]["train"]     # path of python's training blocks
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from xlab.config import check
from xlab.errors import XlabError
from xlab.lm.packing import pack_blocks, save_blocks, tokenize_documents

MANIFEST = "manifest.json"


def _texts(ds: Any, max_bytes: int | None = None) -> Iterator[str]:
    """Documents of a split in order, stopping after ``max_bytes`` UTF-8 bytes."""
    used = 0
    for text in ds["text"] if len(ds) < 20_000 else (row["text"] for row in ds):
        if not text:
            continue
        yield text
        used += len(text.encode("utf-8", "ignore"))
        if max_bytes is not None and used >= max_bytes:
            return


def _fingerprint(ds: Any) -> str:
    return str(getattr(ds, "_fingerprint", None) or len(ds))


def tokenizer_plan(names: list[str], mode: str) -> dict[str, list[str]]:
    """Tokenizer key -> the corpora it is trained on (``mixture``: one for all; ``per_corpus``: one each)."""
    return {"mixture": list(names)} if mode == "mixture" else {n: [n] for n in names}


def tokenizer_key(corpus: str, mode: str) -> str:
    """The tokenizer a model trained on ``corpus`` uses."""
    return "mixture" if mode == "mixture" else corpus


def prepare_blocks(
    corpora: Mapping[str, Any],
    out_dir: str | Path,
    *,
    block_size: int,
    train_tokens: int,
    val_tokens: int,
    vocab_size: int = 8192,
    tokenizer_mode: Literal["mixture", "per_corpus"] = "mixture",
    tokenizer_bytes: int = 2_000_000,
    tokenizer_path: str = "",
    min_frequency: int = 2,
    log: Any = print,
) -> dict[str, Any]:
    """Write tokenizers and train/validation blocks for every corpus (see module docstring); returns the manifest.

    ``tokenizer_bytes``: text per corpus the BPE learns from; ``tokenizer_path``: use this saved
    tokenizer instead of training one (e.g. the stock GPT-2 files, for the paper's set-up).
    Validation blocks of every corpus are made with every tokenizer, so each model is evaluated on
    every corpus (cross-corpus perplexity).
    """
    from xlab.lm.tokenizer import load_tokenizer, train_bpe

    check(len(corpora) >= 1, "data.corpora", "name at least one corpus")
    check(tokenizer_mode in ("mixture", "per_corpus"), "tokenizer.mode",
          f"must be mixture or per_corpus, got {tokenizer_mode!r}")
    check(train_tokens >= block_size, "data.train_tokens", f"must be at least one block ({block_size}), got {train_tokens}")
    check(val_tokens >= block_size, "data.val_tokens", f"must be at least one block ({block_size}), got {val_tokens}")
    for name, dd in corpora.items():
        for split in ("train", "test"):
            if split not in dd or len(dd[split]) == 0:
                raise XlabError(f"corpus {name!r} has no {split!r} documents; build it with a test_fraction > 0 "
                                "and a larger max_bytes")
    key_src = json.dumps({
        "corpora": {n: {s: _fingerprint(dd[s]) for s in ("train", "test")} for n, dd in corpora.items()},
        "block_size": block_size, "train_tokens": train_tokens, "val_tokens": val_tokens, "vocab": vocab_size,
        "mode": tokenizer_mode, "tok_bytes": tokenizer_bytes, "tok_path": tokenizer_path, "min_freq": min_frequency,
    }, sort_keys=True)
    out = Path(out_dir) / hashlib.sha1(key_src.encode()).hexdigest()[:12]
    if (out / MANIFEST).exists():
        log(f"[pretrain_lm] token blocks cached at {out}")
        return json.loads((out / MANIFEST).read_text())
    t0 = time.monotonic()
    manifest: dict[str, Any] = {"dir": str(out), "block_size": block_size, "tokenizer_mode": tokenizer_mode,
                                "tokenizers": {}}
    for key, names in tokenizer_plan(list(corpora), tokenizer_mode).items():
        tok_dir = out / f"tokenizer-{key}"
        if tokenizer_path:
            tok = load_tokenizer(tokenizer_path)
        else:
            texts = [t for n in names for t in _texts(corpora[n]["train"], tokenizer_bytes)]
            tok = train_bpe(texts, vocab_size, min_frequency=min_frequency)
        tok.save_pretrained(str(tok_dir))
        log(f"[pretrain_lm] tokenizer {key}: {len(tok)} tokens ({'loaded' if tokenizer_path else 'BPE trained on ' + ', '.join(names)})")
        entry: dict[str, Any] = {"path": str(tok_dir), "vocab_size": len(tok), "blocks": {}}
        train_blocks = {n: pack_blocks(tokenize_documents(tok, _texts(corpora[n]["train"])), block_size,
                                       max_tokens=train_tokens) for n in names}
        # Identical budgets: every corpus is cut to the smallest one's block count.
        n_train = min(b.shape[0] for b in train_blocks.values())
        if n_train == 0:
            raise XlabError(f"a corpus has less than one {block_size}-token block of training text; "
                            "raise data.max_bytes")
        val_blocks = {n: pack_blocks(tokenize_documents(tok, _texts(corpora[n]["test"])), block_size,
                                     max_tokens=val_tokens) for n in corpora}
        n_val = min(b.shape[0] for b in val_blocks.values())
        if n_val == 0:
            raise XlabError(f"a corpus has less than one {block_size}-token block of test text; raise "
                            "data.max_bytes or data.test_fraction")
        for n in corpora:
            row: dict[str, Any] = {"test": str(save_blocks(val_blocks[n][:n_val], out / key / f"{n}-test.npy")),
                                   "val_tokens": int(n_val * block_size)}
            if n in train_blocks:
                row["train"] = str(save_blocks(train_blocks[n][:n_train], out / key / f"{n}-train.npy"))
                row["train_tokens"] = int(n_train * block_size)
                row["available_train_tokens"] = int(train_blocks[n].shape[0] * block_size)
            entry["blocks"][n] = row
        if n_train < train_tokens // block_size:
            short = min(train_blocks, key=lambda n: train_blocks[n].shape[0])
            log(f"[pretrain_lm] budget lowered to {n_train * block_size} tokens per corpus ({short} has no more "
                f"within data.max_bytes; asked {train_tokens})")
        entry["train_tokens"] = int(n_train * block_size)
        manifest["tokenizers"][key] = entry
    manifest["seconds"] = round(time.monotonic() - t0, 1)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest
