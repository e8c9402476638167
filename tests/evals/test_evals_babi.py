"""bAbI generators: answers confirmed by the text-only solver, determinism, the Facebook-format reader."""

from collections import Counter
from pathlib import Path

import pytest

from xlab.errors import XlabError
from xlab.evals import BABI_TASKS, QAExample, answer_candidates, babi_examples, load_babi, solve_babi

FIXTURES = Path(__file__).parents[1] / "fixtures" / "evals"


@pytest.mark.parametrize("task", sorted(BABI_TASKS))
def test_generated_items_are_solvable(task):
    items = babi_examples(task, 150, seed=0)
    assert len(items) == 150 and all(e.task == task for e in items)
    assert all(solve_babi(e) == e.answer for e in items)
    assert all(e.answer in answer_candidates(task) for e in items)
    assert all(e.passage.endswith("\n") and "\n" not in e.question for e in items)
    counts = Counter(e.answer for e in items)
    # No single answer dominates (a constant guesser must not look smart).
    assert max(counts.values()) / len(items) < (0.6 if task in (17, 18) else 0.4), counts


def test_world_tasks_use_the_spec_vocabulary():
    text = "".join(e.passage for t in (1, 2, 3) for e in babi_examples(t, 50, seed=1))
    for word in ("Mary", "John", "Daniel", "Sandra", "moved to", "went back to", "journeyed to", "travelled to"):
        assert word in text
    assert any(v in text for v in ("picked up", "grabbed", "took", "got"))
    assert any(v in text for v in ("dropped", "discarded", "put down", "left"))


def test_deterministic_and_prompt_format():
    a, b = babi_examples(1, 10, seed=4), babi_examples(1, 10, seed=4)
    assert a == b and a != babi_examples(1, 10, seed=5)
    e = QAExample("Mary moved to the bathroom.\n", "Where is Mary?", "bathroom", 1)
    assert e.prompt == "Passage: Mary moved to the bathroom.\nQuestion: Where is Mary?\nAnswer:"


def test_unknown_task_and_unreadable_question():
    with pytest.raises(XlabError, match="task"):
        babi_examples(4, 3)
    with pytest.raises(XlabError, match="unsupported bAbI question"):
        solve_babi(QAExample("Mary moved to the bathroom.\n", "Why?", "x", 1))


def test_load_real_babi_format():
    items = load_babi(FIXTURES / "babi_en")
    assert Counter(e.task for e in items) == {1: 4, 2: 2, 3: 1, 15: 2, 16: 1, 17: 2, 18: 2, 19: 1}
    first = [e for e in items if e.task == 1]
    assert first[0].passage == "Sandra travelled to the office.\nJohn moved to the garden.\n"
    assert first[0].question == "Where is Sandra?" and first[0].answer == "office"
    assert first[3].passage == "Daniel went to the garden.\nMary travelled to the hallway.\n"  # story restarts
    assert all(solve_babi(e) == e.answer for e in items)
    one = load_babi(FIXTURES / "babi_en" / "qa19_path-finding_test.txt")
    assert [(e.task, e.answer) for e in one] == [(19, "s,w")]
    assert load_babi(FIXTURES / "babi_en", tasks={15}) == [e for e in items if e.task == 15]
    with pytest.raises(XlabError, match="not found"):
        load_babi(FIXTURES / "nope")


def test_mixture_has_equal_shares():
    from xlab.evals import babi_mixture

    mix = babi_mixture(20, tasks=(1, 15, 19), seed=3)
    assert Counter(e.task for e in mix) == {1: 7, 15: 7, 19: 6}
    assert [e.task for e in mix] != sorted(e.task for e in mix)  # shuffled
