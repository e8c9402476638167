"""Offline English sentences and multiple-choice QA items for the Scrambled Bench job.

Provenance: every sentence and QA item is generated from templates and word lists written for this
platform (below; no external text), seeded and reproducible. The vocabulary is small on purpose, so
that a model the platform trains in minutes on CPU can learn it (the smoke subject model); for
hosted or large models the same generator gives fresh, unseen combinations. Real English sentences
are also available from the gettext catalogs (:func:`xlab.studydata.multilingual.gettext_sentences`, the
``en`` side) via ``source="gettext"``.

    sents = template_sentences(200, seed=0)
    items = qa_items(100, seed=0)                 # evidence of 3 facts, a question, 4 options
"""

from __future__ import annotations

import random
import re

from xlab.analysis.scramble import QAItem
from xlab.errors import XlabError

NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Henry", "Irene", "Jonas", "Karla", "Lukas",
         "Maria", "Nora", "Oscar", "Paula", "Simon", "Tessa", "Victor", "Walter")
CITIES = ("Paris", "London", "Berlin", "Madrid", "Vienna", "Prague", "Dublin", "Lisbon", "Warsaw", "Athens",
          "Oslo", "Rome", "Boston", "Denver", "Chicago", "Toronto")
JOBS = ("baker", "doctor", "teacher", "farmer", "painter", "pilot", "lawyer", "dancer", "writer", "nurse",
        "plumber", "singer")
ANIMALS = ("horse", "rabbit", "parrot", "turtle", "kitten", "puppy", "donkey", "hamster")
COLORS = ("black", "white", "brown", "yellow", "purple", "orange", "silver", "golden")
OBJECTS = ("bicycle", "guitar", "camera", "lamp", "blanket", "basket", "mirror", "kettle", "jacket", "window")
PLACES = ("market", "garden", "station", "library", "kitchen", "museum", "harbour", "bakery")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
VERBS = ("bought", "painted", "cleaned", "carried", "borrowed", "repaired", "found", "sold")

SENTENCE_TEMPLATES = (
    "{name} {verb} a {color} {obj} at the {place} on {day}.",
    "On {day}, {name} walked to the {place} with a {color} {animal}.",
    "{name} works as a {job} and lives in {city}.",
    "The {job} from {city} {verb} an old {obj} yesterday.",
    "{name} and {name2} visited the {place} in {city} last {day}.",
    "Every {day} the {job} feeds a small {color} {animal}.",
    "{name} {verb} the {obj} because the {job} asked politely.",
    "Yesterday a {color} {animal} slept under the {obj} in the {place}.",
)


def _fill(template: str, rng: random.Random) -> str:
    n1, n2 = rng.sample(NAMES, 2)
    text = template.format(
        name=n1, name2=n2, city=rng.choice(CITIES), job=rng.choice(JOBS), animal=rng.choice(ANIMALS),
        color=rng.choice(COLORS), obj=rng.choice(OBJECTS), place=rng.choice(PLACES), day=rng.choice(DAYS),
        verb=rng.choice(VERBS),
    )
    return re.sub(r"\b([Aa]) ([aeiou])", r"\1n \2", text)


def template_sentences(n: int, seed: int = 0, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``n`` distinct template sentences (none from ``exclude``), reproducible from ``seed``."""
    rng = random.Random(f"sentences:{seed}")
    out: list[str] = []
    seen = set(exclude)
    for _ in range(n * 50):
        s = _fill(rng.choice(SENTENCE_TEMPLATES), rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
            if len(out) == n:
                return out
    raise XlabError(f"could not generate {n} distinct sentences; ask for fewer")


# (relation, fact template, question template, value pool)
RELATIONS = (
    ("city", "{name} lives in {v}.", "Where does {name} live?", CITIES),
    ("job", "{name} works as a {v}.", "What is the job of {name}?", JOBS),
    ("animal", "{name} owns a {v}.", "Which animal does {name} own?", ANIMALS),
    ("color", "{name} likes the colour {v}.", "Which colour does {name} like?", COLORS),
)


def qa_items(n: int, seed: int = 0, n_facts: int = 3, n_options: int = 4) -> list[QAItem]:
    """``n`` QA items: evidence of ``n_facts`` facts about different people, a question about one of
    them, ``n_options`` options of the asked relation (the answer at a random position)."""
    if not 1 <= n_facts <= len(NAMES) or not 2 <= n_options <= min(len(p) for *_, p in RELATIONS):
        raise XlabError(f"qa_items: need 1 <= n_facts <= {len(NAMES)} and 2 <= n_options <= 8")
    rng = random.Random(f"qa:{seed}")
    items = []
    for _ in range(n):
        people = rng.sample(NAMES, n_facts)
        facts = []
        for person in people:
            rel = rng.choice(RELATIONS)
            facts.append((person, rel, rng.choice(rel[3])))
        person, (_, _, question, pool), gold = rng.choice(facts)
        options = [gold, *rng.sample([v for v in pool if v != gold], n_options - 1)]
        rng.shuffle(options)
        evidence = " ".join(rel[1].format(name=p, v=v) for p, rel, v in facts)
        items.append(QAItem(evidence, question.format(name=person), tuple(options), options.index(gold)))
    return items


def recovery_documents(
    sentences: list[str], seed: int = 0, modes: tuple[tuple[str, float], ...] = (
        ("random", 0.2), ("random", 0.5), ("random", 1.0), ("keep_first", 1.0), ("keep_first_last", 1.0)),
    shots: int = 0,
) -> list[str]:
    """Solved recovery prompts (the published wording) for training a subject model: one document per
    sentence, scrambled with a mode drawn from ``modes``; ``shots`` solved examples before it."""
    from xlab.analysis.scramble import recovery_prompt, scramble

    rng = random.Random(f"recovery-docs:{seed}")
    docs = []
    for i, s in enumerate(sentences):
        mode, rate = rng.choice(modes)
        demos = []
        for _ in range(shots):
            d = rng.choice(sentences)
            dm, dr = rng.choice(modes)
            demos.append((scramble(d, dm, dr, seed=rng.randrange(10**6)), d))
        docs.append(f"{recovery_prompt(scramble(s, mode, rate, seed=seed * 100003 + i), demos)} {s}")
    return docs


def qa_documents(items: list[QAItem], seed: int = 0, scrambled_share: float = 0.0) -> list[str]:
    """Solved QA prompts for training; ``scrambled_share`` of them with randomly scrambled evidence."""
    from xlab.analysis.scramble import qa_answer_text, qa_prompt, scramble

    rng = random.Random(f"qa-docs:{seed}")
    docs = []
    for i, it in enumerate(items):
        ev = scramble(it.evidence, "random", 1.0, seed=seed * 100003 + i) if rng.random() < scrambled_share else None
        docs.append(qa_prompt(it, ev) + qa_answer_text(it))
    return docs
