"""Scrambled Bench: scrambler properties, recovery rate and RPG on hand-computed cases, the tasks' plumbing."""

from collections import Counter

import pytest

from xlab.analysis.scramble import (
    MODES,
    QAItem,
    evaluate_qa,
    evaluate_recovery,
    mean_recovery_rate,
    parse_recovery,
    recovery_prompt,
    recovery_rate,
    relative_performance_gain,
    scramble,
    scrambled_indices,
    split_words,
)
from xlab.errors import XlabError
from xlab.studydata.scramble_texts import qa_items, template_sentences

SENT = "Yesterday, Anna's brother painted 3 old bicycles at the market in Lisbon (x_1 a I)."


def _words(s):
    return split_words(s)


@pytest.mark.parametrize("mode", MODES)
def test_layout_and_non_eligible_tokens_are_untouched(mode):
    out = scramble(SENT, mode, 1.0, seed=3)
    a, b = _words(SENT), _words(out)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if not (len(x) > 1 and x.isalpha()):
            assert x == y  # separators, digits, x_1, one-letter words
        if mode != "substitute":
            assert Counter(x) == Counter(y)  # letters preserved as multisets


def test_keep_first_and_keep_first_last_keep_their_letters():
    for seed in range(5):
        kf = _words(scramble(SENT, "keep_first", seed=seed))
        kfl = _words(scramble(SENT, "keep_first_last", seed=seed))
        for o, f, fl in zip(_words(SENT), kf, kfl, strict=True):
            if len(o) > 2 and o.isalpha():
                assert f[0] == o[0]
            else:
                assert f == o
            if len(o) > 3 and o.isalpha():
                assert fl[0] == o[0] and fl[-1] == o[-1]
            else:
                assert fl == o


def test_substitute_changes_every_letter_and_keeps_case():
    out = _words(scramble(SENT, "substitute", seed=1))
    for o, s in zip(_words(SENT), out, strict=True):
        if len(o) > 1 and o.isalpha():
            assert all(a != b and a.isupper() == b.isupper() for a, b in zip(o, s, strict=True))


def test_random_rates_are_nested_and_deterministic():
    sent = " ".join(template_sentences(4, seed=2))
    by_rate = {r: scramble(sent, "random", r, seed=7) for r in (0.0, 0.2, 0.5, 1.0)}
    assert by_rate[0.0] == sent
    idx = {r: set(scrambled_indices(sent, s)) for r, s in by_rate.items()}
    assert idx[0.2] < idx[0.5] < idx[1.0]
    # Words scrambled at 20 % are scrambled the same way at 50 % and 100 %.
    for i in idx[0.2]:
        assert _words(by_rate[0.2])[i] == _words(by_rate[0.5])[i] == _words(by_rate[1.0])[i]
    n_eligible = sum(len(w) > 1 and w.isalpha() for w in _words(sent))
    assert len(idx[1.0]) >= n_eligible - 2  # only words like "all" with one distinct letter stay put
    assert scramble(sent, "random", 0.5, seed=7) == by_rate[0.5]
    assert scramble(sent, "random", 0.5, seed=8) != by_rate[0.5]


def test_bad_mode_and_rate_are_clear_errors():
    with pytest.raises(XlabError, match="scramble mode"):
        scramble("a b", "reverse")
    with pytest.raises(XlabError, match="rate"):
        scramble("a b", "random", 1.5)


def test_recovery_rate_hand_computed():
    # ED("hello", "hlelo") = 2; a recovered "helo" is 1 edit away: (2 - 1) / 2.
    assert recovery_rate("hello", "hlelo", "helo") == 0.5
    assert recovery_rate("hello", "hlelo", "hello") == 1.0
    assert recovery_rate("hello", "hlelo", "hlelo") == 0.0
    assert recovery_rate("hello", "hlelo", "xxxxxxx") == (2 - 7) / 2
    assert recovery_rate("hello", "hello", "abc") is None
    assert mean_recovery_rate([("hello", "hlelo", "helo"), ("hello", "hello", "x"), ("ab", "ba", "ab")]) == 0.75


def test_rpg_hand_computed():
    assert relative_performance_gain(0.9, 0.7, 0.3) == pytest.approx(4 / 6)
    assert relative_performance_gain(0.5, 0.5, 0.5) != relative_performance_gain(0.5, 0.5, 0.5)  # NaN


def test_prompt_is_the_published_one_and_parsing():
    p = recovery_prompt("Teh cat", demos=[("Hlelo", "Hello")])
    assert p.endswith("The following sentence contains words with scrambled letters. Please recover the original "
                      "sentence from it.\nScrambled sentence: Teh cat\nRecovered sentence:")
    assert "Scrambled sentence: Hlelo\nRecovered sentence: Hello\n\n" in p
    assert parse_recovery(" The cat\nScrambled sentence: x") == "The cat"


class Oracle:
    """A scripted generator: recovers perfectly, answers QA by string match on the (scrambled) evidence."""

    def __init__(self, originals):
        self.map = {scramble(o, "random", 1.0, 0): o for o in originals}

    def generate(self, prompts, *, max_new_tokens, stop=()):
        return [" " + self.map[p.rsplit("Scrambled sentence: ", 1)[1].split("\n")[0]] + "\nmore" for p in prompts]

    def loglikelihood(self, contexts, continuations):
        return [float(c.split(". ", 1)[1] in ctx.rsplit("Evidence: ", 1)[1].split("\n")[0])
                for ctx, c in zip(contexts, continuations, strict=True)]


