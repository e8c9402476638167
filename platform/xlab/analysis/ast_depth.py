"""Abstract-syntax-tree depth of source files and code corpora (spec ``lm-pretraining.md``, "AST depth").

Depth is the number of edges from the root (Python's ``Module``) to the deepest node. Python files
are parsed with :mod:`ast` and walked through ``ast.iter_child_nodes`` (so expression contexts such
as ``Load`` count as nodes, as in the study); other languages use the tree-sitter grammars installed
as wheels, walking *named* nodes only (anonymous nodes are punctuation and keywords, which ``ast``
has no nodes for). Literate Haskell is reduced to its code and tabs are expanded (8 columns) first. A file that does not parse (a syntax error, or any tree-sitter ERROR/MISSING
node) has no depth: ``None``. Every file is measured on its own; nothing carries over from the
previous file (the authors' filter reused the last depth after a parse failure; we do not).

Buckets (the study's per-depth models): Shallow 0<d<8, Middle 8<d<12, Deep 12<d<20, with the
spec's strict bounds; depths 8, 12 and >= 20 fall in no bucket.

Ablations for Python: :func:`strip_comments_docstrings` (parse/unparse, docstrings dropped),
:func:`scramble_identifiers` (a file's own identifiers permuted among themselves) and
:func:`randomize_identifiers` (each identifier replaced by a random name).

    ast_depth("def f(x):\\n    return x + 1\\n", "python")   # -> 5
    stats = corpus_depth_stats(load_corpus("data/corpora/python"), "python")
"""

from __future__ import annotations

import ast
import builtins
import functools
import keyword
import math
import random
import string
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

DEPTH_BUCKETS: dict[str, tuple[int, int]] = {"shallow": (0, 8), "middle": (8, 12), "deep": (12, 20)}
"""Bucket name -> (low, high), both exclusive: low < depth < high."""

# language name -> (tree-sitter module, function returning the language pointer)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "c": ("tree_sitter_c", "language"), "cpp": ("tree_sitter_cpp", "language"),
    "java": ("tree_sitter_java", "language"), "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"), "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"), "rust": ("tree_sitter_rust", "language"),
    "ruby": ("tree_sitter_ruby", "language"), "shell": ("tree_sitter_bash", "language"),
    "bash": ("tree_sitter_bash", "language"), "haskell": ("tree_sitter_haskell", "language"),
}
LANGUAGES: tuple[str, ...] = ("python", *_GRAMMARS)


@functools.cache
def _parser(language: str):
    import importlib

    from tree_sitter import Language, Parser

    module, fn = _GRAMMARS[language]
    return Parser(Language(getattr(importlib.import_module(module), fn)()))


