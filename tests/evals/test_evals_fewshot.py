"""The few-shot evaluator against scripted generators: an oracle scores 100%, a uniform guesser chance."""

import random
import re

import pytest

from xlab.errors import XlabError
from xlab.evals import (
    LABELS,
    Generator,
    QAExample,
    answer_candidates,
    babi_examples,
    evaluate_fewshot,
    fewshot_prompt,
    fld_examples,
    instruction_following,
    solve_babi,
    solve_fld,
)


def _last_query(prompt: str) -> str:
    return prompt.split("\n\n")[-1]


class Oracle:
    """Answers the query at the end of each prompt with the reference solvers."""

    def __init__(self, fld_items=()):
        # FLD queries are English over nonsense words; the solver reads formulas, so the oracle finds
        # the item whose serialisation ends the prompt.
        self.fld = {e.prompt: e for e in fld_items}

    def answer(self, prompt: str) -> tuple[str, tuple[str, ...]]:
        query = _last_query(prompt)
        if query in self.fld:
            return solve_fld(self.fld[query]), LABELS
        m = re.fullmatch(r"Passage: (.*)Question: (.*)\nAnswer:", query, re.S)
        assert m, query
        item = QAExample(m.group(1), m.group(2), "", 0)
        return solve_babi(item), ()

    def generate(self, prompts, *, max_new_tokens, stop=()):
        return [" " + self.answer(p)[0] + ("\n\nBased on" if self.fld else "\nPassage:") for p in prompts]

    def loglikelihood(self, contexts, continuations):
        return [0.0 if x.strip() == self.answer(c)[0] else -5.0 for c, x in zip(contexts, continuations, strict=True)]


class Uniform:
    """A random legal label, whatever the prompt."""

    def __init__(self, seed=0):
        self.rng = random.Random(seed)

    def generate(self, prompts, *, max_new_tokens, stop=()):
        return [" " + self.rng.choice(LABELS) for _ in prompts]

    def loglikelihood(self, contexts, continuations):
        return [self.rng.random() for _ in contexts]


class Invalid:
    def generate(self, prompts, *, max_new_tokens, stop=()):
        return [" the answer is unclear" for _ in prompts]

    def loglikelihood(self, contexts, continuations):
        raise AssertionError("not used")


@pytest.fixture(scope="module")
def fld():
    return fld_examples(150, depth=(1, 2), seed=11)


@pytest.fixture(scope="module")
def babi():
    return [e for t in (1, 2, 3, 15, 16, 17, 18, 19) for e in babi_examples(t, 12, seed=2)]


def test_scripted_generators_satisfy_the_protocol():
    assert isinstance(Oracle(), Generator) and isinstance(Uniform(), Generator)


@pytest.mark.parametrize("mode", ["generate", "choice"])
def test_oracle_scores_100_percent(fld, babi, mode):
    r = evaluate_fewshot(Oracle(fld), "fld", fld, shots=3, mode=mode)
    assert r["accuracy"] == 1.0 and r["valid_rate"] == 1.0 and r["n"] == 150
    assert set(r["by_depth"]) == {1, 2} and all(v["accuracy"] == 1.0 for v in r["by_depth"].values())
    rb = evaluate_fewshot(Oracle(), "babi", babi, shots=2, mode=mode)
    assert rb["accuracy"] == 1.0 and rb["valid_rate"] == 1.0
    assert set(rb["by_task"]) == {1, 2, 3, 15, 16, 17, 18, 19}


def test_uniform_is_near_chance(fld):
    r = evaluate_fewshot(Uniform(0), "fld", fld * 4, shots=1, seed=1)
    assert r["valid_rate"] == 1.0
    assert abs(r["accuracy"] - 1 / 3) < 0.07, r["accuracy"]
    rc = evaluate_fewshot(Uniform(1), "fld", fld * 4, shots=1, mode="choice")
    assert abs(rc["accuracy"] - 1 / 3) < 0.07, rc["accuracy"]


def test_invalid_outputs_score_zero(fld, babi):
    r = evaluate_fewshot(Invalid(), "fld", fld[:30], shots=3)
    assert r["accuracy"] == 0.0 and r["valid_rate"] == 0.0 and r["predictions"] == {"<invalid>": 30}
    assert instruction_following(r) == 0.0
    rb = evaluate_fewshot(Invalid(), "babi", babi[:30], shots=3)
    assert rb["accuracy"] == 0.0 and rb["valid_rate"] == 0.0


def test_instruction_following_on_raw_outputs(babi):
    assert instruction_following([" PROVED", "UNKNOWN.", "  DISPROVED then", ""], "fld") == 0.5
    items = [e for e in babi if e.task == 1][:2]
    assert instruction_following([" kitchen", " Mary"], "babi", items) == 0.5


