"""Offline multilingual sentences (en, de, fr, es, zh, ja) for the language-specific-neurons study.

Two sources, both on the machine without any download:

``gettext`` (default)
    The compiled message catalogs (``/usr/share/locale/<lang>/LC_MESSAGES/*.mo``) that Debian
    packages install: every catalog maps an English message (``msgid``) to its translation
    (``msgstr``), so one catalog gives parallel sentences in all six languages with the same content.
    The catalogs are parsed with the standard library (:class:`gettext.GNUTranslations`). Messages are
    cleaned (format specifiers such as ``%s``/``%1$d``/``{name}``, markup, menu accelerators and
    control characters removed), kept when they have 4-40 words (English side; 6-120 characters for
    zh/ja), and kept only when ``py3langid`` restricted to the six languages labels the text with the
    catalog's language (this drops untranslated and mixed-language entries). Each sentence records its
    provenance (the catalog's text domain, e.g. ``coreutils``). Licence: each catalog carries the
    licence of its package (mostly GPL/LGPL); the platform reads them locally as research data and
    ships none of their text.

    Every Debian 12 system has the catalogs of its *required* packages (apt, bash, coreutils,
    diffutils, dpkg, findutils, grep, libpam-runtime, login, sed, tar): :data:`REQUIRED_DOMAINS`, 2,200-5,000
    usable sentences per language after filtering, enough for the smoke and default runs (not on "slim" container
    images, which delete ``/usr/share/locale``). More come with e.g. ``gettext``, ``libglib2.0-data``,
    ``libgtk-3-common``, ``iso-codes``, ``gnupg-l10n``, ``systemd``, ``man-db``, ``wget``,
    ``libc-l10n`` and ``manpages-{de,fr,es,ja,zh}`` (translated manual pages, not read here).

``wordfreq``
    No system catalogs needed (PyPI package ``wordfreq``, data under CC-BY-SA 4.0): pseudo-sentences
    of 8-16 words drawn from each language's frequency list with Zipf weights. They carry the
    language's vocabulary but not its syntax; use them only where no catalogs exist.

    sents = load_multilingual(per_language=500, seed=0)          # list[Sentence]
    by_lang = group_by_language(sents)                            # {"de": [...], ...}
"""

from __future__ import annotations

import dataclasses
import gettext
import glob
import os
import random
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from xlab.errors import XlabError

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ja")
"""The six languages of the study (ISO 639-1, as py3langid names them)."""

# Locale directories read for each language, in order (Simplified Chinese first).
LOCALE_DIRS: dict[str, tuple[str, ...]] = {
    "de": ("de",), "fr": ("fr",), "es": ("es",), "zh": ("zh_CN", "zh_TW", "zh_HK"), "ja": ("ja",),
}
LOCALE_ROOTS: tuple[str, ...] = ("/usr/share/locale", "/usr/local/share/locale")

REQUIRED_DOMAINS: tuple[str, ...] = (
    "apt", "bash", "coreutils", "diffutils", "dpkg", "findutils", "grep", "Linux-PAM", "shadow", "sed", "tar",
)
"""Text domains of the catalogs that Debian 12's *required* packages install (present on every system)."""

