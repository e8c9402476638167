"""The registry of offline text corpora: what each corpus holds and where a Debian system keeps it.

Each :class:`CorpusSpec` names a corpus (``"python"``, ``"man-en"``, ...), its kind (``"code"`` or
``"nl"``), its language (a programming language for code, an ISO 639 code for natural language), the
places Debian installs its files (globs; ``{python_stdlib}`` is this interpreter's standard library),
how to turn a file into text (plain source, rendered manual page, GNU info, gettext catalog, ...),
the Debian package(s) that install it and the licence that applies when a file's own package does
not say (per-file licences come from ``/usr/share/doc/<package>/copyright``, see ``licence.py``).

    from xlab.corpora import CORPORA, SMOKE_CORPORA, debian_packages
    debian_packages(["java", "go"])  # -> ['golang-1.19-src', 'openjdk-17-source']
"""

from __future__ import annotations

import dataclasses
import sysconfig
from collections.abc import Iterable
from typing import Literal

from xlab.errors import XlabError

Kind = Literal["code", "nl"]
Extract = Literal["plain", "man", "info", "gettext", "html", "dictd", "doc"]


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """One offline corpus: its files on a Debian system and how to read them."""

    name: str
    kind: Kind
    language: str
    """Programming language (as :func:`~xlab.corpora.detect.code_language` names it) or ISO 639 code."""
    roots: tuple[str, ...]
    """Directories, files or archives (globs allowed) that hold the corpus."""
    packages: tuple[str, ...]
    """Debian packages that install the roots (``apt-get install`` them to build the corpus)."""
    licence: str
    """Licence when a file's package gives none (summary; per-file licences are recorded too)."""
    extract: Extract = "plain"
    """How a file becomes text: plain source, man page, GNU info, gettext catalog, HTML, dictd, doc."""
    exclude: tuple[str, ...] = ()
    """Path substrings to skip (test data in other languages, vendored copies, ...)."""
    check_language: bool = False
    """Drop documents whose detected natural language differs (py3langid), e.g. untranslated pages."""
    max_doc_bytes: int = 1_000_000
    """Files larger than this (after extraction) are dropped as data dumps or bundles."""
    description: str = ""
    max_collection_share: float = 1.0
    """Cap on the share of the byte budget one file collection (Debian package) may fill, so that one
    package's thousands of generated pages (e.g. gcloud's man pages) cannot dominate a corpus."""

    def resolved_roots(self) -> tuple[str, ...]:
        """Roots with ``{python_stdlib}`` replaced by this interpreter's standard library directory."""
        stdlib = sysconfig.get_paths()["stdlib"]
        return tuple(r.replace("{python_stdlib}", stdlib) for r in self.roots)


def _code(name, language, roots, packages, licence, exclude=(), description="", max_doc_bytes=1_000_000):
    return CorpusSpec(name, "code", language, tuple(roots), tuple(packages), licence, "plain",
                      tuple(exclude), False, max_doc_bytes, description)


def _nl(name, language, roots, packages, licence, extract, exclude=(), description="", check_language=True,
        max_collection_share=1.0):
    return CorpusSpec(name, "nl", language, tuple(roots), tuple(packages), licence, extract,
                      tuple(exclude), check_language, 500_000, description, max_collection_share)


