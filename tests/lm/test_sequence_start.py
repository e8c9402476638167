"""Sequence start: each tokenizer family's own prefix (Llama <s>, XGLM </s>), else BOS as TransformerLens."""

from __future__ import annotations

import pytest

from xlab.lm.sequence_start import encode, encode_many, start_ids


def _tokenizer(prefix: str | None, bos: str | None, eos: str = "</s>"):
    """A word-level tokenizer; ``prefix`` is the special token its post-processor puts first (None: none)."""
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<s>", "</s>", "<unk>", "the", "cat", "sat"])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    if prefix is not None:
        core.post_processor = processors.TemplateProcessing(
            single=f"{prefix} $A", pair=f"{prefix} $A $B", special_tokens=[(prefix, vocab[prefix])])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=bos, eos_token=eos, unk_token="<unk>")


@pytest.mark.parametrize(
    ("family", "prefix", "bos", "first"),
    [
        ("llama", "<s>", "<s>", 0),      # Llama-2 / Mistral: the tokenizer adds <s>
        ("xglm", "</s>", "<s>", 1),      # XGLM: the tokenizer adds </s> although its BOS is <s>
        ("gpt2", None, "</s>", 1),       # GPT-2: adds nothing; BOS (= <|endoftext|>) as TransformerLens
        ("no-bos", None, None, 1),       # no BOS: EOS
    ],
)
def test_every_family_starts_as_its_tokenizer_does(family, prefix, bos, first):
    tok = _tokenizer(prefix, bos)
    assert start_ids(tok) == [first], family
    assert encode(tok, "the cat sat") == [first, 3, 4, 5]
    assert encode(tok, "the cat sat", start=False) == [3, 4, 5]
    assert encode_many(tok, ["the cat", "sat"]) == [[first, 3, 4], [first, 5]]
    assert start_ids(tok, start=False) == [] and encode_many(tok, []) == []


def test_pair_batches_start_the_prompt_like_evaluation():
    from xlab.lm.packing import pair_batch

    tok = _tokenizer(None, "</s>")
    tok.pad_token = "<unk>"
    with_start = pair_batch(tok, [("the cat", "sat")], 16, start=True)
    assert with_start["input_ids"][0].tolist() == [1, 3, 4, 5, 1]
    assert with_start["labels"][0].tolist() == [-100, -100, -100, 5, 1]
    assert pair_batch(tok, [("the cat", "sat")], 16)["input_ids"][0].tolist() == [3, 4, 5, 1]
