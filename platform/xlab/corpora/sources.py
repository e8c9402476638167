"""Source files of a corpus: which files under its roots belong to it, and reading them.

A root is a directory (walked, symlinks not followed), a plain file, or an archive (``.zip``,
``.tar``, ``.tar.gz``/``.xz``/``.bz2``) whose members are the files. :func:`list_items` selects the
files of one corpus (programming language by extension/shebang/modeline, manual pages by section
suffix, info manuals, ``.mo`` catalogs, ...); :func:`read_items` reads a batch of them, one pass
per tar archive (tar members have no random access).

Bad files never stop a build: an archive that cannot be listed or read counts as
``corrupt_archive``, a file over :data:`MAX_FILE_BYTES` (after decompression: a gzip bomb is cut off
while reading) as ``too_large``, an unreadable file as ``unreadable`` (the ``dropped`` counters).
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path

from xlab.corpora.detect import code_language, path_natural_language
from xlab.corpora.spec import CorpusSpec

MAX_FILE_BYTES = 64 * 2**20
"""Most bytes read from one file, after decompression (corpora drop documents over ~1 MB anyway)."""
# What a damaged archive or compressed file raises while it is read (bz2 raises OSError).
ARCHIVE_ERRORS = (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
                  NotImplementedError, RuntimeError)
Dropped = MutableMapping[str, int]


class FileTooLarge(ValueError):
    """A file holds more than the byte cap once decompressed."""


def _count(dropped: Dropped | None, reason: str, n: int = 1) -> None:
    if dropped is not None and n:
        dropped[reason] = dropped.get(reason, 0) + n


def read_capped(f: io.RawIOBase | io.BufferedIOBase | gzip.GzipFile, cap: int) -> bytes:
    """At most ``cap`` bytes of the stream ``f``; :class:`FileTooLarge` if it holds more."""
    data = f.read(cap + 1)
    if len(data) > cap:
        raise FileTooLarge(f"over {cap} bytes")
    return data


def gunzip_capped(raw: bytes, cap: int) -> bytes:
    """``raw`` gunzipped, reading at most ``cap`` bytes (a decompression bomb stops there)."""
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as g:
        return read_capped(g, cap)


_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
_MAN_NAME = re.compile(r"\.[1-9][a-z0-9+]*(?:\.gz)?$", re.I)
_DOC_NAMES = re.compile(
    r"^(?:readme|news|changes|changelog|faq|todo|history|authors|thanks|usage|install|bugs)"
    r"(?:[._-][\w.-]*)?$|\.(?:txt|md|rst|html?|text)(?:\.gz)?$", re.I)
_HTML_LANG = re.compile(r"\.([a-z]{2})(?:[-_][a-z]{2})?\.html?$")
_DOC_SKIP = re.compile(r"^(?:copyright|changelog\.debian|news\.debian|buildinfo)|\.(?:gz\.asc|sig)$", re.I)


@dataclasses.dataclass(frozen=True, order=True)
class Item:
    """One source file: a path, or a member of the archive at ``path``."""

    path: str
    member: str | None = None
    size: int = 0

    @property
    def name(self) -> str:
        """The file's own path (``archive!member`` for archive members)."""
        return f"{self.path}!{self.member}" if self.member else self.path


def is_archive(path: str) -> bool:
    return path.endswith(".zip") or path.endswith(_TAR_SUFFIXES)


def expand_roots(roots: Sequence[str]) -> list[str]:
    """Existing paths matching the root globs, in order, each once."""
    out: list[str] = []
    for root in roots:
        for p in sorted(glob.glob(root)) if any(c in root for c in "*?[") else [root]:
            if os.path.exists(p) and p not in out:
                out.append(p)
    return out


def _head(path: str, n: int = 256) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as g:
                return g.read(n)
        with open(path, "rb") as f:
            return f.read(n)
    except (OSError, EOFError):
        return b""


def accepts(spec: CorpusSpec, path: str, *, executable: bool = False, head: bytes | None = None) -> bool | None:
    """Whether the file at ``path`` belongs to ``spec``; None when the file's head is needed to decide."""
    low = path.lower()
    if any(x in path for x in spec.exclude):
        return False
    name = low.rsplit("/", 1)[-1]
    if spec.kind == "code":
        if spec.language == "typescript" and name.endswith(".d.ts"):
            return True
        stem = name[:-3] if name.endswith(".gz") else name
        has_ext = "." in stem.lstrip(".")
        if not has_ext and head is None and (executable or spec.language in ("cpp", "shell")):
            if spec.language == "shell" and not executable:
                return False
            return None
        return code_language(path, head or b"") == spec.language
    if spec.extract == "man":
        lang = path_natural_language(path)
        return bool(_MAN_NAME.search(name)) and (lang is None if spec.language == "en" else lang == spec.language)
    if spec.extract == "info":
        return (".info" in name or name.endswith(".gz")) and not name.startswith("dir")
    if spec.extract == "gettext":
        return name.endswith(".mo")
    if spec.extract == "dictd":
        return name.endswith((".dict.dz", ".dict"))
    if spec.extract == "doc":
        return bool(_DOC_NAMES.search(name)) and not _DOC_SKIP.search(name)
    if spec.extract == "html":  # "ch01.de.html" / "ch01.zh-cn.html" name their language
        m = _HTML_LANG.search(name)
        return name.endswith((".html", ".htm")) and (m is None or m.group(1) == spec.language)
    # plain natural-language text (kernel Documentation/): reStructuredText and text files
    return name.endswith((".rst", ".txt")) and ("/documentation/" in low or spec.language != "en")


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    if os.path.isfile(root):
        yield root, os.stat(root)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            p = os.path.join(dirpath, fn)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield p, st


