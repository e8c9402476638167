"""FLD-style generator: every label confirmed by the prover, balance, depth, determinism, the reader."""

import json
from collections import Counter
from pathlib import Path

import pytest

from xlab.errors import XlabError
from xlab.evals import LABELS, LogicExample, fld_examples, load_fld, solve_fld
from xlab.evals.fld_text import nonsense_words
from xlab.evals.logic import parse

FIXTURES = Path(__file__).parents[1] / "fixtures" / "evals"


@pytest.fixture(scope="module")
def items():
    return fld_examples(300, depth=(1, 3), seed=0)


def test_every_label_agrees_with_the_prover(items):
    assert len(items) == 300
    assert all(solve_fld(e) == e.label for e in items)


def test_labels_balanced_and_depth_in_range(items):
    counts = Counter(e.label for e in items)
    assert set(counts) == set(LABELS) and all(c == 100 for c in counts.values())
    depths = Counter(e.depth for e in items)
    assert set(depths) == {1, 2, 3} and min(depths.values()) > 50
    assert max(e.num_distractors for e in items) > 10 and min(e.num_distractors for e in items) == 0


def test_hypothesis_polarity_does_not_give_the_label_away(items):
    # A negated hypothesis should be about as common under every label (roots have random polarity).
    neg_share = {lab: sum(" not " in e.hypothesis or e.hypothesis.startswith("nothing")
                          for e in items if e.label == lab) / 100 for lab in LABELS}
    assert max(neg_share.values()) - min(neg_share.values()) < 0.3, neg_share


def test_deterministic_given_seed():
    a, b, c = fld_examples(20, seed=7), fld_examples(20, seed=7), fld_examples(20, seed=8)
    assert [e.prompt_serial for e in a] == [e.prompt_serial for e in b]
    assert [e.prompt_serial for e in a] != [e.prompt_serial for e in c]


def test_deep_proofs_and_no_distractors():
    deep = fld_examples(30, depth=(5, 8), branches=(0, 0), distractors=(0, 0), seed=3)
    assert all(5 <= e.depth <= 8 and e.num_distractors == 0 for e in deep)
    assert all(solve_fld(e) == e.label for e in deep)


def test_serialisation_matches_the_spec_format():
    e = LogicExample(hypothesis="the gloater is a lummox", label="PROVED", depth=1,
                     facts=["if something is not a pentagon then it is a lummox", "the gloater is not a pentagon",
                            "the wigwam is a pentagon"])
    assert e.prompt_serial == ("$hypothesis$ = the gloater is a lummox. ; $context$ = sent1: if something is not "
                               "a pentagon then it is a lummox. sent2: the gloater is not a pentagon. sent3: the "
                               "wigwam is a pentagon. ; $proof$ =")
    assert e.prompt.startswith("Based on the provided facts ($context$), either prove or disprove the hypothesis "
                               "or state that it is unknown. $hypothesis$ = ")


def test_text_uses_nonsense_words_and_formulas_parse(items):
    e = items[0]
    vocab = set(nonsense_words())
    content = {w for f in e.facts for w in f.split()} - {"the", "is", "a", "an", "not", "if", "then", "it",
                                                         "something", "everything", "that", "and", "or",
                                                         "either", "nothing", "true"}
    assert content and content <= vocab
    assert len(e.facts) == len(e.facts_formula)
    for f in e.facts_formula:
        parse(f)
    assert e.proof and (e.label == "UNKNOWN") == (e.proof == "__UNKNOWN__")


@pytest.mark.parametrize("kwargs,field", [({"depth": (0, 2)}, "depth"), ({"distractors": (5, 2)}, "distractors"),
                                          ({"n": -1}, "n")])
def test_bad_arguments(kwargs, field):
    args = {"n": 3, **kwargs}
    with pytest.raises(XlabError, match=field):
        fld_examples(args.pop("n"), **args)


def test_load_real_fld_format(tmp_path):
    items = load_fld(FIXTURES / "fld_sample.jsonl")
    assert [e.label for e in items] == ["PROVED", "DISPROVED", "UNKNOWN", "PROVED"]
    assert items[0].facts[1] == "the gloater is not a pentagon" and items[0].depth == 1
    assert items[0].prompt_serial.startswith("$hypothesis$ = the gloater is a lummox. ; $context$ = sent1:")
    assert [solve_fld(e) for e in items] == [e.label for e in items]  # the prover reads FLD's formulas
    # The same records as a JSON list, and a record missing its label.
    records = [json.loads(line) for line in (FIXTURES / "fld_sample.jsonl").read_text().splitlines()]
    (tmp_path / "fld.json").write_text(json.dumps(records))
    assert len(load_fld(tmp_path / "fld.json")) == 4
    del records[0]["world_assump_label"]
    (tmp_path / "bad.json").write_text(json.dumps(records))
    with pytest.raises(XlabError, match="world_assump_label"):
        load_fld(tmp_path / "bad.json")
    with pytest.raises(XlabError, match="not found"):
        load_fld(tmp_path / "missing.jsonl")


def test_unknown_items_do_not_give_themselves_away(items):
    # The hypothesis's predicates are always mentioned in the facts, whatever the label.
    from xlab.evals.logic import predicates

    for e in items:
        mentioned = set().union(*(predicates(parse(f)) for f in e.facts_formula))
        assert predicates(parse(e.hypothesis_formula)) <= mentioned, (e.label, e.hypothesis_formula)
