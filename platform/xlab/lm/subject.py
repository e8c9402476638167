"""The language model an analysis study looks at: any Hugging Face causal LM, or a new one built here.

Every analysis job has one ``subject`` config section. ``--subject.ref`` names an existing causal LM
(a local ``save_pretrained`` directory, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
``runs:/RUN_ID/PATH``); without it the job builds a new model of family ``--subject.arch`` (gpt2,
llama, gpt_neox) and preset ``--subject.size``, reshaped by ``--subject.d_model/n_layer/n_head``
(the same names in every family), and trains it on its own data with :mod:`xlab.lm.finetune`::

    xlab run lang_neurons --subject.ref models:/multilingual-lm@prod
    xlab run lang_neurons --subject.arch llama --subject.size tiny --subject.n_layer 4

    model, tok = subject_lm(cfg.subject, texts=corpus, seed=cfg.seed)     # loaded, or new and untrained
    if cfg.subject.trains:
        train_on_texts(model, tok, corpus, cfg.train)
        uri = log_subject(model, tok, cfg.subject)                         # runs:/<run id>/subject_model
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from xlab.config import check
from xlab.lm.models import ARCHS, SIZES

ARTIFACT = "subject_model"
"""Name under which jobs log the subject they trained (reload it with ``runs:/<run id>/subject_model``)."""


@dataclasses.dataclass
class SubjectConfig:
    """The language model under study: ``ref`` to load one, else the shape of a new one trained by the job."""

    ref: str = ""
    """Causal LM to analyse: local save_pretrained dir or MLflow URI (models:/NAME@ALIAS, runs:/ID/PATH);
    empty: build a new model below and train it on the study's data."""
    arch: str = "gpt2"
    """Family of a new model: gpt2, llama or gpt_neox."""
    size: str = "tiny"
    """Size preset of a new model (xlab.lm.SIZES: tiny, smoke, gpt2-small, ...)."""
    d_model: int = 0
    """Width of a new model (0 = the preset's)."""
    n_layer: int = 0
    """Blocks of a new model (0 = the preset's)."""
    n_head: int = 0
    """Attention heads of a new model (0 = the preset's)."""
    n_ctx: int = 0
    """Context length of a new model (0 = the preset's)."""
    vocab_size: int = 2048
    """Vocabulary of a new model's byte-level BPE, trained on the study's texts."""
    dropout: float = 0.0
    """Dropout of a new model while it trains."""
    registered_name: str = ""
    """Also register a subject trained here in the MLflow model registry under this name (empty: do not)."""

    def __post_init__(self) -> None:
        check(self.arch in ARCHS, "subject.arch", f"unknown family {self.arch!r}; choose one of: {', '.join(ARCHS)}")
        check(self.size in SIZES, "subject.size", f"unknown size {self.size!r}; choose one of: {', '.join(SIZES)}")
        for name in ("d_model", "n_layer", "n_head", "n_ctx"):
            value = getattr(self, name)
            check(value >= 0, f"subject.{name}", f"must be >= 0 (0 = the size preset's), got {value}")
        check(self.vocab_size >= 257, "subject.vocab_size", f"must be >= 257 (bytes + end of text), got {self.vocab_size}")
        check(0.0 <= self.dropout < 1.0, "subject.dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def trains(self) -> bool:
        """Whether the job builds and trains the subject (no ``ref``)."""
        return not self.ref


def check_ref(cfg: SubjectConfig) -> None:
    """Fail early, in one line, when ``cfg.ref`` is a local path with no saved causal LM (an MLflow URI
    is checked when it is loaded)."""
    from pathlib import Path

    if not cfg.ref or ":/" in cfg.ref:
        return
    local = Path(cfg.ref).expanduser()
    check(local.is_dir() and (local / "config.json").exists(), "subject.ref",
          f"no saved causal LM at {cfg.ref} (expected a save_pretrained directory, or an MLflow URI "
          "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH)")


def subject_lm(
    cfg: SubjectConfig, *, texts: Iterable[str] | None = None, tokenizer: Any = None, seed: int = 0,
    device: str = "cpu",
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of the subject: ``cfg.ref`` loaded (eval mode), or a new, untrained model
    of ``cfg``'s family and shape with ``tokenizer`` (default: a byte-level BPE of ``cfg.vocab_size``
    trained on ``texts``); the new model's special-token ids are the tokenizer's."""
    from xlab.lm.io import load_causal_lm
    from xlab.lm.models import build_causal_lm
    from xlab.lm.tokenizer import train_bpe

    if cfg.ref:
        return load_causal_lm(cfg.ref, device=device)
    if tokenizer is None:
        check(texts is not None, "subject", "a new subject needs texts to train its tokenizer on (or a tokenizer)")
        tokenizer = train_bpe(texts, cfg.vocab_size)
    eos = tokenizer.eos_token_id
    ids = dict(eos_token_id=eos, bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos,
               pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    model = build_causal_lm(
        cfg.arch, cfg.size, vocab_size=len(tokenizer), n_ctx=cfg.n_ctx or None, dropout=cfg.dropout, seed=seed,
        d_model=cfg.d_model or None, n_layer=cfg.n_layer or None, n_head=cfg.n_head or None, **ids,
    )
    return model.to(device), tokenizer


def log_subject(model: Any, tokenizer: Any, cfg: SubjectConfig) -> str:
    """Log a subject the job trained to the active MLflow run as ``subject_model`` (tagged
    ``xlab.subject_model``; registered when ``cfg.registered_name`` is set); returns the URI that
    :func:`subject_lm` and Ray workers load it by."""
    import mlflow

    from xlab.lm.io import log_causal_lm

    uri = log_causal_lm(model, tokenizer, ARTIFACT, registered_name=cfg.registered_name or None)
    mlflow.set_tag("xlab.subject_model", uri)
    return uri