def python_depth(tree: ast.AST) -> int:
    """Edges from ``tree`` to its deepest descendant through ``ast.iter_child_nodes``."""
    best = 0
    stack = [(tree, 0)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return best


def _ts_depth(root) -> int:
    best = 0
    stack = [(root, 0)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        stack.extend((child, d + 1) for child in node.named_children)
    return best


def ast_depth(source: str, language: str) -> int | None:
    """Depth of the syntax tree of ``source`` in ``language``; None when it does not parse.

    ``language`` is ``python`` or one of the tree-sitter languages in :data:`LANGUAGES`
    (``shell`` and ``bash`` are the same grammar). Unknown languages raise ``ValueError``.
    """
    if language == "python":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences in old code are not our concern
                tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        try:
            return python_depth(tree)
        except RecursionError:
            return None
    if language not in _GRAMMARS:
        raise ValueError(f"no parser for {language!r}; known: {', '.join(LANGUAGES)}")
    if language == "haskell":
        source = _haskell_source(source)
    tree = _parser(language).parse(source.encode("utf-8", errors="replace"))
    if tree.root_node.has_error:
        return None
    return _ts_depth(tree.root_node)


def _haskell_source(source: str) -> str:
    """Haskell as the grammar expects it: literate files (bird tracks or ``\\begin{code}``) reduced to
    their code, and tabs expanded to multiples of 8 columns as the Haskell report's layout rule says."""
    lines = source.split("\n")
    if any(ln.startswith(">") for ln in lines) and not any(ln.startswith("module ") for ln in lines):
        lines = [ln[2:] if ln.startswith("> ") else ln[1:] if ln.startswith(">") else "" for ln in lines]
    elif "\\begin{code}" in source:
        out, inside = [], False
        for ln in lines:
            if ln.strip().startswith(("\\begin{code}", "\\end{code}")):
                inside = ln.strip().startswith("\\begin{code}")
                out.append("")
            else:
                out.append(ln if inside else "")
        lines = out
    return "\n".join(ln.expandtabs(8) for ln in lines)


def depth_bucket(depth: int | None) -> str | None:
    """The bucket name of ``depth`` (see :data:`DEPTH_BUCKETS`), or None outside every bucket."""
    if depth is None:
        return None
    for name, (lo, hi) in DEPTH_BUCKETS.items():
        if lo < depth < hi:
            return name
    return None


def _texts(dataset, max_docs: int | None) -> list[str]:
    """The first ``max_docs`` texts of a DatasetDict (its train split), a Dataset, or strings."""
    if hasattr(dataset, "keys") and "train" in dataset:
        dataset = dataset["train"]
    if hasattr(dataset, "column_names"):
        n = len(dataset) if max_docs is None else min(len(dataset), max_docs)
        return list(dataset.select(range(n))["text"])
    out = []
    for t in dataset:
        if max_docs is not None and len(out) >= max_docs:
            break
        out.append(t)
    return out


def depth_summary(depths: Iterable[int | None], language: str = "") -> dict:
    """Mean/median/p90/max depth, parse rate and bucket shares (of parsed files) of a list of depths."""
    ds = list(depths)
    ok = np.array([d for d in ds if d is not None], dtype=float)
    out: dict = {"language": language, "docs": len(ds), "parsed": int(ok.size),
                 "parse_rate": float(ok.size / len(ds)) if ds else 0.0}
    if ok.size:
        out.update(mean=float(ok.mean()), median=float(np.median(ok)), p90=float(np.percentile(ok, 90)),
                   max=int(ok.max()), min=int(ok.min()))
    else:
        out.update(mean=math.nan, median=math.nan, p90=math.nan, max=None, min=None)
    buckets = [depth_bucket(int(d)) for d in ok]
    out["shares"] = {name: (buckets.count(name) / ok.size if ok.size else 0.0) for name in DEPTH_BUCKETS}
    out["shares"]["none"] = (buckets.count(None) / ok.size) if ok.size else 0.0
    return out


def corpus_depth_stats(dataset, language: str, *, max_docs: int = 2000) -> dict:
    """Depth statistics of the first ``max_docs`` documents of a corpus (see :func:`depth_summary`)."""
    return depth_summary((ast_depth(t, language) for t in _texts(dataset, max_docs)), language)


def code_corpora_depth_stats(corpora: Mapping[str, Any], *, max_docs: int = 500) -> dict[str, dict]:
    """Depth statistics of the train split of every registered code corpus in ``corpora`` (label ->
    DatasetDict); natural-language corpora and other datasets are left out."""
    from xlab.corpora.spec import CORPORA

    out = {}
    for label, dd in corpora.items():
        spec = CORPORA.get(label)
        if spec is None or spec.kind != "code":
            continue
        try:
            out[label] = corpus_depth_stats(dd["train"], spec.language, max_docs=max_docs)
        except Exception as e:  # no grammar for this language: the relation is drawn for the others
            print(f"[ast_depth] no AST depth for {label}: {type(e).__name__}: {e}", flush=True)
    return out


def depth_buckets(dataset, language: str, *, max_docs: int | None = None) -> dict:
    """Split a corpus into the depth buckets: ``{"shallow": Dataset, "middle": ..., "deep": ...}``.

    ``dataset`` is a ``datasets.Dataset`` (or a DatasetDict, whose train split is used) with a ``text``
    column; a ``depth`` column is added (-1 where the file does not parse). Files outside every bucket
    are left out.
    """
    if hasattr(dataset, "keys") and "train" in dataset:
        dataset = dataset["train"]
    if max_docs is not None:
        dataset = dataset.select(range(min(len(dataset), max_docs)))
    depths = [ast_depth(t, language) for t in dataset["text"]]
    with_depth = dataset.add_column("depth", [-1 if d is None else d for d in depths])
    return {name: with_depth.select([i for i, d in enumerate(depths) if depth_bucket(d) == name])
            for name in DEPTH_BUCKETS}


def depth_score_correlation(depth: Mapping[str, float], score: Mapping[str, float]) -> dict:
    """Pearson and Spearman correlation between a per-corpus depth figure and a per-corpus score."""
    names = sorted(set(depth) & set(score))
    x = np.array([depth[n] for n in names], float)
    y = np.array([score[n] for n in names], float)
    if len(names) < 3 or x.std() == 0 or y.std() == 0:
        return {"corpora": names, "n": len(names), "pearson": math.nan, "spearman": math.nan}

    def ranks(v):
        return np.argsort(np.argsort(v)).astype(float)

    return {"corpora": names, "n": len(names), "pearson": float(np.corrcoef(x, y)[0, 1]),
            "spearman": float(np.corrcoef(ranks(x), ranks(y))[0, 1])}


# ---------------------------------------------------------------- ablations (Python)

class _DocstringRemover(ast.NodeTransformer):
    def _strip(self, node):
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _strip


def strip_comments_docstrings(source: str) -> str | None:
    """Python source without comments and docstrings (parse, drop docstrings, unparse); None if unparsable."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return None
    return ast.unparse(ast.fix_missing_locations(_DocstringRemover().visit(tree))) + "\n"


_PROTECTED = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls"}


def _identifiers(tree: ast.AST) -> list[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return sorted(n for n in names if n not in _PROTECTED and not n.startswith("__"))


class _Renamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]) -> None:
        self.m = mapping

    def visit_Name(self, node):
        node.id = self.m.get(node.id, node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.m.get(node.arg, node.arg)
        self.generic_visit(node)
        return node

    def visit_keyword(self, node):
        if node.arg is not None:
            node.arg = self.m.get(node.arg, node.arg)
        self.generic_visit(node)
        return node

    def _def(self, node):
        node.name = self.m.get(node.name, node.name)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _def


def _rename(source: str, make_mapping) -> str | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return None
    names = _identifiers(tree)
    return ast.unparse(_Renamer(make_mapping(names)).visit(tree)) + "\n"


def scramble_identifiers(source: str, seed: int = 0) -> str | None:
    """Python source with its own identifiers permuted among themselves (a fixed random permutation).

    Builtins, keywords, ``self``/``cls`` and dunder names stay; imported module attributes stay too
    (attribute names are not renamed). Comments and formatting are lost (unparse). None if unparsable.
    """
    def mapping(names):
        shuffled = list(names)
        random.Random(seed).shuffle(shuffled)
        return dict(zip(names, shuffled, strict=True))

    return _rename(source, mapping)


def randomize_identifiers(source: str, seed: int = 0) -> str | None:
    """Python source with each identifier replaced by a random lowercase name of the same length (min 3)."""
    def mapping(names):
        rng = random.Random(seed)
        taken = set(_PROTECTED)
        out = {}
        for n in names:
            while True:
                new = "".join(rng.choice(string.ascii_lowercase) for _ in range(max(3, len(n))))
                if new not in taken:
                    break
            taken.add(new)
            out[n] = new
        return out

    return _rename(source, mapping)
