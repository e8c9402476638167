"""The instruction encoder travels with the policy: config.json and the MLflow model record it, the
server and rollouts embed with it or refuse in one line, and training re-embeds the mixture with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xlab.policies import build_policy, load_policy
from xlab.policies.encoder import EncoderUnavailableError, encoder_record, policy_encoder
from xlab.rlds import text_embed

MINILM = {"name": text_embed.MODEL_NAME, "dim": text_embed.EMBED_DIM}
HASH = {"name": text_embed.HASH_FALLBACK, "dim": text_embed.EMBED_DIM}


def _policy(encoder=None):
    policy = build_policy("rt1x-tiny")
    policy.instruction_encoder = encoder
    return policy


def test_save_pretrained_records_the_encoder_beside_the_config(tmp_path):
    path = _policy(HASH).save_pretrained(tmp_path / "p")
    meta = json.loads((path / "config.json").read_text())
    assert meta["instruction_encoder"] == HASH and "instruction_encoder" not in meta["config"]
    assert load_policy(path).instruction_encoder == HASH
    meta["instruction_encoder"] = {"name": 3}
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="instruction_encoder must be"):
        load_policy(path)


def test_policy_encoder_uses_the_recorded_one_or_refuses(monkeypatch):
    assert policy_encoder(_policy(HASH)) == "hash-fallback"
    monkeypatch.setattr(text_embed, "embedding_backend", lambda: text_embed.HASH_FALLBACK)  # model not installed
    with pytest.raises(EncoderUnavailableError, match="all-MiniLM-L6-v2 .*not installed here") as e:
        policy_encoder(_policy(MINILM))
    assert "\n" not in str(e.value)
    with pytest.raises(EncoderUnavailableError, match="'universal-sentence-encoder' .*cannot compute"):
        policy_encoder(_policy({"name": "universal-sentence-encoder", "dim": 512}))
    assert policy_encoder(_policy(None)) == "hash-fallback"  # saved before the record: the default backend
    assert encoder_record() == HASH and encoder_record("all-MiniLM-L6-v2") == MINILM
    with pytest.raises(Exception, match="data.embedding_backend"):
        encoder_record("word2vec")


def test_server_embeds_with_the_policy_encoder_or_refuses(tmp_path, monkeypatch):
    from xlab.serve.server import PolicyServer

    server_cls = PolicyServer.func_or_class
    hashed = _policy(HASH).save_pretrained(tmp_path / "hashed")
    server = server_cls(str(hashed))
    assert server.encoder == "hash-fallback"
    np.testing.assert_array_equal(server._embed(["open the drawer"])[0], text_embed.hash_embed("open the drawer"))
    minilm = _policy(MINILM).save_pretrained(tmp_path / "minilm")
    monkeypatch.setattr(text_embed, "embedding_backend", lambda: text_embed.HASH_FALLBACK)
    with pytest.raises(EncoderUnavailableError, match="not installed here"):
        server_cls(str(minilm))


def test_mlflow_model_carries_the_encoder(mlflow_uri):
    import mlflow

    from xlab.policies.mlflow_model import load_registered_policy, log_policy

    with mlflow.start_run():
        uri = log_policy(_policy(HASH), name="policy")
    info = mlflow.models.get_model_info(uri)
    assert info.metadata["instruction_encoder"] == HASH
    assert load_registered_policy(uri).instruction_encoder == HASH


def test_training_reads_the_mixture_with_one_explicit_encoder(monkeypatch, tmp_path):
    import xlab.rlds as rlds
    from xlab.policies import training

    seen = {}
    monkeypatch.setattr(training, "check_dataset_dirs", lambda dirs: [tmp_path / d for d in dirs])
    monkeypatch.setattr(rlds, "read_rlds_windows", lambda sources, options, **k: seen.update(vars(options)))
    monkeypatch.setattr(text_embed, "embedding_backend", lambda: text_embed.HASH_FALLBACK)
    training.build_dataset(training.DataConfig(dataset_dirs=("a/0.1.0", "b/0.1.0")), build_policy("rt1x-tiny").config)
    assert seen["embedding_backend"] == "hash-fallback"  # resolved on the driver, never per read worker


def test_rollouts_refuse_a_policy_whose_encoder_is_unavailable(monkeypatch):
    from xlab.policies.rollout import rollout_policy

    monkeypatch.setattr(text_embed, "embedding_backend", lambda: text_embed.HASH_FALLBACK)
    with pytest.raises(EncoderUnavailableError, match="all-MiniLM-L6-v2 .*not installed here"):
        rollout_policy(_policy(MINILM), ["fetch/reach-v0"], episodes=1)
