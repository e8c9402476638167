"""Scrambled Bench (Cao et al., EMNLP 2023): scramblers, the recovery and QA tasks, and their metrics.

Scrambling splits a sentence with ``re.split(r"(\\W)")``; a token is an *eligible word* when it has
more than one character and every character is a letter (tokens with digits or underscores and
one-letter words are never touched). Modes:

``random``            letters of ``rate`` x (eligible words) fully shuffled (20/50/100 %; nested)
``keep_first``        words of > 2 letters: all but the first letter shuffled
``keep_first_last``   words of > 3 letters: the interior shuffled, first and last kept
``substitute``        every letter of each eligible word replaced by a different random letter
                      (same case): the no-information floor

Everything is deterministic given ``seed``: which words are chosen comes from one seeded order of the
eligible words (the first ``round(rate * n)`` of it), and each word's permutation from a generator
seeded by (seed, word position, word), so the words scrambled at 20 % are a subset of those at 50 %
and are scrambled identically. A shuffle that happens to reproduce the word is redrawn (up to 20
times) when the word has two different letters to move.

``rule="paper"`` follows the authors' code instead: any token with enough letters is a word and only
its letters move (digits and underscores stay in place); substitution draws letters of either case.

Metrics: recovery rate per sample ``(ED(orig, scr) - ED(orig, rec)) / ED(orig, scr)`` with
character-level Levenshtein distance (``rapidfuzz``), averaged over samples whose scrambled version
differs from the original (others are undefined and skipped), and corpus-level (sums of edit
distances before the ratio) beside the mean edit distance of the recoveries (the authors' number); relative performance gain
``RPG = (acc_scr - acc_sub) / (acc_orig - acc_sub)``.

    scramble("The quick brown fox", "random", rate=0.5, seed=1)
    prompt = recovery_prompt(scr, demos=[(demo_scr, demo_orig)])     # few-shot, the published wording
    rate = recovery_rate(orig, scr, recovered)
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import string
from collections.abc import Sequence
from typing import Any

from xlab.errors import XlabError

MODES: tuple[str, ...] = ("random", "keep_first", "keep_first_last", "substitute")
MIN_LETTERS = {"random": 2, "keep_first": 3, "keep_first_last": 4, "substitute": 2}
"""Shortest word each mode touches (spec: eligible > 1 letter; keep-first > 2; keep-first-last > 3)."""

RECOVERY_INSTRUCTION = (
    "The following sentence contains words with scrambled letters. Please recover the original sentence from it."
)
RECOVERY_PROMPT = RECOVERY_INSTRUCTION + "\nScrambled sentence: {s}\nRecovered sentence:"
"""The published recovery prompt (zero-shot); few-shot prepends solved examples in the same format."""

_SPLIT = re.compile(r"(\W)")


def split_words(sentence: str) -> list[str]:
    """``re.split(r"(\\W)", sentence)``: words and the separators between them (joining gives the input)."""
    return _SPLIT.split(sentence)


RULES = ("xlab", "paper")
"""Which tokens are words: ``xlab`` all-letter tokens only; ``paper`` (the authors' code) any token with
enough letters, whose letters are scrambled in place while digits and other characters stay."""


def is_eligible(token: str, min_letters: int = 2, rule: str = "xlab") -> bool:
    """``xlab``: a token of at least ``min_letters`` characters, all letters; ``paper``: a token with at
    least ``min_letters`` letters (digits and underscores may sit between them)."""
    if rule == "paper":
        return sum(c.isalpha() for c in token) >= min_letters
    return len(token) >= min_letters and token.isalpha()


def _refill(word: str, letters: str) -> str:
    """``word`` with its letters, in order, replaced by ``letters`` (other characters stay in place)."""
    it = iter(letters)
    return "".join(next(it) if c.isalpha() else c for c in word)


def _shuffled(letters: str, rng: random.Random) -> str:
    chars = list(letters)
    if len(set(chars)) < 2:
        return letters
    for _ in range(20):
        rng.shuffle(chars)
        if "".join(chars) != letters:
            break
    return "".join(chars)


def _substituted(word: str, rng: random.Random, any_case: bool = False) -> str:
    out = []
    for c in word:
        pool = string.ascii_letters if any_case else string.ascii_uppercase if c.isupper() else string.ascii_lowercase
        out.append(rng.choice([p for p in pool if p != c]))
    return "".join(out)


def scramble_word(word: str, mode: str, rng: random.Random, rule: str = "xlab") -> str:
    """One word scrambled by ``mode`` (words below the mode's length are returned unchanged).

    With ``rule="paper"`` only the word's letters move (or are substituted, by any letter of either
    case, as in the authors' code); "first" and "last" are its first and last letters."""
    if mode not in MODES:
        raise XlabError(f"unknown scramble mode {mode!r}; choose one of: {', '.join(MODES)}")
    if rule not in RULES:
        raise XlabError(f"unknown scramble rule {rule!r}; choose one of: {', '.join(RULES)}")
    if not is_eligible(word, MIN_LETTERS[mode], rule):
        return word
    letters = "".join(c for c in word if c.isalpha())
    if mode == "random":
        new = _shuffled(letters, rng)
    elif mode == "keep_first":
        new = letters[0] + _shuffled(letters[1:], rng)
    elif mode == "keep_first_last":
        new = letters[0] + _shuffled(letters[1:-1], rng) + letters[-1]
    else:
        new = _substituted(letters, rng, any_case=rule == "paper")
    return _refill(word, new)


def _count(rate: float, n: int) -> int:
    return min(n, math.floor(rate * n + 0.5))


def scramble(sentence: str, mode: str = "random", rate: float = 1.0, seed: int = 0, rule: str = "xlab") -> str:
    """``sentence`` with ``rate`` of its eligible words scrambled by ``mode`` (see module docstring;
    ``rule``: which tokens are words, see :data:`RULES`)."""
    if mode not in MODES:
        raise XlabError(f"unknown scramble mode {mode!r}; choose one of: {', '.join(MODES)}")
    if not 0.0 <= rate <= 1.0:
        raise XlabError(f"scramble rate must be in [0, 1], got {rate}")
    tokens = split_words(sentence)
    eligible = [i for i, t in enumerate(tokens) if is_eligible(t, MIN_LETTERS[mode], rule)]
    order = list(eligible)
    # The order depends on the sentence and seed only, not on the rate: rates nest.
    random.Random(f"order:{seed}:{sentence}").shuffle(order)
    for i in order[: _count(rate, len(order))]:
        tokens[i] = scramble_word(tokens[i], mode, random.Random(f"word:{seed}:{i}:{tokens[i]}"), rule)
    return "".join(tokens)


def scrambled_indices(original: str, scrambled: str) -> list[int]:
    """Token positions whose text differs between ``original`` and its scrambled version."""
    a, b = split_words(original), split_words(scrambled)
    if len(a) != len(b):
        raise XlabError("scrambled text does not have the original's word layout")
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


# ---------------------------------------------------------------- recovery task and metric


def edit_distance(a: str, b: str) -> int:
    """Character-level Levenshtein distance."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(a, b))


def recovery_rate(original: str, scrambled: str, recovered: str) -> float | None:
    """``(ED(orig, scr) - ED(orig, rec)) / ED(orig, scr)``; None when the scrambled text equals the original.

    1 = perfect recovery, 0 = the scrambled text returned unchanged, negative = worse than the input.
    """
    base = edit_distance(original, scrambled)
    if base == 0:
        return None
    return (base - edit_distance(original, recovered)) / base


def mean_recovery_rate(rows: Sequence[tuple[str, str, str]]) -> float:
    """Average of :func:`recovery_rate` over ``(original, scrambled, recovered)`` rows where it is defined."""
    rates = [r for r in (recovery_rate(*row) for row in rows) if r is not None]
    return float(sum(rates) / len(rates)) if rates else float("nan")


def corpus_recovery_rate(rows: Sequence[tuple[str, str, str]]) -> float:
    """Corpus-level recovery rate ``(sum ED(orig, scr) - sum ED(orig, rec)) / sum ED(orig, scr)`` over
    ``(original, scrambled, recovered)`` rows: long sentences weigh more than in the per-sample mean."""
    base = sum(edit_distance(o, s) for o, s, _ in rows)
    if base == 0:
        return float("nan")
    return (base - sum(edit_distance(o, r) for o, _, r in rows)) / base


def recovery_prompt(scrambled: str, demos: Sequence[tuple[str, str]] = (), style: str = "xlab") -> str:
    """The published prompt; ``demos`` = ``(scrambled, original)`` pairs shown solved before it (few-shot).

    ``style="xlab"``: every demo is a full zero-shot prompt with its answer; ``"paper"``: the authors'
    few-shot layout (:func:`xlab.analysis.scramble_paper.recovery_prompt_paper`)."""
    if style == "paper":
        from xlab.analysis.scramble_paper import recovery_prompt_paper

        return recovery_prompt_paper(scrambled, demos)
    parts = [f"{RECOVERY_PROMPT.format(s=s)} {o}" for s, o in demos]
    parts.append(RECOVERY_PROMPT.format(s=scrambled))
    return "\n\n".join(parts)


def parse_recovery(generation: str) -> str:
    """The recovered sentence: the first non-empty line of the generation, stripped."""
    for line in generation.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def evaluate_recovery(
    generator: Any,
    sentences: Sequence[str],
    *,
    mode: str = "random",
    rate: float = 1.0,
    seed: int = 0,
    demos: Sequence[tuple[str, str]] = (),
    max_new_tokens: int = 64,
    style: str = "xlab",
    rule: str = "xlab",
) -> dict[str, Any]:
    """Scramble ``sentences`` (by ``rule``), ask ``generator`` (an ``xlab.evals.Generator``) to recover
    them with the ``style`` prompt (:func:`recovery_prompt`), score.

    Returns ``recovery_rate`` (per-sample mean), ``recovery_rate_corpus`` (:func:`corpus_recovery_rate`),
    ``exact`` (share recovered verbatim), ``ed_scrambled`` and ``ed_recovered`` (mean edit distances;
    the latter is the authors' reported number) and the per-sample ``rows``.
    """
    scrambled = [scramble(s, mode, rate, seed, rule) for s in sentences]
    prompts = [recovery_prompt(s, demos, style) for s in scrambled]
    outs = generator.generate(prompts, max_new_tokens=max_new_tokens, stop=("\n",))
    rows = [(o, s, parse_recovery(g)) for o, s, g in zip(sentences, scrambled, outs, strict=True)]
    n = max(len(rows), 1)
    return {
        "recovery_rate": mean_recovery_rate(rows),
        "recovery_rate_corpus": corpus_recovery_rate(rows),
        "exact": sum(o == r for o, _, r in rows) / n,
        "ed_scrambled": sum(edit_distance(o, s) for o, s, _ in rows) / n,
        "ed_recovered": sum(edit_distance(o, r) for o, _, r in rows) / n,
        "rows": [{"original": o, "scrambled": s, "recovered": r, "rate": recovery_rate(o, s, r)} for o, s, r in rows],
    }


# ---------------------------------------------------------------- scrambled QA


@dataclasses.dataclass(frozen=True)
class QAItem:
    """A multiple-choice question answered from its evidence."""

    evidence: str
    question: str
    options: tuple[str, ...]
    answer: int
    """Index of the correct option."""


LETTERS = "ABCDEFGH"
QA_SCORING = ("loglikelihood", "generate", "paper")


def qa_prompt(item: QAItem, evidence: str | None = None) -> str:
    """Evidence (possibly scrambled), question and lettered options, ending before the answer."""
    opts = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(item.options))
    return f"Evidence: {evidence if evidence is not None else item.evidence}\nQuestion: {item.question}\n" \
           f"Options:\n{opts}\nAnswer:"


def qa_answer_text(item: QAItem, index: int | None = None) -> str:
    """The continuation that answers ``item`` with option ``index`` (default: the correct one)."""
    i = item.answer if index is None else index
    return f" {LETTERS[i]}. {item.options[i]}"


def _parse_letter(text: str, n: int) -> int:
    m = re.search(r"\b([A-H])\b", text)
    return LETTERS.index(m.group(1)) if m and LETTERS.index(m.group(1)) < n else -1


def evaluate_qa(
    generator: Any,
    items: Sequence[QAItem],
    *,
    mode: str | None = "random",
    rate: float = 1.0,
    seed: int = 0,
    scoring: str = "loglikelihood",
    demos: Sequence[QAItem] = (),
    rule: str = "xlab",
) -> dict[str, Any]:
    """Accuracy on ``items`` with evidence scrambled by ``mode`` (None = original evidence).

    ``scoring="loglikelihood"`` picks the option whose answer text (``" B. Paris"``) the model finds
    most likely; ``"generate"`` reads the first option letter of a greedy answer (for endpoints without
    log-probabilities). ``demos`` are solved items (original evidence) shown first. ``"paper"``: the
    authors' prompt ("... among A through D, the answer is"), generation and answer parsing
    (:mod:`xlab.analysis.scramble_paper`; zero-shot, ``demos`` unused).
    """
    if scoring not in QA_SCORING:
        raise XlabError(f"unknown QA scoring {scoring!r}; use one of {', '.join(QA_SCORING)}")
    evidences = [it.evidence if mode is None else scramble(it.evidence, mode, rate, seed, rule) for it in items]
    if scoring == "paper":
        from xlab.analysis.scramble_paper import qa_predictions_paper

        preds = qa_predictions_paper(generator, items, evidences)
        correct = [p == it.answer for p, it in zip(preds, items, strict=True)]
        return {"accuracy": sum(correct) / max(len(items), 1), "predictions": preds}
    prefix = "".join(f"{qa_prompt(d)}{qa_answer_text(d)}\n\n" for d in demos)
    prompts = [prefix + qa_prompt(it, ev) for it, ev in zip(items, evidences, strict=True)]
    if scoring == "generate":
        outs = generator.generate(prompts, max_new_tokens=8, stop=("\n",))
        preds = [_parse_letter(o, len(it.options)) for o, it in zip(outs, items, strict=True)]
    else:
        contexts = [p for p, it in zip(prompts, items, strict=True) for _ in it.options]
        conts = [qa_answer_text(it, j) for it in items for j in range(len(it.options))]
        scores = generator.loglikelihood(contexts, conts)
        preds, k = [], 0
        for it in items:
            s = scores[k : k + len(it.options)]
            preds.append(max(range(len(s)), key=s.__getitem__))
            k += len(it.options)
    correct = [p == it.answer for p, it in zip(preds, items, strict=True)]
    return {"accuracy": sum(correct) / max(len(items), 1), "predictions": preds}


def relative_performance_gain(acc_original: float, acc_scrambled: float, acc_substituted: float) -> float:
    """``(acc_scr - acc_sub) / (acc_orig - acc_sub)``; NaN when original and substituted accuracies tie."""
    denom = acc_original - acc_substituted
    if denom == 0:
        return float("nan")
    return (acc_scrambled - acc_substituted) / denom
