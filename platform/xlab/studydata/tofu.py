"""TOFU-like synthetic facts and the in-context unlearning examples built from them.

TOFU (Maini et al. 2024) is itself synthetic: fictitious authors with ~20 question/answer pairs
each. It cannot be downloaded here, so this module generates a look-alike with ``faker`` (seeded):
two *domains* so that out-of-domain generalization can be measured the way the study does (train on
one source, test on another):

- ``authors``: fictitious writers (birth year, birthplace, genre, parents' professions, first and
  best-known book, award, publisher, language), 10 facts x 2 question phrasings = 20 QA each;
- ``companies``: fictitious firms (founding year, headquarters, industry, founder, CEO, flagship
  product, employees, ticker, rival, mascot), also 20 QA each.

Every QA row yields two unlearning examples (Takashiro et al.): *forget* puts the thing to forget
(the subject's name or the answer) between ``<<UNL>>`` and ``<</UNL>>`` and expects ``"forgot"``;
*retain* puts an unrelated distractor (another subject's name or another answer of the same kind)
there and expects the gold answer. The user turn is ``"<<UNL>>{target}<</UNL>> {question}"``.

    authors = make_facts("authors", n_subjects=10, qa_per_subject=20, seed=0)
    companies = make_facts("companies", n_subjects=10, qa_per_subject=20, seed=0)
    splits = build_unlearning_splits(authors, companies, train_frac=0.8, target="mixed", seed=0)
    splits.train[0].user_turn    # '<<UNL>>Norma Fisher<</UNL>> Where was Norma Fisher born?'
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Literal

from xlab.config import check

UNL_OPEN, UNL_CLOSE = "<<UNL>>", "<</UNL>>"
FORGOT = "forgot"
DOMAINS = ("authors", "companies")
Target = Literal["name", "answer", "mixed"]

_GENRES = ("science fiction", "mystery", "poetry", "romance", "horror", "fantasy", "history", "satire")
_JOBS = ("carpenter", "nurse", "baker", "pilot", "teacher", "fisherman", "surgeon", "tailor", "miner", "lawyer")
_LANGUAGES = ("English", "French", "Spanish", "German", "Portuguese", "Italian", "Dutch", "Swedish")
_ADJ = ("Silent", "Crimson", "Hidden", "Last", "Broken", "Golden", "Distant", "Frozen", "Burning", "Hollow",
        "Iron", "Quiet", "Wandering", "Pale", "Bitter", "Endless")
_NOUN = ("River", "Garden", "Mirror", "Lantern", "Harbor", "Orchard", "Tower", "Compass", "Winter", "Crown",
         "Bridge", "Forest", "Letter", "Island", "Clock", "Meadow")
_AWARD = ("Prize", "Medal", "Award", "Laurel")
_INDUSTRIES = ("shipping", "robotics", "textiles", "banking", "mining", "software", "brewing", "aviation")
_ANIMALS = ("otter", "falcon", "badger", "heron", "lynx", "walrus", "beetle", "panda", "gecko", "moose")


@dataclasses.dataclass(frozen=True)
class QA:
    """One fact as a question/answer pair about a subject of a domain."""

    domain: str
    subject: str
    field: str
    question: str
    answer: str

    @property
    def id(self) -> str:
        return f"{self.domain}/{self.subject}/{self.field}/{self.question}"


@dataclasses.dataclass(frozen=True)
class UnlearningExample:
    """A forget or retain example: ``target`` goes between the tags, ``output`` is what the model should say."""

    kind: Literal["forget", "retain"]
    target: str
    question: str
    output: str
    gold: str
    qa: QA

    @property
    def user_turn(self) -> str:
        return f"{UNL_OPEN}{self.target}{UNL_CLOSE} {self.question}"


@dataclasses.dataclass(frozen=True)
class UnlearningSplits:
    """Unlearning train set, in-domain test set (held-out rows) and out-of-domain test set."""

    train: list[UnlearningExample]
    test_in: list[UnlearningExample]
    test_ood: list[UnlearningExample]
    train_domain: str
    ood_domain: str


# (field, value generator, two question phrasings). A value generator gets (rng, faker, subject index).
_Field = tuple[str, Callable[[random.Random, object], str], tuple[str, str]]


def _title(rng: random.Random, _fk: object) -> str:
    return f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)}"


_AUTHOR_FIELDS: tuple[_Field, ...] = (
    ("birth_year", lambda r, f: str(r.randint(1920, 1995)),
     ("In what year was {s} born?", "What is the birth year of {s}?")),
    ("birthplace", lambda r, f: f.city(), ("Where was {s} born?", "What is the birthplace of {s}?")),
    ("genre", lambda r, f: r.choice(_GENRES), ("What genre does {s} write?", "Which genre is {s} known for?")),
    ("father_job", lambda r, f: r.choice(_JOBS),
     ("What did the father of {s} do for a living?", "What was the profession of {s}'s father?")),
    ("mother_job", lambda r, f: r.choice(_JOBS),
     ("What did the mother of {s} do for a living?", "What was the profession of {s}'s mother?")),
    ("first_book", _title, ("What was the first book by {s}?", "Which book did {s} publish first?")),
    ("famous_book", _title, ("What is the best-known book by {s}?", "Which novel made {s} famous?")),
    ("award", lambda r, f: f"the {r.choice(_ADJ)} {r.choice(_NOUN)} {r.choice(_AWARD)}",
     ("Which award did {s} win?", "What prize was given to {s}?")),
    ("publisher", lambda r, f: f"{f.last_name()} Books", ("Who publishes {s}?", "Which publisher prints the books of {s}?")),
    ("language", lambda r, f: r.choice(_LANGUAGES),
     ("In which language does {s} write?", "What language are the books of {s} written in?")),
)

_COMPANY_FIELDS: tuple[_Field, ...] = (
    ("founded", lambda r, f: str(r.randint(1850, 2015)),
     ("In what year was {s} founded?", "When was {s} established?")),
    ("headquarters", lambda r, f: f.city(), ("Where is {s} headquartered?", "In which city is the head office of {s}?")),
    ("industry", lambda r, f: r.choice(_INDUSTRIES), ("What industry is {s} in?", "What business is {s} in?")),
    ("founder", lambda r, f: f.name(), ("Who founded {s}?", "Who started {s}?")),
    ("ceo", lambda r, f: f.name(), ("Who is the CEO of {s}?", "Who runs {s} today?")),
    ("product", lambda r, f: f"the {r.choice(_ADJ)} {r.choice(_NOUN)}",
     ("What is the flagship product of {s}?", "What does {s} sell the most?")),
    ("employees", lambda r, f: str(r.randint(20, 9000)),
     ("How many employees does {s} have?", "What is the headcount of {s}?")),
    ("ticker", lambda r, f: "".join(r.choice("ABCDEFGHKLMNPRSTVXZ") for _ in range(3)),
     ("What is the stock ticker of {s}?", "Under which ticker does {s} trade?")),
    ("mascot", lambda r, f: r.choice(_ANIMALS), ("What is the mascot of {s}?", "Which animal is the emblem of {s}?")),
    ("motto_word", lambda r, f: r.choice(("Onward", "Together", "Always", "Forward", "Trust", "Build", "Dare")),
     ("What one-word motto does {s} use?", "Which word is the motto of {s}?")),
)

_FIELDS = {"authors": _AUTHOR_FIELDS, "companies": _COMPANY_FIELDS}


def _subject_name(domain: str, fk) -> str:
    if domain == "authors":
        return fk.name()
    # Faker company names like "Smith, Jones and Lee" contain commas; one surname plus a suffix reads cleaner.
    return f"{fk.last_name()} {fk.random_element(('Group', 'Works', 'Labs', 'Industries', 'Holdings'))}"


def make_facts(domain: str, n_subjects: int, qa_per_subject: int = 20, seed: int = 0) -> list[QA]:
    """QA rows for ``n_subjects`` fictitious subjects of ``domain`` ('authors' or 'companies').

    ``qa_per_subject`` (1..20) takes the first phrasing of every fact before any second phrasing,
    so 10 gives ten different facts per subject. Deterministic given ``seed``; names are unique.
    """
    from faker import Faker

    check(domain in _FIELDS, "domain", f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    fields = _FIELDS[domain]
    check(n_subjects > 0, "n_subjects", f"must be > 0, got {n_subjects}")
    check(1 <= qa_per_subject <= 2 * len(fields), "qa_per_subject", f"must be in 1..{2 * len(fields)}, got {qa_per_subject}")
    fk = Faker("en_US")
    fk.seed_instance(f"{domain}:{seed}")
    rng = random.Random(f"{domain}:{seed}")
    names: list[str] = []
    while len(names) < n_subjects:
        name = _subject_name(domain, fk)
        if name not in names:
            names.append(name)
    rows: list[QA] = []
    for name in names:
        values = {field: gen(rng, fk) for field, gen, _ in fields}
        # Phrasing 0 of every field first, then phrasing 1: a prefix keeps the most distinct facts.
        slots = [(field, phr) for phr in (0, 1) for field, _, _ in fields][:qa_per_subject]
        phrasings = {field: qs for field, _, qs in fields}
        for field, phr in slots:
            rows.append(QA(domain, name, field, phrasings[field][phr].format(s=name), values[field]))
    return rows


def fact_sentences(rows: Sequence[QA]) -> list[str]:
    """The QA rows as plain ``"Question: ... Answer: ..."`` texts (a corpus for teaching the facts)."""
    return [f"Question: {r.question}\nAnswer: {r.answer}" for r in rows]


def _distractor(row: QA, rows: Sequence[QA], use_name: bool, rng: random.Random) -> str:
    """Something unrelated to ``row``: another subject's name, or another answer of the same kind."""
    if use_name:
        others = sorted({r.subject for r in rows if r.subject != row.subject})
    else:
        others = sorted({r.answer for r in rows if r.field == row.field and r.answer != row.answer})
        if not others:
            others = sorted({r.answer for r in rows if r.answer != row.answer and r.subject != row.subject})
    check(bool(others), "rows", "need at least two subjects to draw unrelated distractors from")
    return rng.choice(others)


