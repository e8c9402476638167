"""FLD-style formal logic deduction examples: generator, reference solver and file reader.

Recipe (spec ``lm-pretraining.md``, "FLD generation"): sample a proof tree backwards from its root
with deduction rules (modus ponens over ground and universal rules, and-introduction and
-elimination, or-introduction, disjunctive syllogism, proof by cases, modus tollens (negation),
existential introduction and elimination), with a proof depth drawn from ``depth``; add 0-5 branch
extensions (extra derivations over the same vocabulary that lead elsewhere) and 0-20 distractor facts;
render every formula in English over nonsense words. The label is PROVED when the hypothesis is the
tree root, DISPROVED when it is the root's negation and UNKNOWN when one leaf of the tree is removed
(hypothesis the root or its negation at random, so its polarity says nothing). Labels are balanced
(a shuffled, equal share of each).

Every example is then re-labelled by :func:`solve_fld`, which parses the rendered formulas and runs
the forward-chaining prover of :mod:`xlab.evals.logic` (it never sees the tree); disagreements and
inconsistent fact sets are dropped and regenerated. Generation is deterministic given ``seed``.

    from xlab.evals import fld_examples, solve_fld
    items = fld_examples(300, depth=(1, 3), seed=0)
    assert all(solve_fld(e) == e.label for e in items)
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from xlab.config import check
from xlab.errors import XlabError
from xlab.evals.fld_text import Lexicon, say
from xlab.evals.logic import LABELS, Formula, atom, constants, neg, parse, predicates, prove, to_str

FLD_INSTRUCTION = ("Based on the provided facts ($context$), either prove or disprove the hypothesis or "
                   "state that it is unknown.")
"""Instruction prefix of the lm-evaluation-harness FLD task."""


@dataclass
class LogicExample:
    """One FLD item: facts, hypothesis, label (PROVED / DISPROVED / UNKNOWN) and proof depth."""

    hypothesis: str
    facts: list[str]
    label: str
    depth: int | None
    proof: str | None = None
    hypothesis_formula: str | None = None
    facts_formula: list[str] | None = None
    num_distractors: int = 0
    serial: str | None = None
    """The file's own ``prompt_serial`` (real FLD); generated items build it from the fields."""

    @property
    def prompt_serial(self) -> str:
        """``$hypothesis$ = ... ; $context$ = sent1: ... sent2: ... ; $proof$ =`` as in FLD."""
        if self.serial is not None:
            return self.serial
        context = " ".join(f"sent{i}: {_sentence(f)}" for i, f in enumerate(self.facts, 1))
        return f"$hypothesis$ = {_sentence(self.hypothesis)} ; $context$ = {context} ; $proof$ ="

    @property
    def prompt(self) -> str:
        """The few-shot query text: instruction plus serialized example."""
        return f"{FLD_INSTRUCTION} {self.prompt_serial}"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith(".") else text + "."


# ----------------------------------------------------------------------------------------------------
# Proof trees


@dataclass
class _Node:
    conclusion: Formula
    rule: str  # "fact" for leaves
    children: list[_Node] = field(default_factory=list)

    def depth(self) -> int:
        return 0 if not self.children else 1 + max(c.depth() for c in self.children)

    def leaves(self) -> Iterator[_Node]:
        if not self.children:
            yield self
        for c in self.children:
            yield from c.leaves()


def _pred_codes() -> Iterator[str]:
    letters = [chr(ord("A") + i) for i in range(26)]
    yield from letters
    for a in letters:
        for b in letters:
            yield a + b


