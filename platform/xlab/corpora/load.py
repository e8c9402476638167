"""Load a corpus as a ``datasets.DatasetDict`` with a ``text`` column, whatever its origin.

``ref`` may be a directory written by :func:`~xlab.corpora.build.build_corpus`, any directory
saved with ``save_to_disk`` (a ``Dataset`` becomes the ``train`` split), Parquet or JSON-lines files
(one file, a glob, or a directory of them; files named ``*train*``/``*test*``/``*valid*`` become those
splits), or ``hf:NAME[:CONFIG]`` to load from the Hugging Face hub when online (real Wikipedia, C4,
FineWeb, The Stack). A text column named ``content`` (The Stack) is renamed to ``text``.

    dd = load_corpus("data/corpora/python")
    dd = load_corpus("hf:allenai/c4:en")          # online only; offline -> XlabError
    card = corpus_card("data/corpora/python")     # dict for mlflow.log_dict(card, "corpora/python.json")
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

from xlab.errors import XlabError

_TEXT_ALIASES = ("text", "content", "code", "document", "body")
_SPLIT_WORDS = {"train": "train", "test": "test", "valid": "validation", "validation": "validation", "dev": "validation"}


def _with_text(dd, ref: str):
    import datasets

    out = {}
    for split, ds in dd.items():
        if "text" not in ds.column_names:
            alias = next((c for c in _TEXT_ALIASES if c in ds.column_names), None)
            if alias is None:
                raise XlabError(f"corpus {ref!r} split {split!r} has no text column (columns: {ds.column_names}); "
                                f"expected one of {', '.join(_TEXT_ALIASES)}")
            ds = ds.rename_column(alias, "text")
        out[split] = ds
    return datasets.DatasetDict(out)


def _split_of(path: str) -> str:
    """The split a data file's name says, by whole words (``wiki_test.jsonl``; not ``latest.jsonl``)."""
    words = re.split(r"[^a-z0-9]+", os.path.basename(path).lower())
    for word, split in _SPLIT_WORDS.items():
        if word in words:
            return split
    return "train"


def _load_files(files: list[str], ref: str):
    import datasets

    kinds = {("parquet" if f.endswith(".parquet") else "json") for f in files}
    if len(kinds) != 1:
        raise XlabError(f"corpus {ref!r} mixes Parquet and JSON-lines files; keep one format per corpus")
    data_files: dict[str, list[str]] = {}
    for f in sorted(files):
        data_files.setdefault(_split_of(f), []).append(f)
    return datasets.load_dataset(kinds.pop(), data_files=data_files)


def _data_files(path: str) -> list[str]:
    pats = ("*.parquet", "*.jsonl", "*.json.gz", "*.jsonl.gz", "*.json")
    if os.path.isdir(path):
        found = [f for p in pats for f in glob.glob(os.path.join(path, "**", p), recursive=True)]
        return [f for f in found if os.path.basename(f) not in ("card.json", "dataset_dict.json",
                                                                "dataset_info.json", "state.json")]
    return [f for f in glob.glob(path) if f.endswith(tuple(p[1:] for p in pats))]


def _load_hub(ref: str):
    import datasets

    spec = ref[3:]
    name, _, config = spec.partition(":")
    if not name:
        raise XlabError(f"bad hub reference {ref!r}; write hf:NAME or hf:NAME:CONFIG (e.g. hf:allenai/c4:en)")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise XlabError(f"cannot load {ref!r}: the Hugging Face hub is offline here (HF_HUB_OFFLINE=1); "
                        "download it where you are online and pass the local directory or Parquet files instead")
    try:
        return datasets.load_dataset(name, config or None)
    except Exception as e:  # network, auth, missing dataset: all the user's to fix
        raise XlabError(f"cannot load {ref!r} from the Hugging Face hub: {type(e).__name__}: {e}") from e


def load_corpus(ref: str | Path):
    """The corpus at ``ref`` as a ``datasets.DatasetDict`` with a ``text`` column (see module doc)."""
    import datasets

    sref = str(ref)
    if sref.startswith("hf:"):
        return _with_text(_load_hub(sref), sref)
    path = Path(sref)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({"train": loaded})
        return _with_text(loaded, sref)
    files = _data_files(sref)
    if files:
        return _with_text(_load_files(files, sref), sref)
    if not path.exists() and not glob.glob(sref):
        raise XlabError(f"corpus {sref!r} not found: build it with xlab.corpora.build_corpus (or "
                        "`python -m xlab.corpora.build NAME`), or give a dataset directory, Parquet/JSON-lines "
                        "files or hf:NAME[:CONFIG]")
    raise XlabError(f"{sref!r} holds no dataset: expected a save_to_disk directory or Parquet/JSON-lines files")


def corpus_card(path: str | Path) -> dict:
    """The corpus card of a built corpus (JSON-safe, for ``mlflow.log_dict``).

    For other dataset directories and files a minimal card is computed: splits with their document
    and byte counts, ``approx_tokens`` (bytes / 4) and the source path.
    """
    p = Path(path)
    card_file = p / "card.json"
    if card_file.exists():
        return json.loads(card_file.read_text())
    dd = load_corpus(p)
    splits = {}
    for split, ds in dd.items():
        nbytes = sum(len(t.encode("utf-8")) for t in ds["text"])
        splits[split] = {"docs": len(ds), "bytes": nbytes}
    total = sum(s["bytes"] for s in splits.values())
    return {"name": p.name, "source": str(p), "docs": sum(s["docs"] for s in splits.values()), "bytes": total,
            "approx_tokens": int(total / 4.0), "splits": splits}
