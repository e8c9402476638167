"""English renderings of FLD formulas over nonsense words, so world knowledge cannot help.

Every predicate symbol of an example gets a pseudo-word (built from syllables and checked against
``wordfreq``'s English list, so none is a real word) used as a noun ("the blorp is a skeaning") or an
adjective ("the blorp is frailp"); every constant becomes "the <word>". :func:`say` turns a formula
of the shapes the generator builds into a sentence; anything else falls back to the formula string.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from xlab.evals.logic import Formula, has_free_x, to_str

_ONSETS = ("b", "bl", "br", "d", "dr", "f", "fl", "fr", "g", "gl", "gr", "k", "kl", "kr", "l", "m", "n",
           "p", "pl", "pr", "r", "s", "sk", "sl", "sn", "sp", "st", "t", "tr", "v", "w", "z", "sh", "ch")
_VOWELS = ("a", "e", "i", "o", "u", "oo", "ea", "ai", "ou", "ee")
_CODAS = ("", "", "n", "m", "p", "t", "k", "sh", "rb", "x", "ng", "ll", "rk", "mp")


@functools.lru_cache(maxsize=1)
def nonsense_words(n: int = 3000, seed: int = 1234) -> tuple[str, ...]:
    """A fixed list of pronounceable pseudo-words that are not English words (zipf frequency 0)."""
    from wordfreq import zipf_frequency

    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                       for _ in range(rng.choice((1, 2, 2))))
        if not 4 <= len(word) <= 10 or word in seen or zipf_frequency(word, "en") > 0:
            continue
        seen.add(word)
        out.append(word)
    return tuple(out)


@dataclass
class Lexicon:
    """Words of one example: predicate symbol -> phrase, constant symbol -> noun phrase."""

    preds: dict[str, tuple[str, bool]]  # symbol -> (word, is_noun)
    consts: dict[str, str]

    @classmethod
    def sample(cls, rng: random.Random, pred_symbols: list[str], const_symbols: list[str]) -> Lexicon:
        words = rng.sample(nonsense_words(), len(pred_symbols) + len(const_symbols))
        preds = {p: (w, rng.random() < 0.5) for p, w in zip(pred_symbols, words, strict=False)}
        consts = {c: w for c, w in zip(const_symbols, words[len(pred_symbols):], strict=True)}
        return cls(preds, consts)

    def pred(self, p: str) -> str:
        word, noun = self.preds[p]
        if not noun:
            return word
        return ("an " if word[0] in "aeiou" else "a ") + word

    def const(self, c: str) -> str:
        return "the " + self.consts[c]


def _is_lit(f: Formula) -> bool:
    return f[0] == "atom" or (f[0] == "not" and f[1][0] == "atom")


def _lit_parts(f: Formula) -> tuple[bool, str, str | None]:
    """(positive, predicate, term) of a literal."""
    if f[0] == "not":
        return False, f[1][1], f[1][2]
    return True, f[1], f[2]


def _pred_phrase(lex: Lexicon, f: Formula) -> str:
    pos, p, _ = _lit_parts(f)
    return ("" if pos else "not ") + lex.pred(p)


def _subject(lex: Lexicon, term: str | None, pronoun: str) -> str:
    if term == "x":
        return pronoun
    if term is None:
        return "it"
    return lex.const(term)


def _lit(lex: Lexicon, f: Formula, pronoun: str = "it") -> str:
    _, _, t = _lit_parts(f)
    return f"{_subject(lex, t, pronoun)} is {_pred_phrase(lex, f)}"


def _same_subject_pair(lex: Lexicon, a: Formula, b: Formula, joiner: str, pronoun: str) -> str | None:
    if not (_is_lit(a) and _is_lit(b)):
        return None
    ta, tb = _lit_parts(a)[2], _lit_parts(b)[2]
    if ta == tb:
        # "not P or Q" would read as "not (P or Q)": repeat the subject unless both are positive.
        if joiner == "and" and _lit_parts(a)[0] and _lit_parts(b)[0]:
            return f"{_lit(lex, a, pronoun)} and {_pred_phrase(lex, b)}"
        return f"{_lit(lex, a, pronoun)} {joiner} it is {_pred_phrase(lex, b)}"
    return f"{_lit(lex, a, pronoun)} {joiner} {_lit(lex, b, pronoun)}"


def say(f: Formula, lex: Lexicon, rng: random.Random | None = None) -> str:
    """A sentence (no final period) for ``f``; the formula string if the shape has no template."""
    rng = rng or random.Random(0)
    out = _say(f, lex, rng)
    return out if out is not None else to_str(f)


def _say(f: Formula, lex: Lexicon, rng: random.Random) -> str | None:
    kind = f[0]
    if _is_lit(f):
        return _lit(lex, f)
    if kind in ("and", "or"):
        joiner = "and" if kind == "and" else "or"
        pair = _same_subject_pair(lex, f[1], f[2], joiner, "it")
        if pair is None:
            return None
        return ("either " + pair) if kind == "or" and rng.random() < 0.3 else pair
    if kind == "ex":
        body = f[1]
        if _is_lit(body):
            return "something is " + _pred_phrase(lex, body)
        return None
    if kind == "not":
        inner = f[1]
        if inner[0] == "ex" and _is_lit(inner[1]):
            return "nothing is " + _pred_phrase(lex, inner[1])
        sub = _say(inner, lex, rng)
        return None if sub is None else "it is not true that " + sub
    if kind == "all" and f[1][0] == "imp":
        ante, cons = f[1][1], f[1][2]
        if _is_lit(ante):
            ante_s = "something is " + _pred_phrase(lex, ante)
        elif ante[0] in ("and", "or") and _is_lit(ante[1]) and _is_lit(ante[2]):
            ante_s = _same_subject_pair(lex, ante[1], ante[2], "and" if ante[0] == "and" else "or", "something")
        else:
            return None
        if not _is_lit(cons):
            return None
        if has_free_x(cons):
            if _is_lit(ante) and rng.random() < 0.4:
                return f"everything that is {_pred_phrase(lex, ante)} is {_pred_phrase(lex, cons)}"
            return f"if {ante_s} then it is {_pred_phrase(lex, cons)}"
        return f"if {ante_s} then {_lit(lex, cons)}"
    if kind == "imp":
        ante, cons = f[1], f[2]
        ante_s = _say(ante, lex, rng)
        cons_s = _say(cons, lex, rng)
        if ante_s is None or cons_s is None:
            return None
        return f"if {ante_s} then {cons_s}"
    return None