class _Builder:
    """Backward proof-tree sampler over fresh predicates (fresh symbols keep the facts consistent)."""

    def __init__(self, rng: random.Random, n_consts: int):
        self.rng = rng
        self.codes = _pred_codes()
        self.consts = [chr(ord("a") + i) for i in range(n_consts)]
        self.used_preds: list[str] = []

    def fresh(self) -> str:
        p = next(self.codes)
        self.used_preds.append(p)
        return p

    def lit(self, term: str) -> Formula:
        a = atom(self.fresh(), term)
        return a if self.rng.random() < 0.6 else neg(a)

    @staticmethod
    def lift(lit: Formula) -> Formula:
        """The literal with its constant replaced by the variable x."""
        if lit[0] == "not":
            return neg(("atom", lit[1][1], "x"))
        return ("atom", lit[1], "x")

    @staticmethod
    def term(lit: Formula) -> str:
        return lit[1][2] if lit[0] == "not" else lit[2]

    def leaf(self, f: Formula) -> _Node:
        return _Node(f, "fact")

    def split(self, d: int, k: int) -> list[int]:
        """Depths of k premises under a node of depth d: one gets d-1, the others at most d-1."""
        depths = [self.rng.randint(0, d - 1) for _ in range(k)]
        depths[self.rng.randrange(k)] = d - 1
        return depths

    def root(self, d: int) -> _Node:
        c = self.consts[0]
        r = self.rng.random()
        if r < 0.12 and d >= 1:
            a, b = self.lit(c), self.lit(c)
            da, db = self.split(d, 2)
            return _Node(("and", a, b), "and_intro", [self.literal(a, da), self.literal(b, db)])
        if r < 0.22 and d >= 1:
            body = self.lift(self.lit(c))
            inst = _subst_lit(body, self.rng.choice(self.consts))
            return _Node(("ex", body), "ex_intro", [self.literal(inst, d - 1)])
        return self.literal(self.lit(c), d)

    def literal(self, goal: Formula, d: int) -> _Node:
        """A tree of depth exactly d concluding the literal ``goal``."""
        if d == 0:
            return self.leaf(goal)
        rng, c = self.rng, self.term(goal)
        rules = ["mp_univ", "mp_univ", "mp_ground", "mp_and", "mp_or", "mt", "ds", "ex_elim"]
        if d == 1:
            rules += ["cases", "and_elim"]
        rule = rng.choice(rules)
        goal_x = self.lift(goal)
        if rule == "mp_univ":
            p = self.lit(c)
            return _Node(goal, rule, [self.leaf(("all", ("imp", self.lift(p), goal_x))), self.literal(p, d - 1)])
        if rule == "mp_ground":
            p = self.lit(rng.choice(self.consts))
            return _Node(goal, rule, [self.leaf(("imp", p, goal)), self.literal(p, d - 1)])
        if rule in ("mp_and", "mp_or"):
            p, q = self.lit(c), self.lit(c)
            kind = "and" if rule == "mp_and" else "or"
            rule_fact = self.leaf(("all", ("imp", (kind, self.lift(p), self.lift(q)), goal_x)))
            return _Node(goal, rule, [rule_fact, self.compound(kind, p, q, d - 1)])
        if rule == "mt":  # (x): ¬goal(x) -> m(x), ¬m(c)  ⊢  goal
            m = self.lit(c)
            return _Node(goal, rule, [self.leaf(("all", ("imp", neg(goal_x), self.lift(m)))),
                                      self.literal(neg(m), d - 1)])
        if rule == "ds":  # m v goal, ¬m ⊢ goal
            m = self.lit(c)
            disj = ("or", m, goal) if rng.random() < 0.5 else ("or", goal, m)
            return _Node(goal, rule, [self.leaf(disj), self.literal(neg(m), d - 1)])
        if rule == "ex_elim":  # (x): p(x) -> goal, (Ex): p(x) ⊢ goal
            p = self.lit(rng.choice(self.consts))
            px = self.lift(p)
            ex = ("ex", px)
            sub = self.leaf(ex) if d == 1 else _Node(ex, "ex_intro", [self.literal(p, d - 2)])
            return _Node(goal, rule, [self.leaf(("all", ("imp", px, goal))), sub])
        if rule == "cases":  # p v q, (x): p -> goal, (x): q -> goal ⊢ goal
            p, q = self.lit(c), self.lit(c)
            return _Node(goal, rule, [self.leaf(("or", p, q)),
                                      self.leaf(("all", ("imp", self.lift(p), goal_x))),
                                      self.leaf(("all", ("imp", self.lift(q), goal_x)))])
        # and_elim: goal & m ⊢ goal
        m = self.lit(c)
        return _Node(goal, rule, [self.leaf(("and", goal, m) if rng.random() < 0.5 else ("and", m, goal))])

    def compound(self, kind: str, p: Formula, q: Formula, d: int) -> _Node:
        f = (kind, p, q)
        if d == 0:
            return self.leaf(f)
        if kind == "and":
            dp, dq = self.split(d, 2)
            return _Node(f, "and_intro", [self.literal(p, dp), self.literal(q, dq)])
        return _Node(f, "or_intro", [self.literal(self.rng.choice((p, q)), d - 1)])


def _subst_lit(body: Formula, c: str) -> Formula:
    if body[0] == "not":
        return neg(("atom", body[1][1], c))
    return ("atom", body[1], c)


# ----------------------------------------------------------------------------------------------------
# Distractors


