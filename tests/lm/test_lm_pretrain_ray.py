"""Pretraining under Ray Train: 2 DDP workers, falling loss and validation perplexity, checkpoint and resume."""

import numpy as np
import pytest

from xlab.errors import XlabError
from xlab.lm.packing import pack_blocks, save_blocks, tokenize_documents
from xlab.lm.pretrain import ModelSpec, PretrainConfig, fit_pretrain
from xlab.lm.tokenizer import train_bpe


def _corpus(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    names = ["Mary", "John", "Sandra", "Daniel"]
    rooms = ["kitchen", "garden", "office", "hallway"]
    return [" ".join(f"{names[a]} went to the {rooms[b]}." for a, b in rng.integers(0, 4, (6, 2))) for _ in range(n)]


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    d = tmp_path_factory.mktemp("blocks")
    texts = _corpus(0, 400)
    tok = train_bpe(texts, vocab_size=300)
    ids = list(tokenize_documents(tok, texts))
    save_blocks(pack_blocks(ids[:380], 32), d / "train.npy")
    save_blocks(pack_blocks(ids[380:], 32), d / "val.npy")
    return d, len(tok)


# Two Ray Train workers, a checkpoint and a resume (~1-1.5 min on 2 cores): slow suite, beside the other
# multi-worker resume tests (tests/train/test_distributed.py, tests/multinode).
@pytest.mark.slow
def test_pretrain_two_workers_then_resume(ray_local, blocks, mlflow_uri, tmp_path):
    d, vocab = blocks
    spec = ModelSpec("gpt2", "tiny", vocab_size=vocab, n_ctx=32)
    cfg = PretrainConfig(steps=24, batch_size=8, lr=3e-3, warmup_steps=3, block_size=32, log_every=4, eval_every=8,
                         stop_at_step=16, num_workers=2, cpus_per_worker=0.5, threads_per_worker=1)
    first = fit_pretrain(spec, d / "train.npy", {"toy": d / "val.npy"}, cfg, name="lm-test")
    assert first.step == 16 and [r["step"] for r in first.history] == [4, 8, 12, 16]
    assert [e["step"] for e in first.evals] == [0, 8, 16]
    assert first.history[-1]["train/loss"] < first.history[0]["train/loss"]
    assert first.evals[-1]["val/toy/ppl"] < first.evals[0]["val/toy/ppl"] / 4
    # A new run continues from the checkpoint: same schedule, steps 17..24, history kept.
    resumed = fit_pretrain(spec, d / "train.npy", {"toy": d / "val.npy"},
                           PretrainConfig(**{**cfg.__dict__, "stop_at_step": 0}), resume_from=first.checkpoint_path,
                           name="lm-test")
    assert resumed.step == 24 and [r["step"] for r in resumed.history] == [4, 8, 12, 16, 20, 24]
    assert resumed.history[:4] == first.history
    assert [e["step"] for e in resumed.evals] == [0, 8, 16, 24]
    assert resumed.evals[-1]["val_loss"] <= first.evals[-1]["val_loss"] + 0.05
    assert resumed.best_step in (16, 24) and resumed.model().config.n_positions == 32
    with pytest.raises(XlabError, match="no checkpoint at"):
        fit_pretrain(spec, d / "train.npy", {}, cfg, resume_from=tmp_path)
