"""Atomic RLDS writes: a temporary sibling directory, a completion marker, then a rename into place.

The writer (:func:`~xlab.rlds.write_rlds_examples`) fills ``.<version>.writing-<pid>-<tag>`` next
to the builder directory, adds the statistics and :data:`COMPLETE_MARKER` last, and only then renames
it to ``<name>/<version>`` (an old dataset, with ``overwrite=True``, is moved aside first and deleted
after the rename). A writer killed at any point leaves the old dataset intact and at most a
temporary directory behind.

Readers call :func:`check_complete`: a temporary directory is refused, and so is an xlab dataset
(``metadata.json`` has an ``"xlab"`` entry) without the marker -- TFDS's ``SequentialWriter`` rewrites
``dataset_info.json`` after every episode, so a write killed before this change looks exactly like a
finished one. Datasets from elsewhere (TFDS-prepared, Open X-Embodiment copies) carry no xlab
metadata and no marker; TFDS prepares those atomically itself, so they are accepted.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from xlab.rlds.schema import RLDSError

COMPLETE_MARKER = "xlab_complete.json"
_WRITING = ".writing-"
_OLD = ".replaced-"


def temp_builder_dir(builder_dir: Path) -> Path:
    """A fresh temporary sibling of ``builder_dir`` to write into (same filesystem, so renames are atomic)."""
    return builder_dir.parent / f".{builder_dir.name}{_WRITING}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_temp_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a writer's temporary (or moved-aside) directory."""
    name = Path(path).name
    return name.startswith(".") and (_WRITING in name or _OLD in name)


def mark_complete(directory: Path, **info: Any) -> None:
    """Write the completion marker (last thing before the rename)."""
    tmp = directory / f".{COMPLETE_MARKER}.tmp"
    tmp.write_text(json.dumps({"complete": True, **info}, sort_keys=True))
    os.replace(tmp, directory / COMPLETE_MARKER)


def commit(tmp_dir: Path, builder_dir: Path, overwrite: bool) -> None:
    """Rename a finished ``tmp_dir`` to ``builder_dir``; an old dataset there is replaced only if ``overwrite``."""
    if builder_dir.exists() and any(builder_dir.iterdir()):
        if not overwrite:
            raise RLDSError(f"an RLDS dataset already exists at {builder_dir}; pass overwrite=True to replace it")
        old = builder_dir.parent / f".{builder_dir.name}{_OLD}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(builder_dir, old)
        try:
            os.rename(tmp_dir, builder_dir)
        except BaseException:
            os.rename(old, builder_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    if builder_dir.exists():
        builder_dir.rmdir()  # empty: os.rename would replace it anyway; be explicit
    os.rename(tmp_dir, builder_dir)


def check_complete(builder_dir: str | os.PathLike) -> None:
    """Refuse a local dataset whose write did not finish (see the module docstring); ``gs://`` paths pass."""
    path = str(builder_dir).rstrip("/")
    if "://" in path:
        return
    p = Path(path)
    if is_temp_dir(p):
        raise RLDSError(
            f"RLDS dataset at {p} is incomplete: it is the temporary directory of a write that did not finish; "
            "delete it and re-run collect_demos"
        )
    if (p / COMPLETE_MARKER).exists():
        return
    meta_path = p / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    except (OSError, ValueError):
        meta = {"xlab": "unreadable"}
    if isinstance(meta, dict) and "xlab" in meta:
        raise RLDSError(
            f"RLDS dataset at {p} is incomplete (no {COMPLETE_MARKER}): its write was interrupted or it predates "
            "atomic writes; re-run collect_demos (or write_rlds with overwrite=True) to rewrite it"
        )