def _archive_members(path: str) -> Iterator[tuple[str, int]]:
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size
        return
    yield from _tar_index(path)


def _archive_members_or_none(path: str, dropped: Dropped | None) -> list[tuple[str, int]]:
    try:
        return list(_archive_members(path))
    except ARCHIVE_ERRORS:
        _count(dropped, "corrupt_archive")
        return []


def _tar_index(path: str) -> list[tuple[str, int]]:
    """(member, size) of the regular files of a tar archive, cached per archive (path, size, mtime):
    listing a compressed tar means decompressing all of it (minutes for the kernel sources)."""
    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xlab" / "tar-index" / f"{key}.json"
    try:
        return [tuple(x) for x in json.loads(cache.read_text())]
    except (OSError, ValueError):
        pass
    with tarfile.open(path, "r|*") as tf:
        members = [(m.name, m.size) for m in tf if m.isfile()]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(members))
        os.replace(tmp, cache)
    except OSError:  # a read-only home only costs the next build another listing pass
        pass
    return members


def list_items(spec: CorpusSpec, roots: Sequence[str], dropped: Dropped | None = None) -> list[Item]:
    """Every file under ``roots`` that belongs to ``spec``, sorted (the order the seed shuffles).

    An archive that cannot be listed adds one to ``dropped["corrupt_archive"]`` and gives no items."""
    items: set[Item] = set()
    for root in roots:
        if os.path.isfile(root) and is_archive(root) and spec.extract != "dictd":
            for member, size in _archive_members_or_none(root, dropped):
                if accepts(spec, "/" + member) is True:
                    items.add(Item(root, member, size))
            continue
        for p, st in _walk(root):
            if is_archive(p) and p != root:
                continue
            ok = accepts(spec, p, executable=bool(st.st_mode & 0o111))
            if ok is None:
                ok = accepts(spec, p, executable=bool(st.st_mode & 0o111), head=_head(p))
            if ok:
                items.add(Item(p, None, st.st_size))
    return sorted(items)


def _maybe_gunzip(name: str, raw: bytes) -> bytes:
    """``raw``, gunzipped (at most :data:`MAX_FILE_BYTES`) for a ``.gz`` name; a broken gzip gives b""."""
    if name.endswith(".gz") and raw[:2] == b"\x1f\x8b":
        try:
            return gunzip_capped(raw, MAX_FILE_BYTES)
        except (OSError, EOFError, zlib.error):
            return b""
    return raw


def _read_file(it: Item) -> bytes:
    with open(it.path, "rb") as f:
        return _maybe_gunzip(it.path, read_capped(f, MAX_FILE_BYTES))


def read_items(items: Sequence[Item], dropped: Dropped | None = None) -> dict[Item, bytes]:
    """Contents of ``items`` (``.gz`` files decompressed); files that cannot be read are left out and
    counted in ``dropped`` (``unreadable``, ``too_large`` over :data:`MAX_FILE_BYTES`, ``corrupt_archive``)."""
    out: dict[Item, bytes] = {}
    by_archive: dict[str, list[Item]] = {}
    for it in items:
        if it.member is None:
            try:
                out[it] = _read_file(it)
            except FileTooLarge:
                _count(dropped, "too_large")
            except OSError:
                _count(dropped, "unreadable")
        else:
            by_archive.setdefault(it.path, []).append(it)
    for archive, members in by_archive.items():
        wanted = {m.member: m for m in members}
        seen: set[str] = set()
        try:
            for name, f in _open_members(archive, wanted):
                seen.add(name)
                try:
                    out[wanted[name]] = _maybe_gunzip(name, read_capped(f, MAX_FILE_BYTES))
                except FileTooLarge:
                    out.pop(wanted[name], None)
                    _count(dropped, "too_large")
        except ARCHIVE_ERRORS:
            pass  # a damaged archive: what was read stays, the rest is counted below
        _count(dropped, "corrupt_archive", len(wanted) - len(seen))
    return out


def _open_members(archive: str, wanted: dict) -> Iterator[tuple[str, io.BufferedIOBase]]:
    """(name, open stream) of the ``wanted`` members of ``archive``, in archive order."""
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for name in wanted:
                with zf.open(name) as f:
                    yield name, f
        return
    with tarfile.open(archive, "r|*") as tf:  # one streaming pass for the whole batch
        for m in tf:
            if m.name in wanted:
                f = tf.extractfile(m)
                if f is not None:
                    yield m.name, f