SOURCES = ("gettext", "wordfreq", "auto")


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One sentence with its language and where it came from."""

    text: str
    lang: str
    source: str
    """e.g. ``gettext:coreutils`` or ``wordfreq``."""
    pair_id: int = -1
    """Index of the English message it translates (gettext); -1 when not parallel."""


_FORMAT = re.compile(
    r"%(\d+\$)?[-+ #0']*(\*|\d+)?(\.(\*|\d+))?(hh|h|ll|l|L|q|j|z|t|I64)?[diouxXeEfFgGaAcspnm%]"
    r"|%[A-Za-z]|%\([^)]*\)[a-z]|\{[^{}]*\}|\$\{?\w+\}?|<[^<>]{1,40}>|`|'%s'"
)
_SPACES = re.compile(r"\s+")
_BAD = re.compile(r"[\\/=|@#]|--|\.\.\.\.|[A-Z_]{5,}|https?:|\w\.\w+\(")


def clean_message(text: str) -> str:
    """Strip format specifiers, markup, accelerators and control characters; collapse whitespace."""
    text = _FORMAT.sub(" ", text)
    text = re.sub(r"\(_\w\)|\(&\w\)", "", text)  # CJK accelerators: ファイル(_F)
    text = re.sub(r"(?<!\w)[_&](?=\w)", "", text)  # menu accelerators: _File, &Open
    text = _SPACES.sub(" ", text.replace("\t", " ").replace("\n", " ")).strip(" :;,-")
    return re.sub(r"\s+([,.;:!?])", r"\1", text)


def _english_ok(text: str) -> bool:
    words = text.split()
    return 4 <= len(words) <= 40 and not _BAD.search(text) and sum(c.isalpha() for c in text) > 0.7 * len(
        text.replace(" ", ""))


def _translation_ok(text: str, lang: str) -> bool:
    if _BAD.search(text):
        return False
    if lang in ("zh", "ja"):
        return 6 <= len(text) <= 120
    return 3 <= len(text.split()) <= 50


@lru_cache(maxsize=1)
def language_identifier():
    """py3langid restricted to the six languages, with normalised probabilities."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident.set_languages(list(LANGUAGES))
    return ident


def identify(text: str, min_chars: int = 1) -> str:
    """Language of ``text`` among the six, or ``"und"`` when it has fewer than ``min_chars`` letters."""
    if sum(c.isalpha() for c in text) < min_chars:
        return "und"
    return language_identifier().classify(text)[0]


def catalog_files(lang: str, roots: Sequence[str] = LOCALE_ROOTS, domains: Sequence[str] | None = None) -> list[Path]:
    """The ``.mo`` catalogs installed for ``lang`` (optionally only the given text domains)."""
    files: list[Path] = []
    for root in roots:
        for d in LOCALE_DIRS[lang]:
            for f in sorted(glob.glob(os.path.join(root, d, "LC_MESSAGES", "*.mo"))):
                if domains is None or Path(f).stem in domains:
                    files.append(Path(f))
    return files


def read_catalog(path: Path) -> dict[str, str]:
    """``msgid -> msgstr`` of one compiled catalog (singular messages; context prefixes dropped)."""
    try:
        with open(path, "rb") as fh:
            cat = gettext.GNUTranslations(fh)._catalog  # noqa: SLF001 - the parsed table is the point
    except (OSError, UnicodeDecodeError, ValueError):
        # Some catalogs use legacy charsets or are corrupt; the rest are plenty.
        return {}
    out = {}
    for key, value in cat.items():
        if not isinstance(key, str) or not key or not isinstance(value, str) or not value:
            continue
        out[key.split("\x04", 1)[-1]] = value
    return out


def gettext_sentences(
    languages: Sequence[str] = LANGUAGES,
    *,
    roots: Sequence[str] = LOCALE_ROOTS,
    domains: Sequence[str] | None = None,
    verify: bool = True,
) -> dict[str, list[Sentence]]:
    """All usable catalog sentences per language (English from the msgids), deduplicated.

    ``verify``: keep a sentence only if py3langid (six languages) agrees with its label.
    """
    english: dict[str, tuple[int, str]] = {}  # cleaned msgid -> (pair id, domain)
    out: dict[str, list[Sentence]] = {lang: [] for lang in languages}
    seen: dict[str, set[str]] = {lang: set() for lang in languages}
    for lang in LANGUAGES:
        if lang == "en":
            continue
        for path in catalog_files(lang, roots, domains):
            domain = path.stem
            for msgid, msgstr in read_catalog(path).items():
                en = clean_message(msgid)
                if not _english_ok(en):
                    continue
                tr = clean_message(msgstr)
                if tr == en or not _translation_ok(tr, lang):
                    continue
                if verify and (identify(en) != "en" or identify(tr) != lang):
                    continue
                pair = english.setdefault(en, (len(english), domain))[0]
                if lang in out and tr not in seen[lang]:
                    seen[lang].add(tr)
                    out[lang].append(Sentence(tr, lang, f"gettext:{domain}", pair))
    if "en" in out:
        out["en"] = [Sentence(en, "en", f"gettext:{dom}", pid) for en, (pid, dom) in english.items()]
    return out


