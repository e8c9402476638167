"""The job registry: every module in the top-level ``jobs`` package is a job.

A job module defines ``Config`` (a dataclass), ``PRESETS`` (name -> Config) and ``main(cfg)``; its
docstring's first line is its one-line description in ``xlab jobs``. Listing reads docstrings with
``ast`` so it does not import torch or Ray.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

from xlab.config import parse_config
from xlab.errors import XlabError


def jobs_dir() -> Path:
    import jobs

    return Path(jobs.__file__).resolve().parent


def project_root() -> Path:
    """The directory holding ``jobs/``, ``robots/`` and ``platform/`` (shipped to clusters as working_dir)."""
    return jobs_dir().parent


def list_jobs() -> dict[str, str]:
    """Job name -> one-line description, sorted by name."""
    out = {}
    for info in sorted(pkgutil.iter_modules([str(jobs_dir())]), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        source = (jobs_dir() / f"{info.name}.py").read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        out[info.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def load_job(name: str) -> ModuleType:
    """Import ``jobs.NAME``; an unknown name is an XlabError listing the jobs."""
    available = list_jobs()
    if name not in available:
        raise XlabError(f"unknown job {name!r}; available jobs: {', '.join(available)} (see `xlab jobs`)")
    module = importlib.import_module(f"jobs.{name}")
    for attr in ("Config", "PRESETS", "main"):
        if not hasattr(module, attr):
            raise XlabError(f"jobs/{name}.py is not a job: it defines no {attr}")
    return module


def parse_job_config(name: str, argv: list[str]) -> Any:
    """The config of job ``name`` from ``--preset P`` and dotted overrides."""
    module = load_job(name)
    return parse_config(module.Config, module.PRESETS, argv, prog=f"xlab run {name}")


def run_job(name: str, argv: list[str]) -> Any:
    """Parse ``argv`` for job ``name`` and run it in this process; returns what ``main`` returns."""
    module = load_job(name)
    cfg = parse_config(module.Config, module.PRESETS, argv, prog=f"xlab run {name}")
    return module.main(cfg)
