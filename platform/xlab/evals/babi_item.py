"""One bAbI question-answering item, shared by the generators (:mod:`xlab.evals.babi`) and the reference
solver and file reader (:mod:`xlab.evals.babi_solver`), so neither imports the other's module for it.

    QAExample(passage="Mary went to the garden.\\n", question="Where is Mary?", answer="garden", task=1).prompt
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class QAExample:
    """One bAbI item: story, question, one-word answer and the task number."""

    passage: str
    question: str
    answer: str
    task: int

    @property
    def prompt(self) -> str:
        """The harness's query text (no answer): ``Passage: ...Question: ...\\nAnswer:``."""
        return f"Passage: {self.passage}Question: {self.question}\nAnswer:"