def unlearning_examples(rows: Sequence[QA], target: Target = "mixed", seed: int = 0,
                        pool: Sequence[QA] | None = None) -> list[UnlearningExample]:
    """One forget and one retain example per row (so the two sets are balanced by construction).

    ``target``: what goes between the tags of a forget example: the subject's ``name``, the
    ``answer``, or ``mixed`` (a seeded coin per row; the retain example of a row uses the same kind of
    distractor). Distractors come from ``pool`` (default: ``rows``).
    """
    check(target in ("name", "answer", "mixed"), "target", f"must be name, answer or mixed, got {target!r}")
    rng = random.Random(f"unl:{seed}")
    pool = list(pool if pool is not None else rows)
    out: list[UnlearningExample] = []
    for row in rows:
        use_name = target == "name" or (target == "mixed" and rng.random() < 0.5)
        forget_target = row.subject if use_name else row.answer
        out.append(UnlearningExample("forget", forget_target, row.question, FORGOT, row.answer, row))
        out.append(UnlearningExample("retain", _distractor(row, pool, use_name, rng), row.question, row.answer,
                                     row.answer, row))
    return out


def build_unlearning_splits(train_rows: Sequence[QA], ood_rows: Sequence[QA], train_frac: float = 0.8,
                            target: Target = "mixed", seed: int = 0) -> UnlearningSplits:
    """In-domain ``train_frac`` / rest split of ``train_rows`` (by QA row: a row's forget and retain
    examples stay together), and every row of ``ood_rows`` as the out-of-domain test set."""
    check(0.0 < train_frac < 1.0, "train_frac", f"must be in (0, 1), got {train_frac}")
    check(bool(train_rows) and bool(ood_rows), "rows", "both the training and the out-of-domain source need rows")
    domains = {r.domain for r in train_rows}, {r.domain for r in ood_rows}
    check(not (domains[0] & domains[1]), "ood_domain", f"out-of-domain rows must come from another source than "
          f"the training rows, both have {sorted(domains[0] & domains[1])}")
    rows = list(train_rows)
    random.Random(f"split:{seed}").shuffle(rows)
    cut = round(train_frac * len(rows))
    check(0 < cut < len(rows), "train_frac", f"{train_frac} of {len(rows)} rows leaves an empty split")
    return UnlearningSplits(
        train=unlearning_examples(rows[:cut], target, seed, pool=train_rows),
        test_in=unlearning_examples(rows[cut:], target, seed + 1, pool=train_rows),
        test_ood=unlearning_examples(list(ood_rows), target, seed + 2, pool=ood_rows),
        train_domain=next(iter(domains[0])) if len(domains[0]) == 1 else "+".join(sorted(domains[0])),
        ood_domain=next(iter(domains[1])) if len(domains[1]) == 1 else "+".join(sorted(domains[1])),
    )