def _distractor(b: _Builder, pool: list[str]) -> Formula:
    """A formula with the same shapes and vocabulary as the tree's facts."""
    rng = b.rng

    preds = rng.sample(pool, 3)  # distinct predicates: no tautologies such as "(x): {A}x -> {A}x"

    def lit(term: str) -> Formula:
        a = atom(preds.pop(), term)
        return a if rng.random() < 0.6 else neg(a)

    c = rng.choice(b.consts)
    shape = rng.random()
    if shape < 0.3:
        return lit(c)
    if shape < 0.6:
        return ("all", ("imp", _Builder.lift(lit(c)), _Builder.lift(lit(c))))
    if shape < 0.7:
        return ("imp", lit(rng.choice(b.consts)), lit(c))
    if shape < 0.8:
        return ("and", lit(c), lit(c))
    if shape < 0.9:
        return ("or", lit(c), lit(c))
    kind = rng.choice(("and", "or"))
    return ("all", ("imp", (kind, _Builder.lift(lit(c)), _Builder.lift(lit(c))), _Builder.lift(lit(c))))


def _hypothesis_sibling(b: _Builder, hyp: Formula) -> Formula:
    """A fact about a hypothesis predicate that does not settle the hypothesis."""
    rng = b.rng
    pred = rng.choice(sorted(predicates(hyp)))
    head = atom(pred, "x")
    head = head if rng.random() < 0.5 else neg(head)
    others = [c for c in b.consts if c not in constants(hyp)]
    if others and rng.random() < 0.5:
        return _subst_lit(head, rng.choice(others))
    return ("all", ("imp", _Builder.lift(b.lit(b.consts[0])), head))


# ----------------------------------------------------------------------------------------------------
# Generation


def _proof_text(tree: _Node, index: dict[Formula, int], lex: Lexicon, label: str) -> str:
    """FLD-style proof: ``sent1 & sent2 -> int1: ...; int1 & sent3 -> hypothesis;``."""
    steps: list[str] = []
    counter = [0]

    def walk(node: _Node, is_root: bool) -> str:
        if not node.children:
            return f"sent{index[node.conclusion]}"
        refs = " & ".join(walk(ch, False) for ch in node.children)
        if is_root:
            steps.append(f"{refs} -> {'hypothesis' if label == 'PROVED' else '¬hypothesis'};")
            return "hypothesis"
        counter[0] += 1
        steps.append(f"{refs} -> int{counter[0]}: {say(node.conclusion, lex)};")
        return f"int{counter[0]}"

    walk(tree, True)
    return " ".join(steps)


def _one(rng: random.Random, label: str, d: int, branches: tuple[int, int],
         distractors: tuple[int, int]) -> LogicExample | None:
    b = _Builder(rng, n_consts=rng.randint(2, 5))
    tree = b.root(d)
    real_depth = tree.depth()
    facts = list(dict.fromkeys(leaf.conclusion for leaf in tree.leaves()))
    root = tree.conclusion
    if label == "PROVED":
        hyp = root
    elif label == "DISPROVED":
        hyp = neg(root)
    else:
        hyp = root if rng.random() < 0.5 else neg(root)
        facts.remove(rng.choice(facts))
    # Branch extensions: derivations over the same predicates and constants that lead elsewhere.
    for _ in range(rng.randint(*branches)):
        target_pred = rng.choice(b.used_preds)
        goal = atom(target_pred, rng.choice(b.consts))
        goal = goal if rng.random() < 0.5 else neg(goal)
        for leaf in b.literal(goal, rng.randint(1, 2)).leaves():
            if leaf.conclusion not in facts:
                facts.append(leaf.conclusion)
    pool = list(b.used_preds) + [b.fresh() for _ in range(3)]
    n_dis = rng.randint(*distractors)
    chosen: list[Formula] = []
    if distractors[1] > 0:
        # One distractor always mentions a hypothesis predicate, under every label: otherwise an UNKNOWN
        # item whose removed leaf held the hypothesis's predicate would give itself away.
        n_dis = max(n_dis - 1, 0)
        for _ in range(4):
            sibling = _hypothesis_sibling(b, hyp)
            try:
                if sibling not in facts and prove([*facts, sibling], hyp) == label:
                    chosen.append(sibling)
                    break
            except XlabError:
                pass
    # Distractors one by one: keep those that leave the label and consistency intact (checked with
    # the prover on the formulas, as the final check below does).
    attempts = 0
    while len(chosen) < n_dis and attempts < 3 * n_dis + 5:
        attempts += 1
        cand = _distractor(b, pool)
        if cand in facts or cand in chosen:
            continue
        try:
            ok = prove([*facts, *chosen, cand], hyp) == label
        except XlabError:
            ok = False
        if ok:
            chosen.append(cand)
    all_facts = facts + chosen
    rng.shuffle(all_facts)
    lex = Lexicon.sample(rng, b.used_preds, b.consts)
    index = {f: i for i, f in enumerate(all_facts, 1)}
    proof = "__UNKNOWN__" if label == "UNKNOWN" else _proof_text(tree, index, lex, label)
    ex = LogicExample(
        hypothesis=say(hyp, lex, rng),
        facts=[say(f, lex, rng) for f in all_facts],
        label=label,
        depth=real_depth,
        proof=proof,
        hypothesis_formula=to_str(hyp),
        facts_formula=[to_str(f) for f in all_facts],
        num_distractors=len(chosen),
    )
    try:
        solved = solve_fld(ex)
    except XlabError:
        return None
    return ex if solved == label else None


