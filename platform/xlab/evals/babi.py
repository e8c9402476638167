"""bAbI-style question answering: procedural generators for tasks 1, 2, 3, 15, 16, 17, 18 and 19.

Recipe (spec ``lm-pretraining.md``): actors (Mary, John, Daniel, Sandra) move between rooms
(bathroom, hallway, garden, office, bedroom, kitchen) with the bAbI verbs (moved to, went to, went back
to, journeyed to, travelled to); in tasks 2-3 they also pick up and drop objects. Tasks 15-19 fill
templates: deduction (15), induction (16), positional reasoning (17), size reasoning (18) and path
finding (19). Items look like the Facebook bAbI files and the harness's ``Muennighoff/babi`` version:
``passage`` is the story, one sentence per line (each ending in a newline), ``question`` one line
and ``answer`` one word (task 19: two directions ``"n,e"``).

Every generated answer is checked by :func:`xlab.evals.babi_solver.solve_babi`, which parses the
text and reasons over it without the generator's state; items it disagrees with are regenerated.

    from xlab.evals import babi_examples
    items = babi_examples(1, 100, seed=0)
"""

from __future__ import annotations

import random
from collections.abc import Callable

from xlab.config import check
from xlab.errors import XlabError
from xlab.evals.babi_item import QAExample
from xlab.evals.babi_solver import solve_babi

__all__ = ["QAExample", "TASKS", "answer_candidates", "babi_examples", "babi_mixture"]

ACTORS = ("Mary", "John", "Daniel", "Sandra")
ROOMS = ("bathroom", "hallway", "garden", "office", "bedroom", "kitchen")
MOVE_VERBS = ("moved to", "went to", "went back to", "journeyed to", "travelled to")
GET_VERBS = ("picked up", "got", "grabbed", "took")
DROP_VERBS = ("dropped", "discarded", "put down", "left")
OBJECTS = ("football", "apple", "milk")
# (singular, plural)
SPECIES = (("mouse", "mice"), ("sheep", "sheep"), ("wolf", "wolves"), ("cat", "cats"))
DEDUCTION_NAMES = ("Gertrude", "Winona", "Jessica", "Emily")
ANIMALS = ("swan", "lion", "frog", "rhino")
COLORS = ("white", "yellow", "green", "gray")
INDUCTION_NAMES = ("Lily", "Bernhard", "Greg", "Julius", "Brian")
SHAPES = ("red square", "blue square", "pink rectangle", "triangle", "red sphere", "yellow square")
POSITIONS = {"to the left of": (-1, 0), "to the right of": (1, 0), "above": (0, 1), "below": (0, -1)}
SIZED = ("box", "chest", "suitcase", "container", "chocolate", "box of chocolates")
DIRECTIONS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}

TASKS: dict[int, str] = {
    1: "single supporting fact", 2: "two supporting facts", 3: "three supporting facts",
    15: "basic deduction", 16: "basic induction", 17: "positional reasoning", 18: "size reasoning",
    19: "path finding",
}


def answer_candidates(task: int) -> tuple[str, ...]:
    """Every legal answer word of a task (the choices of the evaluator's ``choice`` mode)."""
    if task in (1, 2, 3):
        return ROOMS
    if task == 15:
        return tuple(s for s, _ in SPECIES)
    if task == 16:
        return COLORS
    if task in (17, 18):
        return ("yes", "no")
    if task == 19:
        letters = [d[0] for d in DIRECTIONS]
        return tuple(f"{a},{b}" for a in letters for b in letters)
    raise XlabError(f"unknown bAbI task {task}; supported: {sorted(TASKS)}")


