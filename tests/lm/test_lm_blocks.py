"""The data pipeline: tokenizer on the mixture (or per corpus), EOS-prefixed packing, identical budgets, cache."""

import json

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from xlab.errors import XlabError
from xlab.lm.blocks import prepare_blocks
from xlab.lm.tokenizer import load_tokenizer


def _dd(texts):
    return DatasetDict({"train": Dataset.from_dict({"text": texts[:-5]}), "test": Dataset.from_dict({"text": texts[-5:]})})


@pytest.fixture(scope="module")
def corpora():
    code = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(400)]
    prose = [f"The {w} walked to the river on day {i}. It was calm." for i, w in enumerate(["cat", "dog", "fox"] * 60)]
    return {"code": _dd(code), "prose": _dd(["", *prose])}  # an empty document is dropped


def test_mixture_tokenizer_equal_budgets_and_cache(corpora, tmp_path):
    logs = []
    m = prepare_blocks(corpora, tmp_path, block_size=32, train_tokens=10_000, val_tokens=64, vocab_size=300,
                       log=logs.append)
    entry = m["tokenizers"]["mixture"]
    tok = load_tokenizer(entry["path"])
    blocks = {n: np.load(b["train"]) for n, b in entry["blocks"].items()}
    # Identical budgets: prose is the smaller corpus, code is cut to the same number of blocks.
    assert blocks["code"].shape == blocks["prose"].shape and blocks["code"].shape[1] == 32
    assert entry["blocks"]["code"]["available_train_tokens"] > entry["train_tokens"]
    assert any("budget lowered" in line for line in logs)
    # Documents start with EOS and decode back to the corpus text.
    flat = blocks["code"].reshape(-1)
    assert flat[0] == tok.eos_token_id
    assert tok.decode(flat[1:40]).startswith("def f0(x):\n    return x * 0 + 0\n")
    assert np.load(entry["blocks"]["prose"]["test"]).shape == (2, 32)
    again = prepare_blocks(corpora, tmp_path, block_size=32, train_tokens=10_000, val_tokens=64, vocab_size=300,
                           log=logs.append)
    assert again == m and "cached" in logs[-1]
    assert json.loads((tmp_path / m["dir"].split("/")[-1] / "manifest.json").read_text()) == m


def test_per_corpus_tokenizers_and_errors(corpora, tmp_path):
    m = prepare_blocks(corpora, tmp_path, block_size=32, train_tokens=2_000, val_tokens=64, vocab_size=300,
                       tokenizer_mode="per_corpus")
    assert set(m["tokenizers"]) == {"code", "prose"}
    # Each tokenizer trains its own corpus and makes validation blocks of every corpus.
    assert set(m["tokenizers"]["code"]["blocks"]) == {"code", "prose"}
    assert "train" in m["tokenizers"]["code"]["blocks"]["code"]
    assert "train" not in m["tokenizers"]["code"]["blocks"]["prose"]
    with pytest.raises(XlabError, match="no 'test'"):
        prepare_blocks({"x": DatasetDict({"train": corpora["code"]["train"]})}, tmp_path, block_size=32,
                       train_tokens=100, val_tokens=64)
    with pytest.raises(XlabError, match="train_tokens"):
        prepare_blocks(corpora, tmp_path, block_size=32, train_tokens=8, val_tokens=64)
