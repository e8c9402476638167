"""Checkpoints that hold data only: tensors, numbers, strings, lists, tuples and dicts.

A full unpickling ``torch.load`` runs whatever a pickle says, so a checkpoint from a shared bucket,
an MLflow artifact or a teammate's ``resume_from`` could run code on load. Every xlab checkpoint is
written with :func:`save_checkpoint` (which refuses anything that is not plain data, e.g. a config
dataclass: pass ``dataclasses.asdict(cfg)``) and read with :func:`load_checkpoint`
(``weights_only=True``; a pickled object is refused with an :class:`~xlab.errors.XlabError`)::

    save_checkpoint({"model": model.state_dict(), "step": 10}, path)
    state = load_checkpoint(path, map_location="cpu")
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from xlab.errors import XlabError

_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise :class:`XlabError` unless ``obj`` is tensors, scalars, lists, tuples and dicts all the way down."""
    import torch

    if isinstance(obj, (*_SCALARS, torch.Tensor, torch.dtype, torch.device, torch.Size)):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            check_plain(k, f"{where} key")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, list | tuple) and type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise XlabError(f"{where} is a {type(obj).__name__}: checkpoints hold only tensors, numbers, strings, "
                    "lists and dicts (convert dataclasses with dataclasses.asdict)")


def save_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` after checking that ``obj`` is plain data (see :func:`check_plain`)."""
    import torch

    check_plain(obj)
    torch.save(obj, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = None) -> Any:
    """``torch.load(path, weights_only=True)``; a checkpoint that pickles objects is refused, never run."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise XlabError(f"refusing to load {os.fspath(path)}: it holds more than tensors and plain data "
                        f"({first[:200]}); only load checkpoints written by xlab.checkpoint.save_checkpoint") from None
