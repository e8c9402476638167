"""The corpora of one comparison, by short label: built (cached) from a registered name, or loaded.

    corpora = load_corpora(["python", "/data/c4-500k"], Path("data/corpora"), max_bytes=2_000_000)
    corpora["python"]["train"], corpora["c4-500k"]["test"]      # DatasetDicts with train and test splits
    corpus_label("hf:allenai/c4:en") == "c4-en"; corpus_kind("python") == "code"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xlab.config import check


def corpus_label(ref: str) -> str:
    """A short name for a corpus reference (its name, a directory's basename, or the hub id)."""
    if ref.startswith("hf:"):
        ref = ref[3:].replace(":", "-")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(ref.rstrip("/")).name or ref).strip("-") or "corpus"


def corpus_kind(label: str) -> str:
    """``code`` or ``nl`` for a registered corpus, ``?`` for a dataset directory or hub reference."""
    from xlab.corpora.spec import CORPORA

    spec = CORPORA.get(label)
    return spec.kind if spec is not None else "?"


def load_corpora(
    refs: Sequence[str],
    root: Path,
    *,
    max_bytes: int,
    seed: int = 42,
    test_fraction: float = 0.01,
    on_card: Callable[[str, dict], Any] | None = None,
    field: str = "data.corpora",
) -> dict[str, Any]:
    """Every corpus of ``refs`` as label -> ``DatasetDict`` with train and test splits.

    Registered names (:data:`xlab.corpora.CORPORA`) are built under ``root`` (cached per corpus and
    parameters); other references are loaded with :func:`~xlab.corpora.load_corpus`, and one without a
    test split gets a ``test_fraction`` split with ``seed``. ``on_card(label, card)`` receives each
    corpus card (e.g. to log it to MLflow); ``field`` names the config value in errors.
    """
    from xlab.corpora.build import build_corpus
    from xlab.corpora.load import corpus_card, load_corpus
    from xlab.corpora.spec import CORPORA

    out: dict[str, Any] = {}
    for ref in refs:
        label = corpus_label(ref)
        check(label not in out, field, f"two corpora are both called {label!r}")
        if ref in CORPORA:
            path = build_corpus(ref, root, max_bytes=max_bytes, seed=seed, test_fraction=test_fraction)
            dd = load_corpus(path)
            card = corpus_card(path)
        else:
            dd = load_corpus(ref)
            if "test" not in dd:  # a saved dataset without a test split: the study's split
                dd = dd["train"].train_test_split(test_size=test_fraction, seed=seed)
            card = {"name": label, "ref": ref, "splits": {s: {"docs": len(d)} for s, d in dd.items()}}
        out[label] = dd
        if on_card is not None:
            on_card(label, card)
        print(f"[corpora] {label}: {len(dd['train'])} train / {len(dd['test'])} test documents", flush=True)
    return out