def test_tasks_end_to_end_with_a_scripted_generator():
    sents = template_sentences(10, seed=1)
    res = evaluate_recovery(Oracle(sents), sents, mode="random", rate=1.0, seed=0)
    assert res["recovery_rate"] == 1.0 and res["exact"] == 1.0 and res["ed_scrambled"] > 0
    items = qa_items(40, seed=0)
    assert all(it.options[it.answer].split()[0] in it.evidence for it in items)
    orig = evaluate_qa(Oracle([]), items, mode=None)["accuracy"]
    sub = evaluate_qa(Oracle([]), items, mode="substitute")["accuracy"]
    # The scripted reader is fooled only where a distractor also occurs in the evidence.
    assert orig > 0.8 and sub < 0.5
    assert isinstance(QAItem("e", "q", ("a", "b"), 1).options, tuple)


def test_paper_rule_scrambles_letters_inside_any_word_token_digits_stay():
    from xlab.analysis.scramble import scramble_word

    sent = "The 3rd model ab12cd uses x_yz tokens"
    out = scramble(sent, "random", 1.0, seed=2, rule="paper")
    for o, s in zip(_words(sent), _words(out), strict=True):
        assert [c for c in o if not c.isalpha()] == [c for c in s if not c.isalpha()]  # digits, _ in place
        assert [i for i, c in enumerate(o) if not c.isalpha()] == [i for i, c in enumerate(s) if not c.isalpha()]
        assert Counter(o) == Counter(s)
    paper_words, xlab_words = _words(out), _words(scramble(sent, "random", 1.0, seed=2))
    assert paper_words[_words(sent).index("ab12cd")] != "ab12cd"  # the authors scramble mixed tokens
    assert xlab_words[_words(sent).index("ab12cd")] == "ab12cd"  # xlab leaves them
    import random

    kfl = scramble_word("a1bcde", "keep_first_last", random.Random(0), rule="paper")
    assert kfl[0] == "a" and kfl[1] == "1" and kfl[-1] == "e"
    sub = scramble_word("ab", "substitute", random.Random(0), rule="paper")
    assert sub[0] != "a" and sub[1] != "b"
    with pytest.raises(XlabError, match="rule"):
        scramble_word("word", "random", random.Random(0), rule="other")


def test_paper_recovery_prompts_and_corpus_rate():
    from xlab.analysis.scramble import corpus_recovery_rate
    from xlab.analysis.scramble_paper import RECOVERY_DEMOS

    zero = recovery_prompt("Teh cat", style="paper")
    assert zero == ("The following sentence contains words with scrambled letters. Please recover the original "
                    "sentence from it.\nScrambled sentence: Teh cat\nRecovered sentence:")
    few = recovery_prompt("Teh cat", [("Teh dgo", "The dog")], style="paper")
    assert few == "Scrambled Sentence: Teh dgo\nRecovered Sentence: The dog\n\nScrambled sentence: Teh cat\nRecovered sentence:"
    assert len(RECOVERY_DEMOS) == 3
    # ED(o, s): 2 and 10; ED(o, r): 0 and 4 -> per-sample mean (1 + 0.6) / 2, corpus (12 - 4) / 12.
    rows = [("ab", "ba", "ab"), ("abcdefghij", "jihgfedcba", "abcdejihgf")]
    assert mean_recovery_rate(rows) == pytest.approx(0.8)
    assert corpus_recovery_rate(rows) == pytest.approx(8 / 12)


def test_paper_qa_prompt_generation_and_parsing():
    from xlab.analysis.scramble_paper import parse_choice_paper, qa_prompt_paper

    opts = ("Paris", "Lisbon", "Rome", "Oslo")
    assert qa_prompt_paper("Where?", opts, "It is in Rome.") == (
        "Question: Where?\nChoices: (A)Paris (B)Lisbon (C)Rome (D)Oslo\nEvidence: It is in Rome.\n"
        "Answer: Based on the evidence, among A through D, the answer is")
    assert parse_choice_paper(" (C). Rome is right", opts) == 2
    assert parse_choice_paper(" Lisbon, not B", opts) == 1  # an option's text wins over a letter
    assert parse_choice_paper(" D", opts) == 3
    assert parse_choice_paper(" unsure. B", opts) == -1  # cut at the first period
    item = QAItem("It is in Rome.", "Where?", opts, 2)

    class Scripted:
        def __init__(self):
            self.prompts = []

        def generate(self, prompts, *, max_new_tokens, stop=()):
            self.prompts += prompts
            return [" (C)"] * len(prompts)

    gen = Scripted()
    out = evaluate_qa(gen, [item], mode="random", rate=1.0, scoring="paper", rule="paper")
    assert out == {"accuracy": 1.0, "predictions": [2]}
    assert gen.prompts[0].endswith("among A through D, the answer is") and "Evidence: " in gen.prompts[0]
