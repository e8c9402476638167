"""Provenance and licence of source files, per file collection.

A file installed by a Debian package belongs to that package's collection; its licence is the
``License:`` of the ``Files: *`` stanza of ``/usr/share/doc/<package>/copyright`` (machine-readable
DEP-5), or a licence recognised in the file's text. A file no package owns (this interpreter's
standard library under pyenv, a fixture tree, an unpacked archive) belongs to the nearest directory
above it holding a ``LICENSE``/``COPYING``/``copyright`` file, whose text names the licence.

    index = LicenceIndex(default="GPL-2.0")
    index.collection("/usr/include/stdio.h")
    # -> Collection(name='deb:libc6-dev', licence='LGPL-2.1+ ...', licence_file='/usr/share/doc/libc6-dev/copyright')
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re

DPKG_INFO = "/var/lib/dpkg/info"
DOC_ROOT = "/usr/share/doc"
_LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING", "COPYING.txt", "copyright",
                  "LICENSE-MIT", "LICENSE-APACHE")

# (pattern in a licence text, short name); the first match wins.
_KNOWN = [
    (r"PYTHON SOFTWARE FOUNDATION LICENSE", "PSF-2.0"),
    (r"GNU AFFERO GENERAL PUBLIC LICENSE", "AGPL-3.0"),
    (r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 3", "LGPL-3.0"),
    (r"GNU LESSER GENERAL PUBLIC LICENSE|GNU LIBRARY GENERAL PUBLIC LICENSE", "LGPL-2.1"),
    (r"GNU GENERAL PUBLIC LICENSE\s+Version 3", "GPL-3.0"),
    (r"GNU GENERAL PUBLIC LICENSE\s+Version 2", "GPL-2.0"),
    (r"GNU Free Documentation License", "GFDL-1.3"),
    (r"Apache License,?\s+Version 2\.0", "Apache-2.0"),
    (r"Boost Software License", "BSL-1.0"),
    (r"Mozilla Public License", "MPL-2.0"),
    (r"Artistic License", "Artistic-2.0"),
    (r"Permission is hereby granted, free of charge", "MIT"),
    (r"Redistribution and use in source and binary forms", "BSD-3-Clause"),
    (r"public domain", "public-domain"),
]


@dataclasses.dataclass(frozen=True)
class Collection:
    """A group of files that share provenance and licence."""

    name: str
    """``deb:<package>`` for Debian packages, ``dir:<path>`` for a directory with a licence file."""
    licence: str
    licence_file: str | None


def licence_from_text(text: str) -> str | None:
    """Short licence name recognised in a licence or copyright text, or None."""
    for pat, short in _KNOWN:
        if re.search(pat, text, re.I):
            return short
    return None


def licence_from_copyright(text: str) -> str | None:
    """Licence of a Debian copyright file: the ``Files: *`` stanza's ``License:`` (DEP-5), else guessed."""
    stanzas = re.split(r"\n\s*\n", text)
    for stanza in stanzas:
        if re.search(r"^Files:\s*\*\s*$", stanza, re.M):
            m = re.search(r"^License:\s*(\S.*)$", stanza, re.M)
            if m and _is_licence_name(m.group(1)):
                return m.group(1).strip()
    m = re.search(r"^License:\s*(\S.*)$", text, re.M)
    return m.group(1).strip() if m and _is_licence_name(m.group(1)) else licence_from_text(text)


def _is_licence_name(value: str) -> bool:
    """A DEP-5 licence short name ("GPL-2+", "BSD-3-clause or GPL"), not a sentence of prose."""
    words = value.strip().split()
    prose = {"for", "the", "except", "of", "in", "is", "see", "this", "all", "files", "are", "under", "following"}
    return (0 < len(words) <= 6 and len(value) <= 60 and not value.rstrip().endswith(":")
            and not prose & {w.lower() for w in words})


class LicenceIndex:
    """Maps files to their :class:`Collection` (Debian package, or directory with a licence file)."""

    def __init__(self, default: str, *, dpkg_info: str = DPKG_INFO, doc_root: str = DOC_ROOT) -> None:
        self.default = default
        self.dpkg_info = dpkg_info
        self.doc_root = doc_root
        self._owner: dict[str, str] | None = None
        self._cache: dict[str, Collection] = {}

    def _owners(self) -> dict[str, str]:
        if self._owner is None:
            owner: dict[str, str] = {}
            for lst in sorted(glob.glob(os.path.join(self.dpkg_info, "*.list"))):
                pkg = os.path.basename(lst)[: -len(".list")].split(":", 1)[0]
                try:
                    with open(lst, encoding="utf-8", errors="replace") as f:
                        for line in f:
                            owner.setdefault(line.rstrip("\n"), pkg)
                except OSError:
                    continue
            self._owner = owner
        return self._owner

    def package_of(self, path: str) -> str | None:
        """Debian package that installed ``path`` (also through /usr-merge symlinks), or None."""
        owners = self._owners()
        for p in (path, os.path.realpath(path)):
            if p in owners:
                return owners[p]
            if p.startswith("/usr/") and p[4:] in owners:
                return owners[p[4:]]
        return None

    def _package_collection(self, pkg: str) -> Collection:
        key = "deb:" + pkg
        if key not in self._cache:
            cfile = os.path.join(self.doc_root, pkg, "copyright")
            licence = None
            if os.path.isfile(cfile):
                with open(cfile, encoding="utf-8", errors="replace") as f:
                    licence = licence_from_copyright(f.read())
            if licence is None and os.path.isfile(cfile):
                licence = f"see {cfile}"
            self._cache[key] = Collection(key, licence or self.default, cfile if os.path.isfile(cfile) else None)
        return self._cache[key]

    def _dir_collection(self, path: str) -> Collection:
        d = os.path.dirname(os.path.abspath(path))
        visited: list[str] = []
        col: Collection | None = None
        while col is None:
            if d in self._cache:
                col = self._cache[d]
                break
            visited.append(d)
            for fn in _LICENCE_FILES:
                lf = os.path.join(d, fn)
                if os.path.isfile(lf):
                    with open(lf, encoding="utf-8", errors="replace") as f:
                        text = f.read(200_000)
                    lic = licence_from_copyright(text) if fn == "copyright" else licence_from_text(text)
                    col = Collection("dir:" + d, lic or self.default, lf)
                    break
            parent = os.path.dirname(d)
            if col is None and parent == d:
                col = Collection("unknown", self.default, None)
            d = parent
        for v in visited:  # every directory on the way shares the answer
            self._cache[v] = col
        return col

    def collection(self, path: str) -> Collection:
        """Collection of the file (or archive) at ``path``: its package, else its licence directory."""
        pkg = self.package_of(path)
        return self._package_collection(pkg) if pkg else self._dir_collection(path)
