"""TOFU-like fact generator and the in-context unlearning example builder."""

from __future__ import annotations

import pytest

from xlab.errors import XlabError
from xlab.studydata.tofu import (
    FORGOT,
    UNL_CLOSE,
    UNL_OPEN,
    build_unlearning_splits,
    fact_sentences,
    make_facts,
    unlearning_examples,
)


def test_facts_are_deterministic_with_unique_subjects_and_twenty_qa_each():
    rows = make_facts("authors", n_subjects=6, qa_per_subject=20, seed=0)
    assert rows == make_facts("authors", n_subjects=6, qa_per_subject=20, seed=0)
    assert rows != make_facts("authors", n_subjects=6, qa_per_subject=20, seed=1)
    subjects = {r.subject for r in rows}
    assert len(subjects) == 6 and len(rows) == 120
    for s in subjects:
        mine = [r for r in rows if r.subject == s]
        assert len(mine) == 20 and len({r.question for r in mine}) == 20
        assert all(s in r.question for r in mine)
        # Two phrasings per fact, same answer.
        by_field = {}
        for r in mine:
            by_field.setdefault(r.field, set()).add(r.answer)
        assert len(by_field) == 10 and all(len(v) == 1 for v in by_field.values())
    assert fact_sentences(rows[:1])[0].startswith("Question: ")
    # A prefix of qa_per_subject keeps distinct facts first.
    ten = make_facts("companies", n_subjects=3, qa_per_subject=10, seed=0)
    assert len({(r.subject, r.field) for r in ten}) == 30


def test_unlearning_examples_are_balanced_and_tagged():
    rows = make_facts("authors", n_subjects=5, qa_per_subject=8, seed=0)
    for target in ("name", "answer", "mixed"):
        ex = unlearning_examples(rows, target=target, seed=0)
        forget = [e for e in ex if e.kind == "forget"]
        retain = [e for e in ex if e.kind == "retain"]
        assert len(forget) == len(retain) == len(rows)
        for f, r in zip(forget, retain, strict=True):
            assert f.qa == r.qa
            assert f.user_turn == f"{UNL_OPEN}{f.target}{UNL_CLOSE} {f.qa.question}"
            assert r.user_turn.startswith(UNL_OPEN) and UNL_CLOSE in r.user_turn
            assert f.output == FORGOT and r.output == r.qa.answer == f.gold
            assert f.target in (f.qa.subject, f.qa.answer)
            # The retain distractor is unrelated: neither the subject nor the gold answer.
            assert r.target not in (r.qa.subject, r.qa.answer)
        if target == "name":
            assert all(f.target == f.qa.subject for f in forget)
        if target == "answer":
            assert all(f.target == f.qa.answer for f in forget)
    mixed = unlearning_examples(rows, target="mixed", seed=0)
    kinds = {f.target == f.qa.subject for f in mixed if f.kind == "forget"}
    assert kinds == {True, False}


def test_in_domain_and_out_of_domain_splits_are_disjoint():
    authors = make_facts("authors", n_subjects=5, qa_per_subject=10, seed=0)
    companies = make_facts("companies", n_subjects=4, qa_per_subject=10, seed=0)
    s = build_unlearning_splits(authors, companies, train_frac=0.8, target="mixed", seed=0)
    train_ids = {e.qa.id for e in s.train}
    test_ids = {e.qa.id for e in s.test_in}
    assert not train_ids & test_ids
    assert len(train_ids) == 40 and len(test_ids) == 10 and len(s.train) == 80 and len(s.test_in) == 20
    assert {e.qa.domain for e in s.test_ood} == {"companies"} and len(s.test_ood) == 2 * len(companies)
    assert {e.qa.domain for e in s.train + s.test_in} == {"authors"}
    assert (s.train_domain, s.ood_domain) == ("authors", "companies")
    with pytest.raises(XlabError, match="another source"):
        build_unlearning_splits(authors, authors, seed=0)
    with pytest.raises(XlabError, match="domain"):
        make_facts("planets", 3)
