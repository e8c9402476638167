"""How a sequence starts: the one rule the analysis studies use to turn text into token ids.

Papers run public models through their own tokenizers (Hugging Face ``tokenizer(text)``) or through
TransformerLens (``prepend_bos=True``), so every sequence they feed starts with a special token:
Llama-2 / Mistral ``<s>``, XGLM ``</s>`` (its tokenizer's own prefix), GPT-2 ``<|endoftext|>``
(its tokenizer adds nothing; TransformerLens prepends the BOS token). The rule here:

1. the prefix the tokenizer itself adds (the ids before the text's ids in ``tokenizer(text)``);
2. if it adds none, its BOS token, else its EOS token (what TransformerLens prepends);
3. with ``start=False``, no prefix at all (text tokens only: the behaviour before this rule).

Suffixes a tokenizer appends (none of the causal LM families here does) are never used.

    ids = encode(tok, "The cat sat")             # [<s>, The, cat, sat] for Llama, [<|endoftext|>, ...] for GPT-2
    prefix = start_ids(tok)                      # [2] for XGLM: generation starts here
    many = encode_many(tok, texts, start=False)  # raw text tokens
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PROBE = "a"


def _prefix_added(tokenizer: Any) -> list[int]:
    """Ids the tokenizer puts before a text's own ids (empty when it adds none)."""
    full = list(tokenizer(_PROBE, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i]
    return []


def start_ids(tokenizer: Any, start: bool = True) -> list[int]:
    """The ids every sequence starts with (see the module docstring); ``[]`` when ``start`` is False or
    the tokenizer has no prefix, BOS or EOS token."""
    if not start:
        return []
    prefix = _prefix_added(tokenizer)
    if prefix:
        return prefix
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [int(tid)] if tid is not None else []


def encode(tokenizer: Any, text: str, *, start: bool = True) -> list[int]:
    """``start_ids`` + the text's own token ids."""
    return start_ids(tokenizer, start) + list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_many(tokenizer: Any, texts: Sequence[str], *, start: bool = True) -> list[list[int]]:
    """:func:`encode` of each text (the prefix is computed once)."""
    prefix = start_ids(tokenizer, start)
    if not texts:
        return []
    return [prefix + list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
