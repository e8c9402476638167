"""Build an offline corpus into a local Hugging Face dataset with a corpus card.

:func:`build_corpus` collects the files of a corpus (see :mod:`xlab.corpora.spec`), shuffles them
with the seed, extracts text (man pages rendered, info/gettext/HTML parsed), cleans, deduplicates,
stops at the byte budget (the last document is cut so every corpus built with the same budget has
the same size, to within one character), splits train/test and writes a ``datasets.DatasetDict``
(columns ``text``, ``source``, ``license``) with ``save_to_disk`` at ``root/name`` plus ``card.json``
(size, documents, approximate tokens, languages, licences and provenance per file collection,
dropped documents by reason, build parameters and time). Files are read lazily in shuffled
batches, so a small budget reads only a small part of a large source. A second call with the same
parameters returns the cached directory at once.

    python -m xlab.corpora python man-en --root data/corpora --max-bytes 10e6
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xlab.config import check
from xlab.corpora.clean import Deduplicator, clean_doc
from xlab.corpora.detect import code_language, natural_language
from xlab.corpora.extract import _GROFF, extract_docs
from xlab.corpora.licence import LicenceIndex
from xlab.corpora.sources import ARCHIVE_ERRORS, FileTooLarge, Item, expand_roots, list_items, read_items
from xlab.corpora.spec import CorpusSpec, get_spec
from xlab.errors import XlabError

BUILDER_VERSION = 2
"""Bumped when the pipeline changes what it writes (invalidates cached corpora)."""
BYTES_PER_TOKEN = 4.0
"""Rough bytes per GPT-2 BPE token, for the card's ``approx_tokens`` (the job counts exactly)."""
CARD = "card.json"


def _missing_error(spec: CorpusSpec, roots: Sequence[str], what: str) -> XlabError:
    pkgs = [p for p in spec.packages if not p.startswith("(")]
    fix = (f"install the Debian package(s): sudo apt-get install {' '.join(pkgs)} (or `make corpora`)"
           if pkgs else "install packages that ship such files")
    return XlabError(f"corpus {spec.name!r}: {what} (looked in {', '.join(roots)}); {fix}, "
                     "or pass sources=[...] with your own directories")


def _params(spec: CorpusSpec, roots: list[str], max_bytes: int, seed: int, test_fraction: float) -> dict:
    return {"name": spec.name, "max_bytes": int(max_bytes), "seed": int(seed), "test_fraction": float(test_fraction),
            "roots": roots, "extract": spec.extract, "exclude": list(spec.exclude),
            "check_language": spec.check_language, "max_doc_bytes": spec.max_doc_bytes,
            "max_collection_share": spec.max_collection_share,
            "builder_version": BUILDER_VERSION}


def _read_card(out: Path) -> dict | None:
    try:
        return json.loads((out / CARD).read_text())
    except (OSError, ValueError):
        return None


def _cut(text: str, budget: int) -> str:
    """``text`` cut to at most ``budget`` UTF-8 bytes, on a character boundary."""
    return text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")


class _Progress:
    def __init__(self, name: str, max_bytes: int, enabled: bool) -> None:
        self.name, self.max_bytes, self.enabled = name, max_bytes, enabled
        self.t0 = self.last = time.monotonic()

    def __call__(self, nbytes: int, docs: int, files: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self.last > 5.0):
            self.last = now
            print(f"[corpus {self.name}] {nbytes / 1e6:.1f}/{self.max_bytes / 1e6:.1f} MB, {docs} docs from "
                  f"{files} files, {now - self.t0:.0f} s", file=sys.stderr, flush=True)


def _extract(method: str, raw: bytes, name: str) -> tuple[list[str], str | None]:
    """Documents of one file, or ``([], reason)`` when a bad file defeats the extractor (a groff
    timeout, a file over the byte cap, a damaged or truncated compressed file)."""
    try:
        return extract_docs(method, raw, name), None
    except subprocess.TimeoutExpired:
        return [], "timeout"
    except FileTooLarge:
        return [], "too_large"
    except (*ARCHIVE_ERRORS, zlib.error, ValueError, UnicodeError):
        return [], "unreadable"


