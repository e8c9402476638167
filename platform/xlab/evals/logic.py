"""Monadic first-order formulas in FLD's notation, their parser and a forward-chaining prover.

Formulas are written as in the hitachi-nlp/FLD ``*_formula`` fields: predicates ``{A}``, ``{AB}``,
constants ``{a}``, the single variable ``x``, connectives ``¬``, ``&``, ``v``, ``->`` and the
quantifiers ``(x):`` (for all) and ``(Ex):`` (there is). Examples::

    {A}{a}                      the a is A
    (x): ({A}x & {B}x) -> ¬{C}x  everything that is A and B is not C
    (Ex): {A}x                  something is A
    (x): {A}x -> {B}{b}         if something is A then the b is B

Internally a formula is a nested tuple (hashable, cheap): ``("atom", P, t)`` with ``t`` a constant,
``"x"`` or ``None`` (a proposition), ``("not", f)``, ``("and", f, g)``, ``("or", f, g)``,
``("imp", f, g)``, ``("all", f)`` and ``("ex", f)``. :func:`neg` cancels double negations so
``neg(neg(f)) == f``.

:func:`prove` is the reference solver the FLD generator checks every label with. It reads only the
formulas (never the generator's proof tree) and saturates them under natural-deduction rules:
elimination rules (and-elim, modus ponens, modus tollens, universal instantiation over every constant
in the problem, disjunctive syllogism, proof by cases, existential elimination into a closed
consequent, De Morgan on negated and/or/exists) freely, and introduction rules (and-intro, or-intro,
exists-intro and their negated forms: ¬a ⊢ ¬(a & b), ¬a, ¬b ⊢ ¬(a v b), (x): ¬φ ⊢ ¬(Ex): φ) only
towards formulas that occur in the problem (or their negations), which keeps the closure finite. The
hypothesis is PROVED if it is in the closure, DISPROVED if its negation is, UNKNOWN otherwise;
facts whose closure holds a formula and its negation are reported as inconsistent.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from xlab.errors import XlabError

Formula = tuple

LABELS: tuple[str, str, str] = ("PROVED", "DISPROVED", "UNKNOWN")
"""The three FLD answer labels."""


class FormulaError(XlabError, ValueError):
    """A formula string that does not parse."""


# ----------------------------------------------------------------------------------------------------
# Constructors and helpers


def atom(pred: str, term: str | None) -> Formula:
    return ("atom", pred, term)


def neg(f: Formula) -> Formula:
    """Negation that cancels a leading double negation."""
    return f[1] if f[0] == "not" else ("not", f)


def subst(f: Formula, const: str) -> Formula:
    """Replace the free variable ``x`` of ``f`` by ``const`` (quantifiers bind x, so stop there)."""
    kind = f[0]
    if kind == "atom":
        return ("atom", f[1], const) if f[2] == "x" else f
    if kind in ("all", "ex"):
        return f
    if kind == "not":
        return neg(subst(f[1], const))
    return (kind, subst(f[1], const), subst(f[2], const))


def has_free_x(f: Formula) -> bool:
    kind = f[0]
    if kind == "atom":
        return f[2] == "x"
    if kind in ("all", "ex"):
        return False
    return any(has_free_x(g) for g in f[1:])


def constants(f: Formula) -> set[str]:
    kind = f[0]
    if kind == "atom":
        return {f[2]} if f[2] not in (None, "x") else set()
    out: set[str] = set()
    for g in f[1:]:
        out |= constants(g)
    return out


def predicates(f: Formula) -> set[str]:
    if f[0] == "atom":
        return {f[1]}
    out: set[str] = set()
    for g in f[1:]:
        out |= predicates(g)
    return out


def subformulas(f: Formula) -> Iterable[Formula]:
    yield f
    if f[0] != "atom":
        for g in f[1:]:
            yield from subformulas(g)


# ----------------------------------------------------------------------------------------------------
# Printing and parsing (FLD notation)


def _term(t: str | None) -> str:
    return "" if t is None else ("x" if t == "x" else "{" + t + "}")


def to_str(f: Formula, top: bool = True) -> str:
    """Render in FLD notation; ``parse(to_str(f)) == f``."""
    kind = f[0]
    if kind == "atom":
        return "{" + f[1] + "}" + _term(f[2])
    if kind == "not":
        inner = f[1]
        body = to_str(inner, top=False)
        return "¬" + body
    if kind in ("all", "ex"):
        s = ("(x): " if kind == "all" else "(Ex): ") + to_str(f[1], top=True)
        return s if top else "(" + s + ")"
    op = {"and": " & ", "or": " v ", "imp": " -> "}[kind]
    s = to_str(f[1], top=False) + op + to_str(f[2], top=False)
    return s if top else "(" + s + ")"


_TOKEN = re.compile(r"\s*(\(Ex\):|\(x\):|->|¬|&|\bv\b|\(|\)|\{[A-Za-z0-9_]+\}|x)")


def _tokenize(text: str) -> list[str]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise FormulaError(f"cannot parse formula {text!r} at position {pos}: {text[pos:pos + 12]!r}")
        out.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    # Precedence, loosest first: quantifier (scope to the end), ->, v, &, ¬.
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise FormulaError(f"cannot parse formula {self.text!r}: expected {expected or 'more'}, got {tok!r}")
        self.i += 1
        return tok

    def formula(self) -> Formula:
        tok = self.peek()
        if tok in ("(x):", "(Ex):"):
            self.take()
            return ("all" if tok == "(x):" else "ex", self.formula())
        left = self.disj()
        if self.peek() == "->":
            self.take()
            return ("imp", left, self.formula())
        return left

    def disj(self) -> Formula:
        f = self.conj()
        while self.peek() == "v":
            self.take()
            f = ("or", f, self.conj())
        return f

    def conj(self) -> Formula:
        f = self.unary()
        while self.peek() == "&":
            self.take()
            f = ("and", f, self.unary())
        return f

    def unary(self) -> Formula:
        tok = self.peek()
        if tok == "¬":
            self.take()
            return neg(self.unary())
        if tok in ("(x):", "(Ex):"):
            return self.formula()
        if tok == "(":
            self.take()
            f = self.formula()
            self.take(")")
            return f
        if tok is not None and tok.startswith("{") and tok[1:2].isupper():
            self.take()
            pred = tok[1:-1]
            nxt = self.peek()
            if nxt == "x":
                self.take()
                return ("atom", pred, "x")
            if nxt is not None and nxt.startswith("{") and nxt[1:2].islower():
                self.take()
                return ("atom", pred, nxt[1:-1])
            return ("atom", pred, None)
        raise FormulaError(f"cannot parse formula {self.text!r}: unexpected {tok!r}")


def parse(text: str) -> Formula:
    """Parse one formula in FLD notation."""
    p = _Parser(text)
    f = p.formula()
    if p.peek() is not None:
        raise FormulaError(f"cannot parse formula {text!r}: trailing {p.toks[p.i:]!r}")
    return f


# ----------------------------------------------------------------------------------------------------
# The prover


@dataclass
class Closure:
    """Everything derivable from a set of facts (see the module docstring for the rules)."""

    known: set[Formula]
    consistent: bool
    conflict: Formula | None = None

    def __contains__(self, f: Formula) -> bool:
        return f in self.known


def _goal_set(formulas: Iterable[Formula], consts: Sequence[str]) -> set[Formula]:
    """Closed formulas (and instances of open ones) that introduction rules may build."""
    out: set[Formula] = set()
    for f in formulas:
        for g in subformulas(f):
            if has_free_x(g):
                out.update(subst(g, c) for c in consts)
            else:
                out.add(g)
    return out


def saturate(facts: Sequence[Formula], goals: Sequence[Formula] = (), max_size: int = 200_000) -> Closure:
    """Closure of ``facts`` under the prover's rules; ``goals`` widen the introduction targets."""
    consts = sorted(set().union(*(constants(f) for f in [*facts, *goals])) or {"_"})
    targets = _goal_set([*facts, *goals], consts)
    targets |= {neg(t) for t in targets}
    # Introduction targets indexed by the premise that can complete them.
    intro_by_part: dict[Formula, list[Formula]] = defaultdict(list)
    for t in targets:
        if t[0] == "not" and t[1][0] in ("and", "or"):  # ¬a ⊢ ¬(a & b);  ¬a, ¬b ⊢ ¬(a v b)
            intro_by_part[neg(t[1][1])].append(t)
            intro_by_part[neg(t[1][2])].append(t)
        elif t[0] == "not" and t[1][0] == "ex":  # (x): ¬φ ⊢ ¬(Ex): φ
            intro_by_part[("all", neg(t[1][1]))].append(t)
        elif t[0] == "and":
            intro_by_part[t[1]].append(t)
            intro_by_part[t[2]].append(t)
        elif t[0] == "or":
            intro_by_part[t[1]].append(t)
            intro_by_part[t[2]].append(t)
        elif t[0] == "ex":
            for c in consts:
                intro_by_part[subst(t[1], c)].append(t)

    known: set[Formula] = set()
    imp_by_ante: dict[Formula, list[Formula]] = defaultdict(list)  # a -> [b] for a -> b
    imp_by_negcons: dict[Formula, list[Formula]] = defaultdict(list)  # ¬b -> [¬a] (modus tollens)
    or_by_neg: dict[Formula, list[Formula]] = defaultdict(list)  # ¬a -> [b] for a v b
    imps_to: dict[Formula, set[Formula]] = defaultdict(set)  # c -> {a : a -> c known}
    ors: list[Formula] = []
    ex_elim: dict[Formula, list[Formula]] = defaultdict(list)  # φ(x) -> [ψ] for (x): φ(x) -> ψ, ψ closed
    agenda: list[Formula] = list(facts)

    while agenda:
        f = agenda.pop()
        if f in known:
            continue
        known.add(f)
        if len(known) > max_size:
            raise XlabError(f"prover closure exceeded {max_size} formulas; the problem is too large")
        if neg(f) in known:
            return Closure(known, False, f)
        new: list[Formula] = []
        kind = f[0]
        if kind == "and":
            new += [f[1], f[2]]
        elif kind == "all":
            body = f[1]
            new += [subst(body, c) for c in consts]
            if body[0] == "imp" and not has_free_x(body[2]):
                ex_elim[body[1]].append(body[2])
                if ("ex", body[1]) in known:
                    new.append(body[2])
        elif kind == "ex":
            new += ex_elim.get(f[1], [])
        elif kind == "imp":
            a, b = f[1], f[2]
            imp_by_ante[a].append(b)
            imp_by_negcons[neg(b)].append(neg(a))
            imps_to[b].add(a)
            if a in known:
                new.append(b)
            if neg(b) in known:
                new.append(neg(a))
            for o in ors:  # proof by cases: a v a2, a -> b, a2 -> b
                if (o[1] == a and o[2] in imps_to[b]) or (o[2] == a and o[1] in imps_to[b]):
                    new.append(b)
        elif kind == "or":
            a, b = f[1], f[2]
            ors.append(f)
            or_by_neg[neg(a)].append(b)
            or_by_neg[neg(b)].append(a)
            if neg(a) in known:
                new.append(b)
            if neg(b) in known:
                new.append(a)
            for c in imps_to_common(imps_to, a, b):
                new.append(c)
        elif kind == "not":
            g = f[1]
            if g[0] == "and":  # ¬(a & b), a ⊢ ¬b
                if g[1] in known:
                    new.append(neg(g[2]))
                if g[2] in known:
                    new.append(neg(g[1]))
                or_by_neg.setdefault(g[1], []).append(neg(g[2]))
                or_by_neg.setdefault(g[2], []).append(neg(g[1]))
            elif g[0] == "or":
                new += [neg(g[1]), neg(g[2])]
            elif g[0] == "ex":
                new += [neg(subst(g[1], c)) for c in consts]
        # Rules triggered by f as the minor premise.
        new += imp_by_ante.get(f, [])
        new += imp_by_negcons.get(f, [])
        # ¬(a & b) is indexed under a (a ⊢ ¬b), a v b under ¬a (¬a ⊢ b).
        new += or_by_neg.get(f, [])
        for t in intro_by_part.get(f, []):
            if t[0] == "and":
                if t[1] in known and t[2] in known:
                    new.append(t)
            elif t[0] == "not" and t[1][0] == "or":
                if neg(t[1][1]) in known and neg(t[1][2]) in known:
                    new.append(t)
            else:
                new.append(t)
        agenda.extend(g for g in new if g not in known)
    return Closure(known, True)


def imps_to_common(imps_to: dict[Formula, set[Formula]], a: Formula, b: Formula) -> list[Formula]:
    """Consequents c with both a -> c and b -> c known (proof by cases over a v b)."""
    return [c for c, antes in imps_to.items() if a in antes and b in antes]


def prove(facts: Sequence[Formula], hypothesis: Formula) -> str:
    """Label of ``hypothesis`` given ``facts``: PROVED, DISPROVED or UNKNOWN.

    Raises :class:`XlabError` if the facts are inconsistent (then every label would be provable).
    """
    closure = saturate(facts, [hypothesis, neg(hypothesis)])
    if not closure.consistent:
        raise XlabError(f"inconsistent facts: both {to_str(closure.conflict)} and its negation follow")
    if hypothesis in closure:
        return "PROVED"
    if neg(hypothesis) in closure:
        return "DISPROVED"
    return "UNKNOWN"


def prove_strings(facts: Sequence[str], hypothesis: str) -> str:
    """:func:`prove` over formula strings in FLD notation."""
    return prove([parse(f) for f in facts], parse(hypothesis))
