"""The Scrambled Bench authors' prompt formats (Cao et al., EMNLP 2023, code ccqq77/unnatural-error-correction).

Recovery, zero-shot: the instruction, a newline, ``Scrambled sentence: {s}\\nRecovered sentence:`` (the
same text as :data:`xlab.analysis.scramble.RECOVERY_PROMPT`). Few-shot: no instruction; solved
demonstrations ``Scrambled Sentence: {d}\\nRecovered Sentence: {o}\\n\\n`` (capital S, as in their code)
of three fixed WikiQA sentences, each scrambled at 50 % (random mode), then the query line.

QA: ``Question: {q}\\nChoices: (A){a} (B){b} ...\\nEvidence: {e}\\nAnswer: Based on the evidence, among
A through D, the answer is``; the model generates and the answer is parsed from the text: cut at the
first period (when no option contains one) and at a repeated "Answer:"/"Question:"/..., then an
option's text found in it wins, else the first capital option letter found anywhere (their regex
also matches the article "A": kept, it is the reference behaviour).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

RECOVERY_DEMOS = (
    "The camp continued to function this way until the war ended.",
    "It was first developed in the 1980s by Acorn Computers Ltd to power their desktop machines and "
    "subsequently spun off as a separate company, now ARM Holdings.",
    "According to the CIA Factbook, the United States is one of three countries (the others being Liberia and "
    "Burma/Myanmar) that has not adopted the International System of Units (SI) metric system as their "
    "official system of weights and measures.",
)
"""The three few-shot recovery demonstrations of the authors' code (WikiQA sentences)."""
DEMO_RATE = 0.5
"""Random scrambling rate of the demonstrations in the authors' few-shot prompt."""
LETTERS = "ABCDEFGH"


def recovery_prompt_paper(scrambled: str, demos: Sequence[tuple[str, str]] = ()) -> str:
    """The authors' recovery prompt: zero-shot with the instruction, few-shot with demos and no instruction."""
    from xlab.analysis.scramble import RECOVERY_INSTRUCTION

    query = f"Scrambled sentence: {scrambled}\nRecovered sentence:"
    if not demos:
        return f"{RECOVERY_INSTRUCTION}\n{query}"
    shots = "".join(f"Scrambled Sentence: {s}\nRecovered Sentence: {o}\n\n" for s, o in demos)
    return shots + query


def qa_prompt_paper(question: str, options: Sequence[str], evidence: str) -> str:
    """The authors' multiple-choice prompt (evidence after the choices; the model completes the answer)."""
    choices = " ".join(f"({LETTERS[i]}){o}" for i, o in enumerate(options))
    last = LETTERS[len(options) - 1]
    return (f"Question: {question}\nChoices: {choices}\nEvidence: {evidence}\n"
            f"Answer: Based on the evidence, among A through {last}, the answer is")


def parse_choice_paper(generation: str, options: Sequence[str]) -> int:
    """Index of the option a generation names, by the authors' rules (module docstring); -1 if none."""
    text = generation
    if not any("." in o for o in options):
        text = text.split(".")[0]
    for marker in ("Answer: ", "Question: ", "Choices: ", "Dialogue: "):
        text = text.split(marker)[0]
    named = [o for o in options if o and o in text]
    named = [o for o in named if not any(o != other and o in other for other in named)]
    if named:
        return list(options).index(min(named, key=text.index))
    letters = re.findall("|".join(LETTERS[: len(options)]), text)
    return LETTERS.index(letters[0]) if letters else -1


def qa_predictions_paper(generator: Any, items: Sequence[Any], evidences: Sequence[str]) -> list[int]:
    """Greedy answers to the authors' QA prompts, parsed (one index per item, -1 = unparsable)."""
    prompts = [qa_prompt_paper(it.question, it.options, ev) for it, ev in zip(items, evidences, strict=True)]
    outs = generator.generate(prompts, max_new_tokens=16, stop=("\n",))
    return [parse_choice_paper(o, it.options) for o, it in zip(outs, items, strict=True)]
