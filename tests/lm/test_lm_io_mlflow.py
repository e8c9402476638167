"""Log a causal LM to MLflow and load it back by run URI, registered version and alias."""

import mlflow
import pytest
import torch

from xlab.errors import XlabError
from xlab.lm.io import load_causal_lm, log_causal_lm
from xlab.lm.models import build_causal_lm
from xlab.lm.tokenizer import train_bpe


def test_log_then_load_by_uri(mlflow_uri):
    tok = train_bpe(["Mary went to the garden. John went to the office."] * 10, vocab_size=300)
    model = build_causal_lm("gpt2", "tiny", vocab_size=len(tok))
    ids = torch.tensor([tok("Mary went")["input_ids"]])
    with mlflow.start_run() as run:
        uri = log_causal_lm(model, tok, "lm")
        reg = log_causal_lm(model, tok, "lm2", registered_name="xlab-test-lm", alias="best")
    assert uri == f"runs:/{run.info.run_id}/lm" and reg.startswith("models:/xlab-test-lm/")
    for ref in (uri, reg, "models:/xlab-test-lm@best"):
        loaded, ltok = load_causal_lm(ref)
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
        assert ltok.eos_token_id == tok.eos_token_id
    # The pyfunc flavour generates text (for serving and generic MLflow tooling).
    out = mlflow.pyfunc.load_model(reg).predict(["Mary went"], params={"max_new_tokens": 3})
    assert len(out) == 1 and isinstance(out[0], str)
    with pytest.raises(XlabError, match="xlab-test-nope"):
        load_causal_lm("models:/xlab-test-nope@best")
    with pytest.raises(XlabError, match="active MLflow run"):
        log_causal_lm(model, tok)
