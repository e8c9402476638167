"""Byte-level BPE tokenizers trained here with ``tokenizers``, saved in Hugging Face format.

Byte-level: every string round-trips exactly (no unknown token), code whitespace included. The
end-of-text token ``<|endoftext|>`` is id 0 and serves as BOS, EOS and padding, as in GPT-2; the
models of :mod:`xlab.lm.models` default to that id::

    tok = train_bpe(corpus["train"]["text"], vocab_size=8192)
    tok.save_pretrained("tok/")                 # tokenizer.json + config: AutoTokenizer loads it
    tok = load_tokenizer("tok/")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from xlab.config import check
from xlab.errors import XlabError

EOS = "<|endoftext|>"


def _batches(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        if t:
            batch.append(t)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_bpe(
    texts: Iterable[str], vocab_size: int = 4096, *, special_tokens: Sequence[str] = (), min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (specials and the 256 bytes included) on ``texts``.

    ``EOS`` is id 0 (BOS = EOS = pad); ``special_tokens`` follow it and are registered as the
    tokenizer's additional special tokens (never split, skipped by ``decode(skip_special_tokens=True)``).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = [EOS, *[t for t in special_tokens if t != EOS]]
    check(vocab_size >= 256 + len(specials), "tokenizer.vocab_size",
          f"must be >= 256 + {len(specials)} special tokens (the byte alphabet), got {vocab_size}")
    check(min_frequency >= 1, "tokenizer.min_frequency", f"must be >= 1, got {min_frequency}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    seen = [0]

    def counted() -> Iterator[list[str]]:
        for b in _batches(texts):
            seen[0] += len(b)
            yield b

    tok.train_from_iterator(counted(), trainer=trainer)
    if seen[0] == 0:
        raise XlabError("train_bpe got no non-empty text: pass the documents to learn the vocabulary from")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS,
        additional_special_tokens=list(specials[1:]) or None,
    )
    fast.model_max_length = 10**9  # the model, not the tokenizer, limits the context
    return fast


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with ``save_pretrained`` (a directory holding ``tokenizer.json``)."""
    p = Path(path)
    if not (p / "tokenizer.json").exists():
        raise XlabError(f"no tokenizer at {p} (tokenizer.json missing); train one with xlab.lm.tokenizer.train_bpe "
                        "and save it with tokenizer.save_pretrained(path)")
    tok = PreTrainedTokenizerFast.from_pretrained(str(p))
    if tok.eos_token is None:
        tok.eos_token = EOS
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