def _batches(order: list[Item], start: int, raw_budget: float) -> tuple[list[Item], int]:
    """Items from ``start`` whose raw sizes add up to about ``raw_budget`` (at least one item)."""
    batch, total, i = [], 0, start
    while i < len(order) and (not batch or total < raw_budget) and len(batch) < 20_000:
        batch.append(order[i])
        total += max(order[i].size, 1)
        i += 1
    return batch, i


def build_corpus(
    name: str,
    root: Path,
    *,
    max_bytes: int,
    seed: int = 42,
    test_fraction: float = 0.01,
    sources: Sequence[Path] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Build corpus ``name`` into ``root/name`` (a ``datasets.DatasetDict`` on disk) and return that path.

    ``max_bytes`` is the UTF-8 budget shared by train and test; ``sources`` replaces the spec's roots
    (directories, files or archives). Missing sources raise :class:`XlabError` naming the Debian
    packages to install. Cached: the same parameters return the existing directory without work.
    """
    spec = get_spec(name)
    check(max_bytes > 0, "max_bytes", f"must be positive, got {max_bytes}")
    check(0.0 <= test_fraction < 1.0, "test_fraction", f"must be in [0, 1), got {test_fraction}")
    wanted_roots = [str(s) for s in sources] if sources is not None else list(spec.resolved_roots())
    roots = expand_roots(wanted_roots)
    if not roots:
        raise _missing_error(spec, wanted_roots, "none of its source paths exists")
    out = Path(root) / name
    params = _params(spec, roots, max_bytes, seed, test_fraction)
    card = _read_card(out)
    if card is not None and card.get("params") == params and (out / "dataset_dict.json").exists():
        return out

    t0 = time.monotonic()
    dropped: Counter[str] = Counter()
    items = list_items(spec, roots, dropped)
    if not items:
        raise _missing_error(spec, roots, f"no {spec.language} files of this corpus found")
    rng = random.Random(seed)
    order = list(items)
    rng.shuffle(order)

    licences = LicenceIndex(spec.licence)
    dedup = Deduplicator()
    texts: list[str] = []
    srcs: list[str] = []
    lics: list[str] = []
    coll_stats: dict[str, dict] = {}
    langs: Counter[str] = Counter()
    total = files_read = raw_read = 0
    show = _Progress(name, max_bytes, progress)
    n_workers = workers or min(4, os.cpu_count() or 1)
    start = 0
    full = False
    with ThreadPoolExecutor(n_workers) as pool:
        while not full and start < len(order):
            yield_ratio = total / raw_read if raw_read and total else 1.0
            raw_budget = min(64e6, max(256e3, 1.3 * (max_bytes - total) / max(yield_ratio, 0.05)))
            batch, start = _batches(order, start, raw_budget)
            contents = read_items(batch, dropped)
            present = [it for it in batch if it in contents or spec.extract == "dictd"]
            # Extract in small chunks so an expensive extractor (groff) stops soon after the budget.
            for c0 in range(0, len(present), 8 * n_workers):
                chunk = present[c0: c0 + 8 * n_workers]
                raws = [contents.pop(it, b"") for it in chunk]
                # Files of a collection already at its cap are skipped before the costly extraction.
                keep = [i for i, it in enumerate(chunk)
                        if coll_stats.get(licences.collection(it.path).name, {}).get("bytes", 0)
                        < spec.max_collection_share * max_bytes]
                dropped["collection_cap"] += len(chunk) - len(keep)
                chunk, raws = [chunk[i] for i in keep], [raws[i] for i in keep]
                extracted = pool.map(lambda it, raw: _extract(spec.extract, raw, it.name), chunk, raws)
                for it, (docs, failure) in zip(chunk, extracted, strict=True):
                    files_read += 1
                    raw_read += max(it.size, 1)
                    if not docs:
                        dropped[failure or "unreadable"] += 1
                    if len(docs) > 1:
                        rng.shuffle(docs)
                    col = licences.collection(it.path)
                    for doc in docs:
                        text, reason = clean_doc(doc, kind=spec.kind, max_bytes=spec.max_doc_bytes)
                        if text is None:
                            dropped[reason] += 1
                            continue
                        if spec.check_language and natural_language(text) != spec.language:
                            dropped["other_language"] += 1
                            continue
                        st = coll_stats.setdefault(col.name, {"collection": col.name, "licence": col.licence,
                                                              "licence_file": col.licence_file, "docs": 0,
                                                              "bytes": 0})
                        if st["bytes"] >= spec.max_collection_share * max_bytes:
                            dropped["collection_cap"] += 1
                            continue
                        if not dedup.add(text):
                            continue
                        nbytes = len(text.encode("utf-8"))
                        if total + nbytes >= max_bytes:  # the budget is full after this document
                            full = True
                            text = _cut(text, max_bytes - total)
                            nbytes = len(text.encode("utf-8"))
                            if not text:  # under one character of budget left
                                break
                        st["docs"] += 1
                        st["bytes"] += nbytes
                        texts.append(text)
                        srcs.append(it.name)
                        lics.append(col.licence)
                        if spec.kind == "code":
                            langs[code_language(it.member or it.path) or spec.language] += 1
                        else:
                            langs[spec.language] += 1
                        total += nbytes
                        if full:
                            break
                    show(total, len(texts), files_read)
                    if full:
                        break
                if full:
                    break
    show(total, len(texts), files_read, force=True)
    if not texts:
        raise _missing_error(spec, roots, f"all {len(items)} candidate files were dropped ({dict(dropped)})")
    dropped.update(dedup.dropped)

    n = len(texts)
    n_test = min(n - 1, max(1, round(n * test_fraction))) if test_fraction > 0 and n > 1 else 0
    split_rows = {"test": slice(0, n_test), "train": slice(n_test, n)}
    card = {
        "name": spec.name, "kind": spec.kind, "language": spec.language, "description": spec.description,
        "debian_packages": list(spec.packages), "extract": spec.extract,
        "renderer": ("groff" if _GROFF else "python-roff") if spec.extract == "man" else None,
        "docs": n, "bytes": total, "approx_tokens": int(total / BYTES_PER_TOKEN),
        "budget_reached": full,
        "splits": {s: {"docs": len(texts[sl]), "bytes": sum(len(t.encode("utf-8")) for t in texts[sl])}
                   for s, sl in split_rows.items()},
        "languages": dict(langs.most_common()),
        "licences": dict(Counter(lics).most_common()),
        "collections": sorted(coll_stats.values(), key=lambda c: -c["bytes"]),
        "candidate_files": len(items), "files_read": files_read, "dropped": dict(dropped),
        "build_seconds": round(time.monotonic() - t0, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": params,
        "fingerprint": hashlib.sha1("".join(texts).encode("utf-8")).hexdigest(),
    }
    _write(out, texts, srcs, lics, split_rows, card)
    return out


def _write(out: Path, texts, srcs, lics, split_rows: dict[str, slice], card: dict) -> None:
    import datasets

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    features = datasets.Features({k: datasets.Value("string") for k in ("text", "source", "license")})
    dd = datasets.DatasetDict({
        split: datasets.Dataset.from_dict(
            {"text": texts[sl], "source": srcs[sl], "license": lics[sl]}, features=features)
        for split, sl in (("train", split_rows["train"]), ("test", split_rows["test"]))
    })
    quiet = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one bar per split is noise in job logs
    try:
        # datasets cannot reload an empty split saved with zero shards: give those one shard.
        dd.save_to_disk(str(tmp), num_shards={s: 1 for s, ds in dd.items() if len(ds) == 0} or None)
    finally:
        if quiet:
            datasets.enable_progress_bars()
    (tmp / CARD).write_text(json.dumps(card, indent=1, ensure_ascii=False))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
