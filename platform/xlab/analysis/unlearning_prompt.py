"""Prompt layouts of the in-context unlearning study: xlab's plain layout, the authors' Llama-2 layout, chat templates.

``plain`` (xlab's layout for models trained here, which have no chat format)::

    Question: <<UNL>>{target}<</UNL>> {question}
    Answer:

``paper`` (the authors' code, Llama-2 chat layout with the tags on their own lines)::

    [INST] <<UNL>>
    {target}
    <</UNL>>

    {question} [/INST]

The authors' string starts with a literal ``<s>`` and is then tokenized with special tokens on, so
Llama-2 sees ``<s>`` twice; here the sequence start (:mod:`xlab.lm.sequence_start`) supplies the one
``<s>``. ``chat``: the tokenizer's own chat template over one user turn whose content is the
``paper`` block (``<<UNL>>\\n{target}\\n<</UNL>>\\n\\n{question}``), with the generation prompt; a
BOS text the template writes itself is dropped for the same reason. ``auto``: ``chat`` when the
tokenizer has a chat template, else ``plain``. A question without a target (teaching the facts)
has no tag block.

    style = PromptStyle.of("auto", tok)
    style(e.question, e.target)              # the text the model completes
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xlab.errors import XlabError
from xlab.studydata.tofu import UNL_CLOSE, UNL_OPEN

PROMPT_FORMATS = ("auto", "plain", "paper", "chat")


@dataclasses.dataclass(frozen=True)
class PromptStyle:
    """How a (question, tag target) pair becomes the prompt text."""

    fmt: str = "plain"
    """plain, paper or chat (resolved: never auto)."""
    tokenizer: Any = None
    """The tokenizer whose chat template renders ``chat`` prompts."""

    @classmethod
    def of(cls, fmt: str, tokenizer: Any = None) -> PromptStyle:
        """Resolve ``auto`` (chat template if the tokenizer has one, else plain) and check the format."""
        if fmt not in PROMPT_FORMATS:
            raise XlabError(f"unknown prompt format {fmt!r}; use one of {', '.join(PROMPT_FORMATS)}")
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if fmt == "auto":
            fmt = "chat" if has_template else "plain"
        if fmt == "chat" and not has_template:
            raise XlabError("prompt format 'chat' needs a tokenizer with a chat template; use plain or paper")
        return cls(fmt, tokenizer)

    def user(self, question: str, target: str | None = None) -> str:
        """The user turn: the tag block (if any) and the question."""
        if target is None:
            return question
        if self.fmt == "plain":
            return f"{UNL_OPEN}{target}{UNL_CLOSE} {question}"
        return f"{UNL_OPEN}\n{target}\n{UNL_CLOSE}\n\n{question}"

    def __call__(self, question: str, target: str | None = None) -> str:
        """The full prompt text, up to where the answer starts."""
        turn = self.user(question, target)
        if self.fmt == "plain":
            return f"Question: {turn}\nAnswer:"
        if self.fmt == "paper":
            return f"[INST] {turn} [/INST]"
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": turn}], tokenize=False,
                                                  add_generation_prompt=True)
        bos = getattr(self.tokenizer, "bos_token", None)
        return text[len(bos):] if bos and text.startswith(bos) else text
