"""Multiplication problem generator and the digit-level tokenizer."""

from __future__ import annotations

import pytest

from xlab.errors import XlabError
from xlab.studydata.arithmetic import (
    Problem,
    digit_tokenizer,
    make_problems,
    random_operand,
    training_problems,
)


def test_problems_have_the_asked_digit_counts_and_nonzero_leading_digits():
    probs = make_problems(range(1, 6), range(1, 6), per_cell=7, seed=3)
    assert len(probs) == 25 * 7
    for p in probs:
        assert str(p.a)[0] != "0" and str(p.b)[0] != "0"
        assert 1 <= p.n <= 5 and 1 <= p.m <= 5
        assert p.answer == str(p.a * p.b) and p.prompt == f"{p.a} * {p.b} = "
    cells = {(p.n, p.m) for p in probs}
    assert cells == {(n, m) for n in range(1, 6) for m in range(1, 6)}
    assert len({(p.a, p.b) for p in probs}) == len(probs)  # distinct within the evaluation set


def test_generator_is_deterministic_and_cells_are_independent():
    a = make_problems([2, 3], [4], per_cell=5, seed=1)
    assert a == make_problems([2, 3], [4], per_cell=5, seed=1)
    assert a != make_problems([2, 3], [4], per_cell=5, seed=2)
    # Adding a cell leaves the problems of the others unchanged.
    assert [p for p in make_problems([1, 2, 3], [4], per_cell=5, seed=1) if p.n != 1] == a


def test_small_cells_return_every_distinct_problem_and_exclusion_works():
    one = make_problems([1], [1], per_cell=500, seed=0)
    assert len(one) == 81 and len(set(one)) == 81  # 1..9 x 1..9
    held_out = make_problems(range(1, 4), range(1, 4), per_cell=10, seed=0)
    train = training_problems(3, 3000, seed=0, exclude=held_out)
    assert not {(p.a, p.b) for p in train} & {(p.a, p.b) for p in held_out}
    assert {len(str(p.a)) for p in train} == {1, 2, 3}


def test_random_operand_bounds_and_bad_values():
    import random

    rng = random.Random(0)
    assert all(10_000 <= random_operand(5, rng) <= 99_999 for _ in range(200))
    assert all(1 <= random_operand(1, rng) <= 9 for _ in range(200))
    with pytest.raises(XlabError, match="digits"):
        random_operand(0, rng)
    with pytest.raises(XlabError, match="per_cell"):
        make_problems([1], [1], per_cell=0)


def test_digit_tokenizer_has_one_token_per_character_and_round_trips():
    tok = digit_tokenizer()
    p = Problem(37, 4)
    ids = tok(p.text, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == list("37 * 4 = 148")
    assert tok.decode(ids) == "37 * 4 = 148"
    assert tok.eos_token_id is not None and tok.pad_token_id is not None and tok.eos_token_id != tok.pad_token_id
