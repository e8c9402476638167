"""AST depth (xlab.analysis.ast_depth): hand-counted depths for Python and tree-sitter languages,
parse failures, buckets, corpus statistics and the Python ablations."""

import ast
import math

import datasets
import pytest

from xlab.analysis.ast_depth import (
    ast_depth,
    corpus_depth_stats,
    depth_bucket,
    depth_buckets,
    depth_score_correlation,
    randomize_identifiers,
    scramble_identifiers,
    strip_comments_docstrings,
)


@pytest.mark.parametrize(("source", "depth"), [
    ("", 0),  # Module alone
    ("pass\n", 1),  # Module -> Pass
    ("x = 1\n", 3),  # Module -> Assign -> Name -> Store
    ("def f(x):\n    return x + 1\n", 5),  # Module -> FunctionDef -> Return -> BinOp -> Name -> Load
    ("class A:\n    def m(self):\n        return self.v\n", 6),  # ... Return -> Attribute -> Name -> Load
    ("f(g(h(1)))\n", 6),  # Module -> Expr -> Call -> Call -> Call -> Constant
])
def test_python_depths_counted_by_hand(source, depth):
    assert ast_depth(source, "python") == depth


@pytest.mark.parametrize(("language", "source", "depth"), [
    # translation_unit -> declaration -> identifier
    ("c", "int x;", 2),
    # translation_unit -> function_definition -> compound_statement -> return_statement -> number_literal
    ("c", "int main() { return 0; }", 4),
    # ... function_definition -> function_declarator -> parameter_list -> parameter_declaration -> primitive_type
    ("c", "int main(void) { return 0; }", 5),
    # program -> class_declaration -> class_body -> method_declaration -> block -> return_statement -> literal
    ("java", "class A { int f() { return 1; } }", 6),
    # program -> function_declaration -> statement_block -> return_statement -> binary_expression -> identifier
    ("javascript", "function f(x) { return x + 1; }", 5),
    # source_file -> function_item -> block -> integer_literal
    ("rust", "fn f() -> i32 { 1 }", 3),
    # program -> command -> command_name -> word
    ("shell", "echo hi\n", 3),
])
def test_tree_sitter_depths_counted_by_hand(language, source, depth):
    assert ast_depth(source, language) == depth


def test_haskell_literate_and_tabs_parse_like_plain_code():
    plain = "module M where\nf x = x + 1\n"
    assert ast_depth(plain, "haskell") == 6
    assert ast_depth("Prose first.\n\n> module M where\n> f x = x + 1\n", "haskell") == 6
    assert ast_depth("Prose.\n\\begin{code}\nmodule M where\nf x = x + 1\n\\end{code}\n", "haskell") == 6
    assert ast_depth("module M (\n\tf\n  ) where\nf x = x\n", "haskell") is not None  # tab = 8 columns


@pytest.mark.parametrize(("language", "source"), [
    ("python", "def f(:\n"), ("c", "int main( {"), ("java", "class { }}"), ("go", "func ( {"),
    ("haskell", "f x = = ="),
])
def test_parse_failure_is_none(language, source):
    assert ast_depth(source, language) is None


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="no parser"):
        ast_depth("x", "cobol")


def test_failure_does_not_carry_over_between_files():
    deep = "f(g(h(i(j(k(l(m(1))))))))\n"  # innermost Call at 9, its Name at 10, Load at 11
    docs = [deep, "def broken(:\n", "pass\n"]
    stats = corpus_depth_stats(docs, "python")
    assert [ast_depth(d, "python") for d in docs] == [11, None, 1]
    assert stats["parsed"] == 2 and stats["parse_rate"] == pytest.approx(2 / 3)
    assert stats["mean"] == pytest.approx(6.0) and stats["max"] == 11


def test_buckets_have_strict_bounds():
    assert [depth_bucket(d) for d in (0, 1, 7, 8, 9, 11, 12, 13, 19, 20, None)] == [
        None, "shallow", "shallow", None, "middle", "middle", None, "deep", "deep", None, None]


def _nested(depth_calls: int) -> str:
    return "f(" * depth_calls + "1" + ")" * depth_calls + "\n"  # depth = depth_calls + 3


def test_corpus_stats_and_bucket_datasets():
    texts = [_nested(2), _nested(3), _nested(6), _nested(7), _nested(12), "def (:\n"]
    ds = datasets.Dataset.from_dict({"text": texts})
    stats = corpus_depth_stats(datasets.DatasetDict({"train": ds}), "python")
    assert stats["docs"] == 6 and stats["parsed"] == 5
    assert stats["shares"] == pytest.approx({"shallow": 0.4, "middle": 0.4, "deep": 0.2, "none": 0.0})
    assert stats["median"] == 9 and stats["p90"] == pytest.approx(13.0)  # depths 5, 6, 9, 10, 15
    assert corpus_depth_stats(ds, "python", max_docs=2)["docs"] == 2
    buckets = depth_buckets(ds, "python")
    assert [len(buckets[b]) for b in ("shallow", "middle", "deep")] == [2, 2, 1]
    assert list(buckets["deep"]["depth"]) == [15]
    empty = corpus_depth_stats(["def (:"], "python")
    assert empty["parse_rate"] == 0.0 and math.isnan(empty["mean"])


def test_ablations_keep_code_valid():
    src = ('"""Module doc."""\n\n# a comment\ndef area(width, height):\n    """Doc."""\n'
           '    result = width * height  # inline\n    return result\n\nprint(area(2, 3))\n')
    stripped = strip_comments_docstrings(src)
    assert "comment" not in stripped and "doc" not in stripped.lower() and "area" in stripped
    ast.parse(stripped)
    scrambled = scramble_identifiers(src, seed=3)
    tree = ast.parse(scrambled)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)} | {
        a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    assert names == {"area", "width", "height", "result", "print"}  # a permutation of the same names
    assert scrambled != ast.unparse(ast.parse(src)) + "\n"
    assert "print(" in scrambled  # builtins are kept
    randomized = randomize_identifiers(src, seed=3)
    assert "width" not in randomized and "print(" in randomized
    assert ast_depth(randomized, "python") == ast_depth(scrambled, "python") == ast_depth(src, "python")
    assert strip_comments_docstrings("def (:") is None


def test_depth_score_correlation():
    r = depth_score_correlation({"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 0.1, "b": 0.2, "c": 0.4, "d": 0.3, "e": 1})
    assert r["n"] == 4 and r["spearman"] == pytest.approx(0.8) and 0 < r["pearson"] < 1
    assert math.isnan(depth_score_correlation({"a": 1}, {"a": 2})["pearson"])
