"""Offline multilingual sentences: six languages with correct labels (checked with py3langid)."""

import pytest

from xlab.errors import XlabError
from xlab.studydata.multilingual import (
    LANGUAGES,
    REQUIRED_DOMAINS,
    clean_message,
    group_by_language,
    identify,
    load_multilingual,
    provenance,
    wordfreq_sentences,
)


def test_clean_message_strips_formats_and_accelerators():
    assert clean_message("cannot open %s: %1$d _File {name}\n") == "cannot open: File"
    assert clean_message("ファイル(_F) を開く") == "ファイル を開く"


def test_gettext_catalogs_of_required_packages_give_six_labelled_languages():
    sents = load_multilingual(60, source="gettext", domains=REQUIRED_DOMAINS, min_per_language=60, seed=1)
    groups = group_by_language(sents)
    assert set(groups) == set(LANGUAGES) and all(len(v) == 60 for v in groups.values())
    assert all(s.source.startswith("gettext:") for s in sents)
    # Labels agree with an independent identifier on almost every sentence (zh/ja by script).
    for lang, group in groups.items():
        agree = sum(identify(s.text) == lang for s in group) / len(group)
        assert agree >= 0.95, (lang, agree)
    assert provenance(sents)["de"] and len({s.text for s in sents}) == len(sents)


def test_wordfreq_fallback_and_auto_top_up():
    ws = wordfreq_sentences("fr", 20, seed=0)
    assert len(ws) == 20 and sum(identify(s.text) == "fr" for s in ws) >= 18
    sents = load_multilingual(10, source="auto", languages=("ja", "es"), roots=("/nonexistent",))
    assert {s.source for s in sents} == {"wordfreq"} and len(sents) == 20


def test_missing_catalogs_are_a_clear_error():
    with pytest.raises(XlabError, match="apt-get install"):
        load_multilingual(10, source="gettext", roots=("/nonexistent",), languages=("de",))
    with pytest.raises(XlabError, match="unknown language"):
        load_multilingual(10, languages=("xx",))
