"""Reference solver and file reader for bAbI tasks 1, 2, 3, 15, 16, 17, 18 and 19.

:func:`solve_babi` reads only the text of an item (story lines and question), recognises the task
from the question's form, and reasons over what it parsed: it replays movements and object transfers
(tasks 1-3), applies the fear rules (15), generalises colour within a species (16), places the
shapes on a grid (17), takes the transitive closure of "bigger than" (18) and searches the room map
breadth-first (19). It is written independently of the generators in :mod:`xlab.evals.babi`, so it
checks their answers, and it also answers items read from the real Facebook files.

:func:`load_babi` reads the Facebook ``tasks_1-20_v1-2`` format: numbered lines, a story restarting
at line 1, questions as ``N question<TAB>answer<TAB>supporting ids``; each question becomes one item
whose passage is the story's statements before it.

    items = load_babi("tasks_1-20_v1-2/en/qa1_single-supporting-fact_test.txt")
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

from xlab.errors import XlabError
from xlab.evals.babi_item import QAExample

_MOVE = re.compile(r"^(\w+) (?:moved to|went to|went back to|journeyed to|travelled to) the (\w+)\.$")
_GET = re.compile(r"^(\w+) (?:picked up|got|grabbed|took) the (\w+)(?: there)?\.$")
_DROP = re.compile(r"^(\w+) (?:dropped|discarded|put down|left) the (\w+)(?: there)?\.$")
_SINGULAR = {"mice": "mouse", "sheep": "sheep", "wolves": "wolf", "cats": "cat"}
_DIR = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
_POS = {"to the left of": (-1, 0), "to the right of": (1, 0), "above": (0, 1), "below": (0, -1)}


class BabiSolveError(XlabError, ValueError):
    """A story or question the solver cannot read or answer."""


def _lines(passage: str) -> list[str]:
    return [line.strip() for line in passage.splitlines() if line.strip()]


def _world(lines: list[str]) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """Replay tasks 1-3: actor locations, object locations and each object's room history."""
    actor_at: dict[str, str] = {}
    carried_by: dict[str, str | None] = {}
    obj_at: dict[str, str] = {}
    hist: dict[str, list[str]] = {}

    def visit(obj: str, room: str) -> None:
        h = hist.setdefault(obj, [])
        if not h or h[-1] != room:
            h.append(room)

    for line in lines:
        if m := _MOVE.match(line):
            actor, room = m.groups()
            actor_at[actor] = room
            for obj, who in carried_by.items():
                if who == actor:
                    obj_at[obj] = room
                    visit(obj, room)
        elif m := _GET.match(line):
            actor, obj = m.groups()
            carried_by[obj] = actor
            if actor in actor_at:
                obj_at[obj] = actor_at[actor]
                visit(obj, actor_at[actor])
        elif m := _DROP.match(line):
            actor, obj = m.groups()
            carried_by[obj] = None
            if actor in actor_at:
                obj_at[obj] = actor_at[actor]
    return actor_at, obj_at, hist


def _grid(pairs: list[tuple[str, tuple[int, int], str]]) -> dict[str, tuple[int, int]]:
    """Coordinates from "a is (dx, dy) of b" statements, by breadth-first propagation."""
    links: dict[str, list[tuple[str, tuple[int, int]]]] = {}
    for a, (dx, dy), b in pairs:
        links.setdefault(b, []).append((a, (dx, dy)))
        links.setdefault(a, []).append((b, (-dx, -dy)))
    pos: dict[str, tuple[int, int]] = {}
    for start in links:
        if start in pos:
            continue
        pos[start] = (0, 0)
        queue = deque([start])
        while queue:
            cur = queue.popleft()
            for nxt, (dx, dy) in links[cur]:
                if nxt not in pos:
                    pos[nxt] = (pos[cur][0] + dx, pos[cur][1] + dy)
                    queue.append(nxt)
    return pos


