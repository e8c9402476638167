"""Language detection: programming language by file name, shebang or editor modeline; natural
language by path (man/locale directory names) and, for checking, by py3langid.

    code_language("pkg/mod.py", b"")                   # -> "python"
    code_language("usr/bin/foo", b"#!/bin/sh\\n...")    # -> "shell"
    code_language("c++/12/vector", b"// <vector> -*- C++ -*-")  # -> "cpp"
"""

from __future__ import annotations

import re

# Extension -> language. ".h" is C; C++ headers are found by their own extensions or modelines.
EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyw": "python",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp", ".ipp": "cpp",
    ".tcc": "cpp",
    ".java": "java",
    ".go": "go",
    ".rs": "rust",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".pl": "perl", ".pm": "perl", ".t": "perl",
    ".rb": "ruby",
    ".erl": "erlang", ".hrl": "erlang",
    ".el": "elisp",
    ".sh": "shell", ".bash": "shell",
    ".hs": "haskell", ".lhs": "haskell",
    ".php": "php",
    ".ml": "ocaml", ".mli": "ocaml",
    ".html": "html", ".htm": "html",
}

# Interpreter in a shebang -> language.
INTERPRETERS: dict[str, str] = {
    "sh": "shell", "bash": "shell", "dash": "shell", "ksh": "shell", "zsh": "shell", "mksh": "shell",
    "python": "python", "python3": "python", "perl": "perl", "ruby": "ruby", "node": "javascript",
    "nodejs": "javascript", "escript": "erlang", "runhaskell": "haskell", "runghc": "haskell",
    "php": "php", "emacs": "elisp",
}

# Emacs modeline mode -> language ("// -*- C++ -*-" heads every extensionless libstdc++ header).
MODELINES: dict[str, str] = {"c++": "cpp", "c": "c", "python": "python", "perl": "perl", "ruby": "ruby",
                             "sh": "shell", "shell-script": "shell", "emacs-lisp": "elisp",
                             "erlang": "erlang", "haskell": "haskell", "java": "java"}

_SHEBANG = re.compile(rb"^#!\s*(\S+)(?:\s+(\S+))?")
_MODELINE = re.compile(rb"-\*-\s*(?:mode:\s*)?([A-Za-z+\-]+)\s*[;-]")
_VERSION_SUFFIX = re.compile(r"[\d.]+$")
# A gzip-compressed source keeps its language (Emacs ships .el.gz).
COMPRESSED_SUFFIXES = (".gz",)


def shebang_language(head: bytes) -> str | None:
    """Language of a script from its ``#!`` line (``#!/usr/bin/env python3`` -> python)."""
    m = _SHEBANG.match(head)
    if not m:
        return None
    prog = m.group(1).rsplit(b"/", 1)[-1].decode("ascii", "replace")
    if prog == "env" and m.group(2):
        prog = m.group(2).rsplit(b"/", 1)[-1].decode("ascii", "replace")
    prog = _VERSION_SUFFIX.sub("", prog) or prog
    return INTERPRETERS.get(prog)


def modeline_language(head: bytes) -> str | None:
    """Language named by an Emacs modeline in the first line (``-*- C++ -*-`` -> cpp)."""
    first = head.split(b"\n", 1)[0]
    m = _MODELINE.search(first)
    return MODELINES.get(m.group(1).lower().decode("ascii", "replace")) if m else None


def code_language(path: str, head: bytes = b"") -> str | None:
    """Programming language of a file: its extension, else its shebang, else its modeline.

    ``path`` may end in ``.gz`` (the language of the uncompressed name counts); ``head`` is the
    first bytes of the (uncompressed) file, needed only for extensionless scripts and headers.
    TypeScript declaration files (``.d.ts``) count as TypeScript.
    """
    name = path.rsplit("/", 1)[-1]
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    dot = name.rfind(".")
    if dot > 0:
        lang = EXTENSIONS.get(name[dot:].lower())
        if lang:
            return lang
    if head.startswith(b"#!"):
        return shebang_language(head)
    if dot <= 0:  # extensionless: libstdc++ headers carry a modeline
        return modeline_language(head)
    return None


def path_natural_language(path: str) -> str | None:
    """ISO 639-1 language implied by a man or locale directory in ``path`` (``.../man/de/man1/...``)."""
    m = re.search(r"/(?:man|locale|locale-langpack)/([a-z]{2,3})(?:[_.@][A-Za-z0-9_.@-]+)?/", path)
    return m.group(1) if m else None


def natural_language(text: str) -> str:
    """ISO 639-1 code of ``text`` by py3langid (first 4,000 characters)."""
    import py3langid

    return py3langid.classify(text[:4000])[0]