def wordfreq_sentences(lang: str, n: int, seed: int = 0, vocab: int = 2000) -> list[Sentence]:
    """``n`` pseudo-sentences of 8-16 words from ``lang``'s wordfreq list, Zipf-weighted."""
    import wordfreq

    words = [w for w in wordfreq.top_n_list(lang, vocab) if any(c.isalpha() for c in w)]
    freqs = wordfreq.get_frequency_dict(lang)  # (word_frequency() would need MeCab/jieba for ja/zh)
    weights = [freqs.get(w, 0.0) for w in words]
    rng = random.Random(f"{seed}:{lang}")
    joiner = "" if lang in ("zh", "ja") else " "
    out = []
    for _ in range(n):
        text = joiner.join(rng.choices(words, weights, k=rng.randint(8, 16)))
        end = "。" if lang in ("zh", "ja") else "."
        out.append(Sentence(text[:1].upper() + text[1:] + end, lang, "wordfreq"))
    return out


def load_multilingual(
    per_language: int = 500,
    *,
    languages: Sequence[str] = LANGUAGES,
    source: str = "auto",
    seed: int = 0,
    domains: Sequence[str] | None = None,
    roots: Sequence[str] = LOCALE_ROOTS,
    min_per_language: int = 1,
) -> list[Sentence]:
    """``per_language`` sentences per language (fewer if the source has fewer), shuffled by ``seed``.

    ``source``: ``gettext`` (system catalogs; error if a language has fewer than ``min_per_language``),
    ``wordfreq`` (pseudo-sentences) or ``auto`` (catalogs, topped up from wordfreq where short).
    """
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        raise XlabError(f"unknown language(s) {unknown}: choose from {', '.join(LANGUAGES)}")
    if source not in SOURCES:
        raise XlabError(f"unknown multilingual source {source!r}: choose from {', '.join(SOURCES)}")
    rng = random.Random(seed)
    pools: dict[str, list[Sentence]] = {lang: [] for lang in languages}
    if source in ("gettext", "auto"):
        pools = _cached_gettext(tuple(languages), tuple(roots), tuple(domains) if domains else None)
    out: list[Sentence] = []
    for lang in languages:
        pool = list(pools.get(lang, []))
        rng.shuffle(pool)
        pool = pool[:per_language]
        if source == "gettext" and len(pool) < min_per_language:
            raise XlabError(
                f"only {len(pool)} gettext sentences for {lang!r} under {', '.join(roots)} "
                f"(need {min_per_language}): install Debian packages with translations (e.g. "
                "`apt-get install gettext libglib2.0-data iso-codes`) or use source='wordfreq'/'auto'"
            )
        if source == "wordfreq" or (source == "auto" and len(pool) < per_language):
            pool += wordfreq_sentences(lang, per_language - len(pool), seed=seed)
        out.extend(pool)
    rng.shuffle(out)
    return out


@lru_cache(maxsize=4)
def _cached_gettext(languages: tuple[str, ...], roots: tuple[str, ...], domains: tuple[str, ...] | None):
    return gettext_sentences(languages, roots=roots, domains=domains)


def group_by_language(sentences: Iterable[Sentence]) -> dict[str, list[Sentence]]:
    """``{lang: [sentences]}`` in first-seen language order."""
    out: dict[str, list[Sentence]] = {}
    for s in sentences:
        out.setdefault(s.lang, []).append(s)
    return out


def provenance(sentences: Iterable[Sentence]) -> dict[str, dict[str, int]]:
    """Sentence counts per language and source (logged with every run)."""
    out: dict[str, dict[str, int]] = {}
    for s in sentences:
        counts = out.setdefault(s.lang, {})
        counts[s.source] = counts.get(s.source, 0) + 1
    return out