def solve_babi(example: QAExample) -> str:
    """The answer to a bAbI item, computed from its passage and question text only."""
    lines = _lines(example.passage)
    q = example.question.strip()
    if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", q):
        obj, room = m.groups()
        hist = _world(lines)[2].get(obj, [])
        idx = [i for i, r in enumerate(hist) if r == room and i > 0]
        if not idx:
            raise BabiSolveError(f"the {obj} was never moved to the {room}: {q!r}")
        return hist[idx[-1] - 1]
    if m := re.fullmatch(r"Where is (?:the )?(\w+)\?", q):
        who = m.group(1)
        actor_at, obj_at, _ = _world(lines)
        if who in actor_at:
            return actor_at[who]
        if who in obj_at:
            return obj_at[who]
        raise BabiSolveError(f"the story does not say where {who} is")
    if m := re.fullmatch(r"What is (\w+) afraid of\?", q):
        name = m.group(1).lower()
        kind, fears = None, {}
        for line in lines:
            if f := re.fullmatch(r"(\w+) are afraid of (\w+)\.", line):
                fears[f.group(1).lower()] = f.group(2).lower()
            elif k := re.fullmatch(r"(\w+) is an? (\w+)\.", line):
                if k.group(1).lower() == name:
                    kind = k.group(2).lower()
        plural = next((p for p, s in _SINGULAR.items() if s == kind), None)
        if plural not in fears:
            raise BabiSolveError(f"no fear rule for {name} ({kind})")
        return _SINGULAR.get(fears[plural], fears[plural])
    if m := re.fullmatch(r"What color is (\w+)\?", q):
        name = m.group(1).lower()
        kind_of: dict[str, str] = {}
        color_of: dict[str, str] = {}
        for line in lines:
            if k := re.fullmatch(r"(\w+) is an? (\w+)\.", line):
                kind_of[k.group(1).lower()] = k.group(2)
            elif c := re.fullmatch(r"(\w+) is (\w+)\.", line):
                color_of[c.group(1).lower()] = c.group(2)
        if name in color_of:
            return color_of[name]
        kind = kind_of.get(name)
        # Induction: the most recent member of the same species with a known colour.
        for other in reversed([n for n in kind_of if n != name and kind_of[n] == kind and n in color_of]):
            return color_of[other]
        raise BabiSolveError(f"no {kind} with a known colour for {name}")
    if m := re.fullmatch(r"Is the (.+?) (to the left of|to the right of|above|below) the (.+?)\?", q):
        x, rel, y = m.groups()
        pairs = []
        for line in lines:
            if p := re.fullmatch(r"The (.+?) is (to the left of|to the right of|above|below) the (.+?)\.", line):
                pairs.append((p.group(1), _POS[p.group(2)], p.group(3)))
        pos = _grid(pairs)
        if x not in pos or y not in pos:
            raise BabiSolveError(f"cannot place the {x} and the {y}")
        v = _POS[rel]
        return "yes" if (pos[x][0] - pos[y][0]) * v[0] + (pos[x][1] - pos[y][1]) * v[1] > 0 else "no"
    if m := re.fullmatch(r"(?:Does the (.+?) fit in|Is the (.+?) bigger than) the (.+?)\?", q):
        bigger: dict[str, set[str]] = {}
        for line in lines:
            if p := re.fullmatch(r"The (.+?) fits inside the (.+?)\.", line):
                bigger.setdefault(p.group(2), set()).add(p.group(1))
            elif p := re.fullmatch(r"The (.+?) is bigger than the (.+?)\.", line):
                bigger.setdefault(p.group(1), set()).add(p.group(2))

        def above(a: str, b: str) -> bool:  # a is (transitively) bigger than b
            seen, stack = set(), [a]
            while stack:
                cur = stack.pop()
                for s in bigger.get(cur, ()):
                    if s == b:
                        return True
                    if s not in seen:
                        seen.add(s)
                        stack.append(s)
            return False

        if m.group(1) is not None:  # does x fit in y  <=>  y bigger than x
            big, small = m.group(3), m.group(1)
        else:
            big, small = m.group(2), m.group(3)
        if above(big, small):
            return "yes"
        if above(small, big):
            return "no"
        raise BabiSolveError(f"the story does not order the {big} and the {small}")
    if m := re.fullmatch(r"How do you go from the (\w+) to the (\w+)\?", q):
        start, goal = m.groups()
        adj: dict[str, list[tuple[str, str]]] = {}
        opposite = {"north": "s", "south": "n", "east": "w", "west": "e"}
        for line in lines:
            if p := re.fullmatch(r"The (\w+) is (north|south|east|west) of the (\w+)\.", line):
                a, d, b = p.groups()
                adj.setdefault(b, []).append((d[0], a))
                adj.setdefault(a, []).append((opposite[d], b))
        queue, seen = deque([(start, [])]), {start}
        while queue:
            cur, path = queue.popleft()
            if cur == goal:
                return ",".join(path)
            for step, nxt in adj.get(cur, []):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, [*path, step]))
        raise BabiSolveError(f"no path from the {start} to the {goal}")
    raise BabiSolveError(f"unsupported bAbI question {q!r} (tasks 1, 2, 3, 15, 16, 17, 18, 19)")


def _read_file(path: Path, task: int) -> list[QAExample]:
    out: list[QAExample] = []
    story: list[str] = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        num, _, text = raw.strip().partition(" ")
        if not num.isdigit():
            raise XlabError(f"{path}:{n}: expected '<id> <sentence>', got {raw!r}")
        if int(num) == 1:
            story = []
        if "\t" in text:
            parts = text.split("\t")
            question, answer = parts[0].strip(), parts[1].strip() if len(parts) > 1 else ""
            if not answer:
                raise XlabError(f"{path}:{n}: question line without an answer: {raw!r}")
            out.append(QAExample("".join(s + "\n" for s in story), question, answer, task))
        else:
            story.append(text.strip())
    return out


def load_babi(path: str | Path, *, split: str = "test", tasks: set[int] | None = None) -> list[QAExample]:
    """Read real bAbI items from one ``qaN_*.txt`` file or a directory of them (``split`` files)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob(f"qa*_*_{split}.txt"))
        if not files:
            raise XlabError(f"no bAbI files qa*_*_{split}.txt in {path}; point at the 'en' folder of "
                            "tasks_1-20_v1-2 or at one file")
    elif path.is_file():
        files = [path]
    else:
        raise XlabError(f"bAbI path {path} not found; download tasks_1-20_v1-2 (Facebook bAbI) or "
                        "generate items with xlab.evals.babi_examples")
    out: list[QAExample] = []
    for f in files:
        m = re.match(r"qa(\d+)_", f.name)
        if not m:
            raise XlabError(f"{f}: cannot tell the bAbI task from the name (expected qaN_...)")
        task = int(m.group(1))
        if tasks is None or task in tasks:
            out.extend(_read_file(f, task))
    return out
