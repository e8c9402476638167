"""The FLD-notation parser and the forward-chaining prover, rule by rule."""

import pytest

from xlab.errors import XlabError
from xlab.evals.logic import FormulaError, neg, parse, prove_strings, saturate, to_str


@pytest.mark.parametrize("text", [
    "{A}{a}", "¬{A}{a}", "(x): {A}x -> {B}x", "(x): ({A}x & ¬{B}x) -> ¬{C}x", "(Ex): {A}x",
    "({A}{a} v {B}{b})", "{A}{a} -> {B}{b}", "(x): {A}x -> {B}{b}", "¬((Ex): {A}x)", "{AB}", "¬({A}{a} & {B}{a})",
])
def test_parse_print_round_trip(text):
    f = parse(text)
    assert parse(to_str(f)) == f


def test_parser_structure_and_double_negation():
    assert parse("(x): {A}x -> {B}x") == ("all", ("imp", ("atom", "A", "x"), ("atom", "B", "x")))
    assert parse("¬¬{A}{a}") == ("atom", "A", "a")
    assert neg(neg(parse("{A}{a} & {B}{a}"))) == parse("{A}{a} & {B}{a}")
    assert parse("{A}{a} & {B}{a} v {C}{a}") == ("or", ("and", ("atom", "A", "a"), ("atom", "B", "a")),
                                                 ("atom", "C", "a"))


@pytest.mark.parametrize("bad", ["{A}{a} ->", "({A}{a}", "{a}{A}", "A & B", ""])
def test_parse_errors_are_clear(bad):
    with pytest.raises(FormulaError, match="cannot parse formula"):
        parse(bad)


@pytest.mark.parametrize("facts,hyp,label", [
    (["(x): {A}x -> {B}x", "{A}{a}"], "{B}{a}", "PROVED"),  # universal modus ponens
    (["(x): {A}x -> {B}x", "{A}{a}"], "{B}{b}", "UNKNOWN"),  # other constant
    (["(x): {A}x -> {B}x", "¬{B}{a}"], "{A}{a}", "DISPROVED"),  # modus tollens
    (["{A}{a} v {B}{a}", "¬{A}{a}"], "{B}{a}", "PROVED"),  # disjunctive syllogism
    (["{A}{a} v {B}{a}", "(x): {A}x -> {C}x", "(x): {B}x -> {C}x"], "{C}{a}", "PROVED"),  # cases
    (["{A}{a} v {B}{a}", "(x): {A}x -> {C}x"], "{C}{a}", "UNKNOWN"),  # one case only
    (["(Ex): {A}x", "(x): {A}x -> {B}{b}"], "{B}{b}", "PROVED"),  # existential elimination
    (["{A}{c}", "(x): {A}x -> {B}{b}"], "{B}{b}", "PROVED"),
    (["{A}{a}"], "(Ex): {A}x", "PROVED"),  # existential introduction
    (["{A}{a}"], "¬((Ex): {A}x)", "DISPROVED"),
    (["{A}{a}", "{B}{a}"], "{A}{a} & {B}{a}", "PROVED"),  # and-introduction
    (["{A}{a}"], "{A}{a} & {B}{a}", "UNKNOWN"),
    (["¬{B}{a}"], "{A}{a} & {B}{a}", "DISPROVED"),  # ¬(A & B) from ¬B
    (["(x): ({A}x & {B}x) -> {C}x", "{A}{a}", "{B}{a}"], "{C}{a}", "PROVED"),  # intro towards a rule
    (["(x): ({A}x v {B}x) -> ¬{C}x", "{B}{a}"], "{C}{a}", "DISPROVED"),  # or-intro, negative rule
    (["{A}{a} & {B}{a}"], "{B}{a}", "PROVED"),  # and-elimination
    (["{A} -> {B}", "{A}"], "{B}", "PROVED"),  # propositional
    (["(x): {A}x -> {B}x", "(x): {B}x -> {C}x", "(x): {C}x -> ¬{D}x", "{A}{a}"], "{D}{a}", "DISPROVED"),
])
def test_prover_rules(facts, hyp, label):
    assert prove_strings(facts, hyp) == label


def test_inconsistent_facts_raise():
    with pytest.raises(XlabError, match="inconsistent facts"):
        prove_strings(["(x): {A}x -> {B}x", "{A}{a}", "¬{B}{a}"], "{C}{a}")
    assert not saturate([parse("{A}{a}"), parse("¬{A}{a}")]).consistent


@pytest.mark.parametrize("facts,hyp,label", [
    (["¬{A}{a}", "¬{B}{a}"], "{A}{a} v {B}{a}", "DISPROVED"),
    (["¬{A}{a}"], "{A}{a} v {B}{a}", "UNKNOWN"),
    (["(x): ¬{A}x"], "(Ex): {A}x", "DISPROVED"),
    (["¬({A}{a} & {B}{a})", "{A}{a}"], "{B}{a}", "DISPROVED"),
    (["¬({A}{a} v {B}{a})"], "{B}{a}", "DISPROVED"),
])
def test_prover_negated_compounds(facts, hyp, label):
    assert prove_strings(facts, hyp) == label
