"""Where MLflow data lives: tracking URI resolution, server checks, experiments.

Default store: an embedded sqlite database ``mlflow.db`` in the working directory (absolute path,
so Ray workers that change directory still find it) with artifacts in ``mlruns/`` beside it.
``MLFLOW_TRACKING_URI`` (or ``--tracking.uri``) points to a real ``mlflow server`` instead.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from xlab.errors import XlabError

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact_uri(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it replaced by ``***@`` (safe to print or log).

    For an MLflow server with basic auth, prefer ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
    to credentials in the URI.
    """
    return _USERINFO.sub("***@", text)


def redact(value: object) -> object:
    """:func:`redact_uri` applied to every string in nested dicts and lists (configs, params)."""
    if isinstance(value, str):
        return redact_uri(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def default_tracking_uri() -> str:
    """``sqlite:///<cwd>/mlflow.db`` (absolute)."""
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def _submitter_fallback() -> str | None:
    """The submitting machine's sqlite store, set by ``xlab submit`` to a loopback address.

    Used only when this node has no ``MLFLOW_TRACKING_URI`` of its own and the store's directory
    exists here (a local head shares the disk; a tunnelled remote cluster does not).
    """
    uri = os.environ.get("XLAB_FALLBACK_TRACKING_URI")
    if uri and uri.startswith("sqlite:///") and Path(uri[len("sqlite:///"):]).parent.is_dir():
        return uri
    return None


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI: explicit ``uri``, else ``$MLFLOW_TRACKING_URI``, else the local sqlite store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or _submitter_fallback() or default_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # A relative sqlite path would resolve differently in Ray workers (they chdir): make it absolute.
        uri = f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    elif "://" not in uri:
        raise XlabError(
            f"tracking URI {uri!r} is not a URI; use http://HOST:PORT for a server or sqlite:///PATH for a local store"
        )
    return uri


def artifact_root(uri: str, experiment: str) -> str | None:
    """Artifact location for a new experiment of a sqlite store: ``mlruns/<experiment>/`` beside the database."""
    if uri.startswith("sqlite:///"):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
        return (Path(uri[len("sqlite:///"):]).parent / "mlruns" / safe).as_uri()
    return None  # a server decides (its --artifacts-destination)


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast if an http(s) tracking server does not answer its health check.

    The MLflow client otherwise retries for minutes before giving up.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as r:
            if r.status != 200:
                raise XlabError(f"MLflow server at {redact_uri(uri)} answered HTTP {r.status} to /health")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise XlabError(
            f"cannot reach the MLflow server at {redact_uri(uri)} ({redact_uri(str(reason))}); start it (`mlflow server --host 127.0.0.1`) "
            "or unset MLFLOW_TRACKING_URI to use the local sqlite store"
        ) from None


def setup_tracking(uri: str | None = None) -> str:
    """Resolve, check and activate the tracking URI; also export it for child processes."""
    import mlflow

    # Per-file download progress bars flood trial logs; keep them off unless the user asked.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # "Creating initial MLflow database tables..." on every new sqlite store is noise for users.
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = resolve_tracking_uri(uri)
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def get_or_create_experiment(name: str, uri: str) -> str:
    """Experiment id for ``name``, created (with a stable artifact root) if missing."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_root(uri, name))
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and create.
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
