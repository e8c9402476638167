"""Corpus builds survive bad files (issue #15, item 11): a corrupt archive, a groff timeout or a
decompression bomb is counted as dropped, never a traceback; split names match whole tokens."""

import gzip
import shutil
import subprocess
from pathlib import Path

from xlab.corpora import build_corpus, corpus_card, load_corpus
from xlab.corpora.load import _split_of

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "text"


def _good_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "LICENSE").write_text("Permission is hereby granted, free of charge, to any person ...\n")
    for i in range(3):
        (root / f"mod{i}.py").write_text(f'"""Module {i}."""\n\n\ndef f{i}(x, y):\n    total = 0\n'
                                         + "".join(f"    total += x * {j} + y - {i}\n" for j in range(20))
                                         + "    return total\n")
    return root


def test_corrupt_archives_are_counted_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = _good_tree(tmp_path / "src")
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"not really a tarball" * 50)
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 broken zip" * 20)
    out = build_corpus("python", tmp_path / "o", max_bytes=10**6, progress=False,
                       sources=[src, tmp_path / "bad.tar.gz", tmp_path / "bad.zip"])
    assert len({s for split in load_corpus(out).values() for s in split["source"]}) == 3
    assert corpus_card(out)["dropped"]["corrupt_archive"] == 2


def test_a_groff_timeout_drops_the_page(tmp_path, monkeypatch):
    import xlab.corpora.extract as extract

    def fake_groff(cmd, *, input, timeout, **kwargs):  # noqa: A002 - subprocess.run's keyword
        if b"SLOW" in input:
            raise subprocess.TimeoutExpired(cmd, timeout)
        return subprocess.CompletedProcess(cmd, 1, b"", b"")  # failed: the pure-Python reader renders it

    man = tmp_path / "man" / "man1"
    man.mkdir(parents=True)
    shutil.copy(FIX / "man" / "man1" / "frob.1.gz", man / "frob.1.gz")
    (man / "slow.1").write_text(".TH SLOW 1\n.SH NAME\nslow \\- takes forever to render, says the test\n")
    monkeypatch.setattr(extract, "_GROFF", "/usr/bin/groff")
    monkeypatch.setattr(extract.subprocess, "run", fake_groff)
    out = build_corpus("man-en", tmp_path / "o", max_bytes=10**6, progress=False, sources=[tmp_path / "man"])
    card = corpus_card(out)
    assert card["dropped"]["timeout"] == 1 and card["docs"] == 1


def test_a_decompression_bomb_is_dropped_at_the_cap(tmp_path, monkeypatch):
    import xlab.corpora.sources as sources

    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 200_000)
    man = tmp_path / "man" / "man1"
    man.mkdir(parents=True)
    shutil.copy(FIX / "man" / "man1" / "frob.1.gz", man / "frob.1.gz")
    with gzip.open(man / "bomb.1.gz", "wb") as g:  # 4 MB of text in a few KB
        for _ in range(64):
            g.write(b".TH BOMB 1\n" + b"a" * 65_536)
    (tmp_path / "man" / "man1" / "huge.1").write_bytes(b".TH HUGE 1\n" + b"word " * 100_000)
    out = build_corpus("man-en", tmp_path / "o", max_bytes=10**6, progress=False, sources=[tmp_path / "man"])
    card = corpus_card(out)
    assert card["dropped"]["too_large"] == 2 and card["docs"] == 1


def test_read_items_stops_reading_at_the_cap(tmp_path, monkeypatch):
    import xlab.corpora.sources as sources
    from xlab.corpora.sources import Item, read_items

    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 1000)
    bomb = tmp_path / "x.1.gz"
    bomb.write_bytes(gzip.compress(b"z" * 10**6))
    small = tmp_path / "y.1"
    small.write_bytes(b"ok\n")
    dropped = {}
    got = read_items([Item(str(bomb)), Item(str(small))], dropped=dropped)
    assert list(got.values()) == [b"ok\n"] and dropped == {"too_large": 1}


def test_split_names_match_whole_tokens():
    assert _split_of("/d/latest.jsonl") == "train"
    assert _split_of("/d/contest-results.parquet") == "train"
    assert _split_of("/d/test-00000-of-00001.parquet") == "test"
    assert _split_of("/d/wiki_test.jsonl") == "test"
    assert _split_of("/d/validation.jsonl.gz") == "validation"
    assert _split_of("/d/my.dev.json") == "validation"
    assert _split_of("/d/train-0.parquet") == "train"
