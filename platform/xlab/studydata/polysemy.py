"""An offline polysemy set for PS-Eval, and English text to train the subject language model on.

``polysemy_senses.tsv`` (shipped next to this module) lists polysemous English nouns with two senses
each and five hand-written example sentences per sense; its header states the provenance (written
for this platform, no external text). :func:`polysemy_pairs` turns it into PS-Eval pairs: every two
sentences of one sense make a same-sense pair (label 1), every sentence of one sense with one of the
other sense a different-sense pair (label 0), balanced per word. The real PS-Eval / WiC files load
with :func:`xlab.analysis.ps_eval.load_pairs`.

:func:`english_corpus` gives the text the platform's own subject model learns English from: the
inventory's sentences plus the docstrings of the Python standard library installed on this machine.

    inv = load_inventory()
    pairs = polysemy_pairs(inv, seed=0)          # list[PSPair], half label 1, half label 0
    texts = english_corpus(max_chars=400_000)
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import itertools
import random
import re
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from xlab.analysis.ps_eval import PSPair
from xlab.errors import XlabError

SENSES_FILE = Path(__file__).with_name("polysemy_senses.tsv")


@dataclasses.dataclass(frozen=True)
class SenseExample:
    word: str
    sense: str
    gloss: str
    sentence: str


def load_inventory(path: str | Path | None = None) -> list[SenseExample]:
    """Read a sense inventory TSV (columns word, sense, gloss, sentence; ``#`` lines are comments).

    Every sentence must contain its word exactly once, in that exact lowercase form, not first.
    """
    path = Path(path) if path is not None else SENSES_FILE
    if not path.is_file():
        raise XlabError(
            f"polysemy inventory {path} not found (the platform ships {SENSES_FILE.name} in xlab/studydata)"
        )
    lines = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    out = []
    for i, row in enumerate(csv.DictReader(lines, delimiter="\t")):
        try:
            ex = SenseExample(
                row["word"].strip(), row["sense"].strip(), row["gloss"].strip(), row["sentence"].strip()
            )
        except (KeyError, AttributeError) as e:
            raise XlabError(f"{path} row {i + 2}: needs the columns word, sense, gloss, sentence") from e
        hits = [m.start() for m in re.finditer(rf"\b{re.escape(ex.word)}\b", ex.sentence)]
        if len(hits) != 1 or hits[0] == 0:
            raise XlabError(
                f"{path}: sentence {ex.sentence!r} must contain {ex.word!r} exactly once and not as its first word"
            )
        out.append(ex)
    return out


def polysemy_pairs(
    examples: Sequence[SenseExample], *, seed: int = 0, max_pairs_per_word: int | None = None
) -> list[PSPair]:
    """Balanced same-sense / different-sense pairs per word (equal counts of label 1 and 0 per word)."""
    rng = random.Random(seed)
    by_word: dict[str, dict[str, list[str]]] = {}
    for ex in examples:
        by_word.setdefault(ex.word, {}).setdefault(ex.sense, []).append(ex.sentence)
    pairs: list[PSPair] = []
    for word, senses in sorted(by_word.items()):
        if len(senses) < 2:
            continue
        same = [(a, b) for sents in senses.values() for a, b in itertools.combinations(sents, 2)]
        diff = [
            (a, b)
            for s1, s2 in itertools.combinations(sorted(senses), 2)
            for a in senses[s1]
            for b in senses[s2]
        ]
        n = min(len(same), len(diff))
        if max_pairs_per_word is not None:
            n = min(n, max_pairs_per_word // 2)
        for label, pool in ((1, same), (0, diff)):
            for a, b in rng.sample(pool, n):
                # Random order inside the pair: the first context is not always the same sense.
                if rng.random() < 0.5:
                    a, b = b, a
                pairs.append(PSPair(a, b, word, label))
    rng.shuffle(pairs)
    return pairs


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="ignore"))
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc:
                out.append(doc)
    return out


def _prose(doc: str) -> list[str]:
    """Paragraphs of a docstring that read like English prose (no code, tables or option lists)."""
    keep = []
    for para in re.split(r"\n\s*\n", doc):
        text = " ".join(line.strip() for line in para.splitlines())
        if len(text) < 40 or re.search(r">>>|[{}\[\]=_|\\]|::|\s-{1,2}\w", text):
            continue
        letters = sum(c.isalpha() or c.isspace() for c in text)
        if letters / len(text) > 0.9:
            keep.append(text)
    return keep


def english_corpus(max_chars: int = 400_000, *, seed: int = 0, inventory_repeats: int = 3) -> list[str]:
    """The subject model's English training text: inventory sentences (repeated) + stdlib docstring prose.

    The inventory sentences are repeated ``inventory_repeats`` times so the model sees the target words
    in context often; the docstring paragraphs (from the Python standard library of this interpreter)
    give it general English. Deterministic in ``seed``.
    """
    rng = random.Random(seed)
    texts = [ex.sentence for ex in load_inventory()] * inventory_repeats
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))
    rng.shuffle(files)
    budget = max_chars - sum(len(t) for t in texts)
    # Parse files in a seeded order only until the budget is filled (the whole stdlib takes seconds).
    for f in files:
        if budget <= 0:
            break
        for para in (p for d in _docstrings(f) for p in _prose(d)):
            texts.append(para)
            budget -= len(para)
    rng.shuffle(texts)
    return texts