_CODE = [
    _code("python", "python", ["{python_stdlib}"], ["libpython3.11-stdlib"], "PSF-2.0",
          exclude=["/site-packages/", "/dist-packages/", "/lib2to3/tests/data/", "/test/badsyntax_",
                   "/test/bad_coding"],
          description="The running interpreter's standard library (no extra package needed)."),
    _code("c", "c", ["/usr/include", "/usr/src/linux-source-*.tar.xz", "/usr/src/linux-source-*.tar.bz2"],
          ["libc6-dev", "linux-libc-dev", "linux-source-6.1"], "GPL-2.0 (kernel); LGPL-2.1+ (glibc headers)",
          exclude=["/include/c++/", "/include/boost/", "/Documentation/"],
          description="C headers under /usr/include and the Linux kernel sources (tarball)."),
    _code("cpp", "cpp", ["/usr/include/c++", "/usr/include/boost"], ["libstdc++-12-dev", "libboost1.74-dev"],
          "GPL-3.0+ with GCC runtime exception (libstdc++); BSL-1.0 (Boost)",
          description="libstdc++ headers (extensionless, detected by modeline) and Boost headers."),
    _code("java", "java", ["/usr/lib/jvm/openjdk-*/lib/src.zip", "/usr/lib/jvm/java-*-openjdk-*/lib/src.zip"],
          ["openjdk-17-source"], "GPL-2.0 with Classpath exception",
          description="The OpenJDK class library sources (members of src.zip)."),
    _code("go", "go", ["/usr/share/go-*/src", "/usr/lib/go-*/src"], ["golang-1.19-src"], "BSD-3-Clause",
          exclude=["/testdata/"], description="The Go standard library and toolchain sources."),
    _code("rust", "rust", ["/usr/src/rustc-*/library", "/usr/src/rustc-*/compiler"], ["rust-src"],
          "MIT OR Apache-2.0", exclude=["/tests/ui/", "/test/ui/"],
          description="Rust standard library and compiler sources."),
    _code("javascript", "javascript", ["/usr/share/nodejs", "/usr/lib/node_modules"],
          ["node-typescript", "nodejs"], "Apache-2.0 (TypeScript); Artistic-2.0 (npm)", max_doc_bytes=2_000_000,
          description="JavaScript shipped by node packages (the TypeScript compiler, npm)."),
    _code("typescript", "typescript", ["/usr/share/nodejs"], ["node-typescript"], "Apache-2.0",
          max_doc_bytes=2_000_000, description="TypeScript declaration files of the TypeScript compiler."),
    _code("perl", "perl", ["/usr/share/perl", "/usr/share/perl5", "/usr/lib/x86_64-linux-gnu/perl-base",
                           "/usr/lib/x86_64-linux-gnu/perl5"], ["perl-modules-5.36", "perl-base"],
          "GPL-1.0+ OR Artistic-1.0", description="Perl core and Debian Perl modules."),
    _code("ruby", "ruby", ["/usr/lib/ruby"], ["libruby3.1"], "Ruby OR BSD-2-Clause",
          description="The Ruby standard library and default gems."),
    _code("erlang", "erlang", ["/usr/lib/erlang/lib"], ["erlang-src"], "Apache-2.0",
          description="Erlang/OTP application sources."),
    _code("elisp", "elisp", ["/usr/share/emacs/*/lisp"], ["emacs-el"], "GPL-3.0+",
          description="Emacs Lisp sources of GNU Emacs (gzip-compressed .el.gz)."),
    _code("shell", "shell", ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/share", "/etc"], ["bash", "dash"],
          "per package (see the file's copyright)", exclude=["/usr/share/doc/"],
          description="Shell scripts found by shebang or .sh extension (no extra package needed)."),
    _code("haskell", "haskell", ["/usr/lib/hugs", "/usr/lib/ghc"], ["hugs"], "BSD-3-Clause",
          description="The Hugs Haskell libraries."),
    _code("php", "php", ["/usr/share/php"], ["php-pear"], "PHP-3.01 OR BSD-2-Clause",
          description="PEAR PHP libraries."),
]

_NL = [
    _nl("man-en", "en", ["/usr/share/man/man[1-9]*"], ["man-db", "groff-base", "manpages", "manpages-dev"],
        "per package (see the file's copyright)", "man", max_collection_share=0.1,
        description="English manual pages rendered to text with groff (no extra package needed)."),
    _nl("doc-en", "en", ["/usr/share/doc"], ["(every installed package)"],
        "per package (see the file's copyright)", "doc", max_collection_share=0.1,
        description="READMEs, NEWS, upstream change logs and text/HTML docs of installed packages."),
    _nl("info-en", "en", ["/usr/share/info"],
        ["coreutils", "findutils", "diffutils", "grep", "sed", "gzip", "texinfo", "bash-doc", "gnupg"],
        "GFDL-1.3+ (most GNU manuals)", "info", description="GNU info manuals as text."),
    _nl("gcide-en", "en", ["/usr/share/dictd/gcide.dict.dz", "/usr/share/dictd/gcide.dict"], ["dict-gcide"],
        "GPL-3.0+ (GCIDE, from Webster's 1913)", "dictd",
        description="The Collaborative International Dictionary of English, entries grouped by headword."),
    _nl("kernel-doc-en", "en", ["/usr/share/doc/linux-doc-*/Documentation", "/usr/src/linux-source-*.tar.xz"],
        ["linux-source-6.1"], "GPL-2.0", "plain",
        description="Linux kernel Documentation/ (reStructuredText)."),
]
_MAN_LANGS = {"de": "manpages-de", "fr": "manpages-fr", "es": "manpages-es", "ja": "manpages-ja",
              "zh": "manpages-zh", "ru": "manpages-ru", "pl": "manpages-pl", "it": "manpages-it"}