def test_prompt_format_and_shots_never_the_item(fld, babi):
    shots = fld[1:4]
    p = fewshot_prompt("fld", fld[0], shots)
    parts = p.split("\n\n")
    assert len(parts) == 4 and parts[0] == shots[0].prompt + " " + shots[0].label
    assert parts[-1] == ("Based on the provided facts ($context$), either prove or disprove the hypothesis or "
                         "state that it is unknown. " + fld[0].prompt_serial)
    b = fewshot_prompt("babi", babi[0], [babi[1]])
    assert b == (f"Passage: {babi[1].passage}Question: {babi[1].question}\nAnswer: {babi[1].answer}\n\n"
                 f"Passage: {babi[0].passage}Question: {babi[0].question}\nAnswer:")
    r = evaluate_fewshot(Uniform(), "fld", fld[:20], shots=3)
    for item, rec in zip(fld[:20], r["records"], strict=True):
        shot_part = rec["prompt"][: -len(item.prompt)]
        assert item.prompt not in shot_part  # the item is never its own shot
    rb = evaluate_fewshot(Oracle(), "babi", babi, shots=3)
    for item, rec in zip(babi, rb["records"], strict=True):
        assert rec["prompt"].count("Passage:") == 4 and rec["task"] == item.task
    # A separate pool: shots come from it only.
    pool = fld_examples(10, seed=99)
    r = evaluate_fewshot(Uniform(), "fld", fld[:5], shots=3, fewshot_pool=pool)
    assert all(any(s.prompt in rec["prompt"] for s in pool) for rec in r["records"])


def test_bad_requests(fld, babi):
    with pytest.raises(XlabError, match="task"):
        evaluate_fewshot(Uniform(), "gsm8k", fld)
    with pytest.raises(XlabError, match="mode"):
        evaluate_fewshot(Uniform(), "fld", fld, mode="sample")
    with pytest.raises(XlabError, match="few-shot examples"):
        evaluate_fewshot(Uniform(), "fld", fld[:2], shots=3)
    with pytest.raises(XlabError, match="LogicExample"):
        evaluate_fewshot(Uniform(), "fld", babi[:5])
    assert answer_candidates(19)[:2] == ("n,n", "n,s")


QA4 = """1 The office is north of the kitchen.
2 The garden is south of the kitchen.
3 What is north of the kitchen?\toffice\t1
1 The kitchen is west of the garden.
2 The hallway is west of the kitchen.
3 What is the garden east of?\tkitchen\t1
1 The bedroom is south of the hallway.
2 The bathroom is north of the hallway.
3 What is south of the hallway?\tbedroom\t1
1 The garden is east of the office.
2 The bedroom is west of the office.
3 What is east of the office?\tgarden\t1
"""


class Constant:
    """The same answer and the same score for every candidate, whatever the prompt."""

    def generate(self, prompts, *, max_new_tokens, stop=()):
        return [" kitchen" for _ in prompts]

    def loglikelihood(self, contexts, continuations):
        return [0.0 for _ in contexts]


def test_choice_mode_on_a_task_the_generator_does_not_know_is_not_free(tmp_path):
    # Real bAbI qa4: not one of the generated tasks, so its answer vocabulary comes from the data.
    from xlab.evals.babi_solver import load_babi

    (tmp_path / "qa4_two-arg-relations_test.txt").write_text(QA4)
    items = load_babi(tmp_path)
    assert [it.task for it in items] == [4] * 4
    r = evaluate_fewshot(Constant(), "babi", items, shots=1, mode="choice")
    assert r["accuracy"] < 1.0 and r["accuracy"] == pytest.approx(0.25)
    g = evaluate_fewshot(Constant(), "babi", items, shots=1, mode="generate")
    assert g["accuracy"] == pytest.approx(0.25) and g["valid_rate"] == 1.0  # "kitchen" is a qa4 answer
    with pytest.raises(XlabError, match="bAbI task 4"):
        evaluate_fewshot(Constant(), "babi", items[:1] * 3, shots=1, mode="choice")


def test_evaluate_logic_runs_the_suite_in_both_modes():
    """The pretraining study's protocol is the library suite: generation and label choice, same items."""
    from xlab.evals import LogicEvalConfig, evaluate_logic, fld_examples

    cfg = LogicEvalConfig(n=8, fld_depth=(1, 2), fld_distractors=(0, 2), babi_tasks=(1, 2), choice=True)
    items = fld_examples(cfg.n, depth=cfg.fld_depth, distractors=cfg.fld_distractors, seed=cfg.seed)
    out = evaluate_logic(Oracle(items), cfg)
    assert set(out) == {"fld", "babi", "fld_choice", "babi_choice"}
    assert all(r["n"] == 8 and r["accuracy"] == 1.0 for r in out.values())
    assert set(evaluate_logic(Uniform(), LogicEvalConfig(n=4, babi_tasks=(1,), choice=False))) == {"fld", "babi"}
