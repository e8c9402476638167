"""Text extraction: turn one source file (bytes) into the documents it holds.

* plain source or text: decoded as UTF-8 (``.gz`` files are decompressed when read);
* manual pages: rendered with groff (``-mandoc -Tutf8``, no hyphenation, overstrike off), or by a small pure-Python
  roff reader when groff is not installed; ``.so`` alias stubs hold no text and are skipped;
* GNU info: node separators, node headers and the tag table removed;
* gettext ``.mo``: the translated strings of the catalog (parsed with :mod:`gettext`), one per line;
* HTML: tags stripped with :mod:`html.parser`, script/style dropped;
* dictd (``gcide.dict.dz`` + ``gcide.index``): entries in index order, grouped into documents.

    docs = extract_docs("man", raw_bytes, "/usr/share/man/man1/ls.1.gz")
"""

from __future__ import annotations

import gettext
import html.parser
import io
import os
import re
import shutil
import subprocess
from collections.abc import Callable

_GROFF = shutil.which("groff")


def decode(raw: bytes) -> str | None:
    """UTF-8 text of ``raw``, or None for binary data (NUL bytes, or over 1% undecodable bytes)."""
    if b"\x00" in raw[:8192]:
        return None
    text = raw.decode("utf-8", errors="replace")
    if text.count("\ufffd") > max(3, len(text) // 100):
        return None
    return text


# ---------------------------------------------------------------- manual pages

_ROFF_ESCAPES = [
    (re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)"), ""), (re.compile(r"\\s[+-]?\d+"), ""),
    (re.compile(r"\\\*(?:\[[^\]]*\]|\(..|.)"), ""), (re.compile(r"\\\((?:em|en)"), "-"),
    (re.compile(r"\\\((?:lq|rq|dq)"), '"'), (re.compile(r"\\\((?:aq|oq|cq)"), "'"),
    (re.compile(r"\\\(bu"), "*"), (re.compile(r"\\\(co"), "(c)"), (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),
    (re.compile(r"\\[-]"), "-"), (re.compile(r"\\[&c:%|^]"), ""), (re.compile(r"\\e"), lambda m: "\\"),
    (re.compile(r"\\ "), " "), (re.compile(r"\\(.)"), r"\1"),
]
_FONT_MACROS = {"B", "I", "BI", "IB", "BR", "RB", "IR", "RI", "SM", "SB", "UR", "MT", "CW"}
_BREAK_MACROS = {"PP", "LP", "P", "TP", "IP", "HP", "sp", "br", "RS", "RE", "in", "ti", "EX", "EE"}


def _unescape(line: str) -> str:
    for pat, rep in _ROFF_ESCAPES:
        line = pat.sub(rep, line)
    return line


def roff_to_text(src: str) -> str:
    """Plain text of a ``man``-macro roff page without groff (headings, paragraphs, fonts dropped)."""
    out: list[str] = []
    for line in src.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\#')) or line in (".", "'"):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            macro, args = parts[0], (parts[1] if len(parts) > 1 else "")
            if macro == "TH":
                out.append(" ".join(a.strip('"') for a in args.split()[:2]))
            elif macro in ("SH", "SS"):
                out.extend(["", _unescape(args.strip('"')).upper() if macro == "SH" else _unescape(args.strip('"'))])
            elif macro in _FONT_MACROS:
                words = re.findall(r'"[^"]*"|\S+', args)
                sep = " " if macro in ("B", "I", "SM", "SB") else ""
                out.append(_unescape(sep.join(w.strip('"') for w in words)))
            elif macro in _BREAK_MACROS:
                out.append("")
                if macro == "IP" and args:
                    out.append(_unescape(args.split('"')[1] if args.startswith('"') else args.split()[0]))
            continue
        out.append(_unescape(line))
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def render_man(raw: bytes, path: str = "") -> str | None:
    """Rendered text of a manual page (roff source); None for alias stubs (``.so other.1``)."""
    src = raw.decode("utf-8", errors="replace")
    if src.lstrip().startswith(".so "):
        return None
    if _GROFF is None:
        return roff_to_text(src)
    proc = subprocess.run(
        [_GROFF, "-k", "-t", "-mandoc", "-Tutf8", "-rLL=78n", "-rHY=0", "-P-cbou"], input=raw, capture_output=True,
        timeout=60, env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return roff_to_text(src)
    text = proc.stdout.decode("utf-8", errors="replace")
    # groff's header/footer lines ("LS(1)   User Commands   LS(1)") repeat on every page: keep text only.
    lines = text.strip("\n").splitlines()
    if len(lines) > 2:
        lines = lines[1:-1]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


# ---------------------------------------------------------------- GNU info

_INFO_HEADER = re.compile(r"^File: [^,]+,\s+Node: .*$", re.M)


def info_text(raw: bytes) -> str | None:
    """Text of a GNU info file: node headers, separators, tag tables and indirect tables removed."""
    text = decode(raw)
    if text is None:
        return None
    text = re.sub(r"\x1f\s*\nTag Table:.*?\x1f\s*\nEnd Tag Table", "", text, flags=re.S)
    text = re.sub(r"\x1f\s*\nIndirect:.*?(?=\x1f|\Z)", "", text, flags=re.S)
    text = re.sub(r"\x1f\s*\nLocal Variables:.*\Z", "", text, flags=re.S)
    text = _INFO_HEADER.sub("", text).replace("\x1f", "").replace("\x7f", "")
    text = re.sub(r"\x00\x08\[[^\x00]*\x00\x08\]", "", text)  # index cookies
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


# ---------------------------------------------------------------- gettext catalogs

def gettext_text(raw: bytes) -> str | None:
    """The translations of a ``.mo`` catalog, one message per line (header entry dropped)."""
    try:
        catalog = gettext.GNUTranslations(io.BytesIO(raw))._catalog  # noqa: SLF001 - the parsed table
    except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError):
        return None
    msgs = [v for k, v in catalog.items() if (k[0] if isinstance(k, tuple) else k) and isinstance(v, str)]
    msgs = [m.strip() for m in msgs if m.strip()]
    return "\n".join(sorted(set(msgs))) + "\n" if msgs else None


def gettext_pairs(raw: bytes) -> list[tuple[str, str]]:
    """(English source string, translation) pairs of a ``.mo`` catalog."""
    catalog = gettext.GNUTranslations(io.BytesIO(raw))._catalog  # noqa: SLF001
    return [(k if isinstance(k, str) else k[0], v) for k, v in catalog.items()
            if (k if isinstance(k, str) else k[0]) and v]


# ---------------------------------------------------------------- HTML

class _TextParser(html.parser.HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "dt", "dd", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_text(raw: bytes) -> str | None:
    """Visible text of an HTML page (tags stripped, script and style dropped)."""
    text = decode(raw)
    if text is None:
        return None
    parser = _TextParser()
    parser.feed(text)
    parser.close()
    body = "".join(parser.parts)
    body = "\n".join(re.sub(r"[ \t]+", " ", ln).strip() for ln in body.splitlines())
    return re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"


# ---------------------------------------------------------------- dictd dictionaries

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_int(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


def dictd_docs(dict_bytes: bytes, index_text: str, *, entries_per_doc: int = 50) -> list[str]:
    """Documents of a dictd dictionary: entries in index order, ``entries_per_doc`` per document.

    ``dict_bytes`` is the uncompressed ``.dict`` (a ``.dict.dz`` is gzip-compatible); ``index_text``
    the ``.index`` file (``headword<TAB>offset<TAB>length``, numbers in dictd's base64).
    """
    seen: set[tuple[int, int]] = set()
    entries: list[str] = []
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        off, length = _b64_int(parts[1]), _b64_int(parts[2])
        if (off, length) in seen:
            continue
        seen.add((off, length))
        entry = dict_bytes[off: off + length].decode("utf-8", errors="replace").strip()
        if entry:
            entries.append(entry)
    return ["\n\n".join(entries[i: i + entries_per_doc]) + "\n" for i in range(0, len(entries), entries_per_doc)]


DICTD_CAP_FACTOR = 8


def read_dictd(path: str) -> list[str]:
    """Documents of the dictd dictionary at ``path`` (``X.dict`` or ``X.dict.dz``; ``X.index`` beside it)."""
    base = path[: -len(".dict.dz")] if path.endswith(".dict.dz") else path[: -len(".dict")]
    from xlab.corpora.sources import MAX_FILE_BYTES, gunzip_capped, read_capped

    cap = DICTD_CAP_FACTOR * MAX_FILE_BYTES  # one file holds the whole dictionary
    with open(path, "rb") as f:
        raw = read_capped(f, cap)
    if path.endswith(".dz"):
        raw = gunzip_capped(raw, cap)
    with open(base + ".index", encoding="utf-8", errors="replace") as f:
        index = f.read()
    return dictd_docs(raw, index)


# ---------------------------------------------------------------- dispatch

def _plain(raw: bytes) -> str | None:
    return decode(raw)


def _doc(raw: bytes, path: str) -> str | None:
    name = path.lower()
    return html_text(raw) if name.endswith((".html", ".htm", ".html.gz")) else decode(raw)


EXTRACTORS: dict[str, Callable[[bytes, str], str | None]] = {
    "plain": lambda raw, path: _plain(raw),
    "man": render_man,
    "info": lambda raw, path: info_text(raw),
    "gettext": lambda raw, path: gettext_text(raw),
    "html": lambda raw, path: html_text(raw),
    "doc": _doc,
}


def extract_docs(method: str, raw: bytes, path: str) -> list[str]:
    """Documents in one file read with ``method`` (see :data:`EXTRACTORS`; ``dictd`` reads ``path``)."""
    if method == "dictd":
        return read_dictd(path)
    text = EXTRACTORS[method](raw, path)
    return [] if text is None else [text]
