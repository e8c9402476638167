"""Byte-level BPE: exact round trip, special tokens, Hugging Face save/load."""

import pytest
from transformers import AutoTokenizer

from xlab.errors import XlabError
from xlab.lm.tokenizer import EOS, load_tokenizer, train_bpe

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n\tprint(i)  # loop\n",
    "The cat sat on the mat. The dog sat on the log.",
    "Mary went to the kitchen. John moved to the garden.",
] * 20


def test_round_trip_specials_and_save_load(tmp_path):
    tok = train_bpe(TEXTS, vocab_size=400, special_tokens=["<sep>"])
    assert len(tok) <= 400 and tok.convert_tokens_to_ids(EOS) == 0
    assert tok.eos_token == tok.bos_token == tok.pad_token == EOS
    # Byte level: unseen characters, tabs, runs of spaces and non-Latin text come back exactly.
    for s in ["def  f(x):\n\treturn x ** 2  # héllo 日本語 🙂", "", "   ", EOS + "a" + EOS]:
        assert tok.decode(tok(s)["input_ids"]) == s
    ids = tok("a <sep> b")["input_ids"]
    assert tok.convert_tokens_to_ids("<sep>") in ids and "<sep>" in tok.all_special_tokens
    # Merges were learned: frequent words are single tokens.
    assert len(tok(" the")["input_ids"]) == 1
    tok.save_pretrained(tmp_path)
    for loaded in (load_tokenizer(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert loaded("def add(a, b)")["input_ids"] == tok("def add(a, b)")["input_ids"]
        assert loaded.eos_token_id == 0


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(XlabError, match="vocab_size"):
        train_bpe(TEXTS, vocab_size=100)
    with pytest.raises(XlabError, match="no non-empty text"):
        train_bpe(["", ""], vocab_size=300)
    with pytest.raises(XlabError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