def fld_examples(n: int, *, depth: tuple[int, int] = (1, 3), branches: tuple[int, int] = (0, 5),
                 distractors: tuple[int, int] = (0, 20), seed: int = 0) -> list[LogicExample]:
    """``n`` FLD-style examples with balanced labels, every label confirmed by :func:`solve_fld`."""
    check(n >= 0, "n", f"need a non-negative number of examples, got {n}")
    for name, (lo, hi) in (("depth", depth), ("branches", branches), ("distractors", distractors)):
        check(0 <= lo <= hi, name, f"need a range 0 <= lo <= hi, got {(lo, hi)}")
    check(depth[0] >= 1, "depth", f"proof depth starts at 1 (a fact is not a deduction), got {depth}")
    rng = random.Random(seed)
    labels = [LABELS[i % 3] for i in range(n)]
    rng.shuffle(labels)
    out: list[LogicExample] = []
    for label in labels:
        d = rng.randint(*depth)  # drawn once per item so rejections do not skew the depth distribution
        for _ in range(200):
            ex = _one(rng, label, d, branches, distractors)
            if ex is not None:
                out.append(ex)
                break
        else:  # pragma: no cover - the rules always allow some consistent example
            raise XlabError(f"could not generate a consistent {label} example in 200 tries")
    return out


def solve_fld(example: LogicExample) -> str:
    """The reference label of ``example`` from its formulas (forward chaining, see ``logic.prove``)."""
    if example.facts_formula is None or example.hypothesis_formula is None:
        raise XlabError("solve_fld needs the formulas (facts_formula, hypothesis_formula); this example "
                        "has only text")
    return prove([parse(f) for f in example.facts_formula], parse(example.hypothesis_formula))


# ----------------------------------------------------------------------------------------------------
# Real FLD files

_SENT = re.compile(r"(?:sent|fact)\d+:\s*")


def _split_context(context: str) -> list[str]:
    parts = [p.strip() for p in _SENT.split(context) if p.strip()]
    return [p[:-1] if p.endswith(".") else p for p in parts]


def _from_record(rec: dict, where: str) -> LogicExample:
    context = rec.get("context", rec.get("facts"))
    label = rec.get("world_assump_label", rec.get("label"))
    if context is None or "hypothesis" not in rec or label is None:
        raise XlabError(f"{where}: not an FLD record (needs hypothesis, context or facts, and "
                        f"world_assump_label); keys: {sorted(rec)}")
    label = str(label).strip("_").upper()
    if label not in LABELS:
        raise XlabError(f"{where}: unknown label {label!r}; expected one of {LABELS}")
    formulas = rec.get("context_formula", rec.get("facts_formula"))
    hyp = rec["hypothesis"].strip()
    proofs = rec.get("proofs") or []
    return LogicExample(
        hypothesis=hyp[:-1] if hyp.endswith(".") else hyp,
        facts=_split_context(context),
        label=label,
        depth=rec.get("depth"),
        proof=proofs[0] if proofs else rec.get("proof_serial"),
        hypothesis_formula=rec.get("hypothesis_formula"),
        facts_formula=_split_context(formulas) if formulas else None,
        num_distractors=int(rec.get("num_all_distractors") or 0),
        serial=rec.get("prompt_serial"),
    )


def load_fld(path: str | Path) -> list[LogicExample]:
    """Read hitachi-nlp/FLD records from a ``.jsonl`` file or a ``.json`` list (or ``{"data": [...]}``)."""
    path = Path(path)
    if not path.is_file():
        raise XlabError(f"FLD file {path} not found; download hitachi-nlp/FLD.v2 (e.g. "
                        "`datasets.load_dataset('hitachi-nlp/FLD.v2')['test'].to_json(path)`) or generate "
                        "items with xlab.evals.fld_examples")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl" or (text.lstrip()[:1] == "{" and "\n{" in text.strip()):
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        data = json.loads(text)
        records = data["data"] if isinstance(data, dict) and "data" in data else data
    if not isinstance(records, list):
        raise XlabError(f"{path}: expected a list of FLD records")
    return [_from_record(r, f"{path} record {i}") for i, r in enumerate(records)]