def _story(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


# ----------------------------------------------------------------------------------------------------
# Tasks 1-3: a small world simulation


def _task_world(rng: random.Random, task: int) -> QAExample | None:
    where: dict[str, str] = {}
    holder: dict[str, str | None] = {o: None for o in OBJECTS}
    obj_at: dict[str, str | None] = {o: None for o in OBJECTS}
    history: dict[str, list[str]] = {o: [] for o in OBJECTS}
    lines: list[str] = []
    n = rng.randint(2, 8) if task == 1 else rng.randint(6, 14)

    def note(o: str, room: str) -> None:
        if not history[o] or history[o][-1] != room:
            history[o].append(room)

    for _ in range(n):
        actor = rng.choice(ACTORS)
        held = [o for o, h in holder.items() if h == actor]
        r = rng.random()
        if task > 1 and actor in where and r < 0.3:
            free = [o for o in OBJECTS if holder[o] is None]
            if free and (not held or r < 0.2):
                o = rng.choice(free)
                holder[o] = actor
                note(o, where[actor])
                lines.append(f"{actor} {rng.choice(GET_VERBS)} the {o}{' there' if rng.random() < 0.4 else ''}.")
                continue
        if task > 1 and held and r < 0.45:
            o = rng.choice(held)
            holder[o], obj_at[o] = None, where[actor]
            lines.append(f"{actor} {rng.choice(DROP_VERBS)} the {o}{' there' if rng.random() < 0.3 else ''}.")
            continue
        room = rng.choice([x for x in ROOMS if x != where.get(actor)])
        where[actor] = room
        for o in held:
            note(o, room)
        lines.append(f"{actor} {rng.choice(MOVE_VERBS)} the {room}.")
    if task == 1:
        if not where:
            return None
        actor = rng.choice(sorted(where))
        return QAExample(_story(lines), f"Where is {actor}?", where[actor], 1)
    if task == 2:
        known = [o for o in OBJECTS if history[o]]
        if not known:
            return None
        o = rng.choice(known)
        loc = where[holder[o]] if holder[o] is not None else obj_at[o]
        return QAExample(_story(lines), f"Where is the {o}?", loc, 2)
    # Task 3: where was the object before it last came to a room.
    options = [(o, i) for o in OBJECTS for i in range(1, len(history[o]))]
    if not options:
        return None
    o, i = rng.choice(options)
    room = history[o][i]
    if i != max(j for j, x in enumerate(history[o]) if x == room):
        return None  # keep the question about the last visit unambiguous
    return QAExample(_story(lines), f"Where was the {o} before the {room}?", history[o][i - 1], 3)


# ----------------------------------------------------------------------------------------------------
# Tasks 15-19: templates


def _task15(rng: random.Random) -> QAExample:
    fears = {s: rng.choice([t for t in SPECIES if t != s]) for s in SPECIES}
    names = list(DEDUCTION_NAMES)
    kinds = {n: rng.choice(SPECIES) for n in names}
    lines = [f"{s[1].capitalize()} are afraid of {t[1]}." for s, t in fears.items()]
    lines += [f"{n} is a {kinds[n][0]}." for n in names]
    rng.shuffle(lines)
    name = rng.choice(names)
    return QAExample(_story(lines), f"What is {name} afraid of?", fears[kinds[name]][0], 15)


def _task16(rng: random.Random) -> QAExample | None:
    color_of = {a: rng.choice(COLORS) for a in ANIMALS}
    names = rng.sample(INDUCTION_NAMES, 5)
    query = names[0]
    kind = {n: rng.choice(ANIMALS) for n in names}
    witnesses = [n for n in names[1:] if kind[n] == kind[query]]
    if not witnesses:
        return None
    lines: list[str] = []
    for n in names[1:]:
        lines.append(f"{n} is a {kind[n]}.")
        if n in witnesses[:1] or rng.random() < 0.6:
            lines.append(f"{n} is {color_of[kind[n]]}.")
    lines.append(f"{query} is a {kind[query]}.")
    return QAExample(_story(lines), f"What color is {query}?", color_of[kind[query]], 16)


def _task17(rng: random.Random) -> QAExample | None:
    a, b, c = rng.sample(SHAPES, 3)
    rel_ab = rng.choice(list(POSITIONS))
    rel_bc = rng.choice(list(POSITIONS))
    pos = {b: (0, 0)}
    pos[a] = POSITIONS[rel_ab]
    dx, dy = POSITIONS[rel_bc]
    pos[c] = (-dx, -dy)  # b is rel_bc of c
    lines = [f"The {a} is {rel_ab} the {b}.", f"The {b} is {rel_bc} the {c}."]
    rng.shuffle(lines)
    x, y = rng.sample([a, c], 2)
    if pos[x] == pos[y]:
        return None  # e.g. "a left of b, b right of c": a and c coincide, no relation holds
    holds = {r: (pos[x][0] - pos[y][0]) * v[0] + (pos[x][1] - pos[y][1]) * v[1] > 0 for r, v in POSITIONS.items()}
    want = rng.random() < 0.5
    options = [r for r, h in holds.items() if h == want]
    rel = rng.choice(options)
    return QAExample(_story(lines), f"Is the {x} {rel} the {y}?", "yes" if want else "no", 17)


def _task18(rng: random.Random) -> QAExample:
    order = rng.sample(SIZED, rng.randint(3, 5))  # smallest first
    lines = []
    for small, big in zip(order, order[1:], strict=False):
        lines.append(f"The {small} fits inside the {big}." if rng.random() < 0.5
                     else f"The {big} is bigger than the {small}.")
    rng.shuffle(lines)
    i, j = sorted(rng.sample(range(len(order)), 2))
    while j - i < 2 and len(order) > 2:
        i, j = sorted(rng.sample(range(len(order)), 2))
    small, big = order[i], order[j]
    if rng.random() < 0.5:
        x, y = (small, big) if rng.random() < 0.5 else (big, small)
        return QAExample(_story(lines), f"Does the {x} fit in the {y}?", "yes" if x == small else "no", 18)
    x, y = (big, small) if rng.random() < 0.5 else (small, big)
    return QAExample(_story(lines), f"Is the {x} bigger than the {y}?", "yes" if x == big else "no", 18)


def _task19(rng: random.Random) -> QAExample | None:
    rooms = rng.sample(ROOMS, 5)
    cell = {rooms[0]: (0, 0)}
    taken = {(0, 0): rooms[0]}
    edges: list[tuple[str, str, str]] = []  # (room, direction, other): room is direction of other
    for room in rooms[1:]:
        for _ in range(20):
            anchor = rng.choice(list(cell))
            d = rng.choice(list(DIRECTIONS))
            x, y = cell[anchor][0] + DIRECTIONS[d][0], cell[anchor][1] + DIRECTIONS[d][1]
            if (x, y) not in taken:
                cell[room], taken[(x, y)] = (x, y), room
                edges.append((room, d, anchor))
                break
        else:
            return None
    adj: dict[str, list[tuple[str, str]]] = {r: [] for r in cell}
    opposite = {"north": "south", "south": "north", "east": "west", "west": "east"}
    for room, d, other in edges:
        adj[other].append((d, room))
        adj[room].append((opposite[d], other))
    pairs = [(s, d1[0] + "," + d2[0], t) for s in adj for d1, m in adj[s] for d2, t in adj[m] if t != s]
    if not pairs:
        return None
    start, path, goal = rng.choice(pairs)
    lines = []
    for room, d, other in edges:
        lines.append(f"The {room} is {d} of the {other}." if rng.random() < 0.5
                     else f"The {other} is {opposite[d]} of the {room}.")
    rng.shuffle(lines)
    return QAExample(_story(lines), f"How do you go from the {start} to the {goal}?", path, 19)


_MAKERS: dict[int, Callable[[random.Random], QAExample | None]] = {
    1: lambda r: _task_world(r, 1), 2: lambda r: _task_world(r, 2), 3: lambda r: _task_world(r, 3),
    15: _task15, 16: _task16, 17: _task17, 18: _task18, 19: _task19,
}


def babi_examples(task: int, n: int, *, seed: int = 0) -> list[QAExample]:
    """``n`` items of bAbI task ``task``, each answer confirmed by the reference solver."""
    check(task in _MAKERS, "task", f"unknown bAbI task {task}; supported: {sorted(_MAKERS)}")
    check(n >= 0, "n", f"need a non-negative number of examples, got {n}")
    rng = random.Random(seed * 1000 + task)
    out: list[QAExample] = []
    while len(out) < n:
        for _ in range(1000):
            ex = _MAKERS[task](rng)
            if ex is not None and solve_babi(ex) == ex.answer:
                out.append(ex)
                break
        else:  # pragma: no cover
            raise XlabError(f"bAbI task {task}: the solver rejected 1000 generated items in a row")
    return out


def babi_mixture(n: int, *, tasks: tuple[int, ...] = tuple(sorted(TASKS)), seed: int = 0) -> list[QAExample]:
    """``n`` items with an equal share of each task, shuffled (the harness mixes all tasks)."""
    check(len(tasks) > 0, "tasks", "need at least one bAbI task")
    per = [n // len(tasks) + (i < n % len(tasks)) for i in range(len(tasks))]
    items = [e for t, k in zip(tasks, per, strict=True) for e in babi_examples(t, k, seed=seed)]
    random.Random(seed).shuffle(items)
    return items