for _lang, _pkg in _MAN_LANGS.items():
    _dirs = [f"/usr/share/man/{_lang}", f"/usr/share/man/{_lang}.UTF-8"] + (
        ["/usr/share/man/zh_CN", "/usr/share/man/zh_TW"] if _lang == "zh" else [])
    _NL.append(_nl(f"man-{_lang}", _lang, _dirs, ["man-db", "groff-base", _pkg], "GPL-2.0+ (translations)",
                   "man", description=f"Translated manual pages ({_lang}) rendered with groff."))
_DEBREF_LANGS = {"en": "debian-reference-en", "de": "debian-reference-de", "fr": "debian-reference-fr",
                  "es": "debian-reference-es", "it": "debian-reference-it", "ja": "debian-reference-ja",
                  "pt": "debian-reference-pt", "zh": "debian-reference-zh-cn"}
for _lang, _pkg in _DEBREF_LANGS.items():
    _NL.append(_nl(f"debref-{_lang}", _lang, ["/usr/share/debian-reference"], [_pkg], "GPL-2.0+", "html",
                   description=f"The Debian Reference ({_lang}), HTML chapters as text."))
_GETTEXT_LANGS = ("de", "fr", "es", "ja", "zh", "ru", "pt", "it")
for _lang in _GETTEXT_LANGS:
    _dirs = [f"/usr/share/locale/{_lang}/LC_MESSAGES", f"/usr/share/locale/{_lang}_*/LC_MESSAGES",
             f"/usr/share/locale-langpack/{_lang}/LC_MESSAGES"]
    _NL.append(_nl(f"gettext-{_lang}", _lang, _dirs, ["(every installed package with translations)"],
                   "per package (see the file's copyright)", "gettext",
                   description=f"Translated message catalogs (.mo) of installed programs ({_lang}), "
                               "one document per catalog (no extra package needed)."))

CORPORA: dict[str, CorpusSpec] = {s.name: s for s in _CODE + _NL}
"""Every offline corpus by name."""

CODE_CORPORA: tuple[str, ...] = tuple(s.name for s in _CODE)
NL_CORPORA: tuple[str, ...] = tuple(s.name for s in _NL)

SMOKE_CORPORA: tuple[str, str] = ("python", "man-en")
"""One code and one English corpus present on a fresh machine of this kind without extra packages:
the interpreter's own standard library (~30 MB of .py) and the English manual pages of the base
system (~90 MB compressed roff; groff-base and man-db are in the image, and a pure-Python roff
reader takes over when groff is missing)."""


CORPUS_GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(CORPORA), "code": CODE_CORPORA, "nl": NL_CORPORA, "smoke": SMOKE_CORPORA,
    "english": tuple(s.name for s in _NL if s.language == "en"),
    "multilingual": tuple(s.name for s in _NL if s.language != "en"),
}
"""Names that stand for several corpora in :func:`expand_names` (and the command lines)."""


def expand_names(names: Iterable[str]) -> list[str]:
    """Corpus names with group names (:data:`CORPUS_GROUPS`) expanded, each once, in order."""
    out: list[str] = []
    for n in names:
        for m in CORPUS_GROUPS.get(n, (n,)):
            if m not in out:
                out.append(m)
    return out


def get_spec(name: str) -> CorpusSpec:
    """The spec of corpus ``name``; unknown names are an :class:`XlabError` listing the known ones."""
    if name not in CORPORA:
        raise XlabError(f"unknown corpus {name!r}; known corpora: {', '.join(sorted(CORPORA))} "
                        f"(groups: {', '.join(CORPUS_GROUPS)})")
    return CORPORA[name]


def debian_packages(names: Iterable[str]) -> list[str]:
    """Debian packages to ``apt-get install`` for the named corpora or groups (sorted, deduplicated).

    Placeholders such as ``(every installed package)`` are left out: those corpora read whatever is
    installed. Unknown corpus names raise :class:`XlabError`.
    """
    pkgs = {p for n in expand_names(names) for p in get_spec(n).packages if not p.startswith("(")}
    return sorted(pkgs)
