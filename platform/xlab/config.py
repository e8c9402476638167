"""Job configs: dataclasses with named presets and dotted-name overrides.

Every job declares a ``Config`` dataclass (nested dataclasses for model/data/optim/...), a dict of
named ``PRESETS`` (at least ``smoke`` and ``paper``) and ``main(cfg)``. Fields are overridden on the
command line by dotted name (``--optim.lr 3e-4``) and by Ray Tune search spaces with the same names
(``{"optim.lr": 3e-4}``); both go through the same parser (tyro), so a value that works in one works
in the other. Unknown fields and wrong types are :class:`~xlab.errors.XlabError`\\ s naming the field.

    cfg = parse_config(Config, PRESETS, ["--preset", "smoke", "--optim.lr", "3e-4"], prog="xlab run toy")
    cfg = apply_overrides(cfg, {"optim.lr": 1e-3, "seed": 2})
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import tyro

from xlab.errors import XlabError

T = TypeVar("T")

# Booleans take explicit values (``--optim.clip False``) so the CLI and Tune overrides share one syntax.
_TYRO_MARKERS = (tyro.conf.FlagConversionOff,)


@dataclasses.dataclass
class TrackingConfig:
    """Where runs are recorded."""

    uri: str | None = None
    """MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    experiment: str | None = None
    """MLflow experiment name; default: the job name."""


@dataclasses.dataclass
class RayConfig:
    """Which Ray cluster runs the work."""

    address: str | None = None
    """Ray cluster to join (e.g. 10.0.0.1:6379 or 'auto'); default: $RAY_ADDRESS, else a new local cluster."""
    num_cpus: int | None = None
    """CPUs of a new local cluster; default: all cores of this machine."""


@dataclasses.dataclass
class JobConfig:
    """Fields every job has. Job configs subclass this and add their own sections."""

    preset: str = "custom"
    """Name of the preset this config started from (set by the CLI; recorded in the run name)."""
    seed: int = 0
    """Base random seed."""
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)


def _one_line(text: str) -> str:
    """Squash tyro's boxed error message (rich or plain ASCII) into one line."""
    lines = []
    for raw in text.splitlines():
        line = re.sub(r"[╭╮╰╯│─]+", " ", raw).strip().strip("|+").strip()
        if line.startswith("Argument helptext") or line.startswith("For full helptext"):
            break
        if not line or re.fullmatch(r"[-=+|\s]+", line):
            continue
        lines.append(line)
    # The box title repeats the first line's gist ("Unrecognized options"): keep the details.
    return " ".join(lines[1:] if len(lines) > 1 else lines)


def _tyro_parse(cls: type[T], default: T, args: Sequence[str], prog: str) -> T:
    """Parse ``args`` into ``cls`` starting from ``default``; errors become one-line XlabErrors."""
    if any(a in ("-h", "--help") for a in args):
        # Help goes straight to the terminal and exits 0.
        return tyro.cli(cls, default=default, args=list(args), prog=prog, config=_TYRO_MARKERS)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            return tyro.cli(cls, default=default, args=list(args), prog=prog, config=_TYRO_MARKERS)
    except SystemExit as e:
        message = _one_line(buf.getvalue()) or f"invalid arguments: {' '.join(args)}"
        raise XlabError(f"{prog}: {message} (see `{prog} --help`)") from e


def parse_config(
    cls: type[T], presets: Mapping[str, T], argv: Sequence[str], prog: str, default_preset: str = "smoke"
) -> T:
    """Build a config from ``--preset NAME`` (default ``smoke``) plus dotted-name overrides in ``argv``."""
    args = list(argv)
    preset = default_preset
    for i, a in enumerate(args):
        if a == "--preset" or a.startswith("--preset="):
            if "=" in a:
                preset = a.split("=", 1)[1]
                del args[i]
            elif i + 1 < len(args):
                preset = args[i + 1]
                del args[i : i + 2]
            else:
                raise XlabError(f"{prog}: --preset needs a value; choose one of: {', '.join(presets)}")
            break
    if preset not in presets:
        raise XlabError(f"{prog}: unknown preset {preset!r}; choose one of: {', '.join(presets)}")
    base = presets[preset]
    if dataclasses.is_dataclass(base) and hasattr(base, "preset"):
        base = dataclasses.replace(base, preset=preset)
    return _tyro_parse(cls, base, args, prog)


def overrides_to_args(overrides: Mapping[str, Any]) -> list[str]:
    """Turn ``{"optim.lr": 3e-4, "data.ops": ["add", "sub"]}`` into tyro arguments."""
    args: list[str] = []
    for key, value in overrides.items():
        args.append(f"--{key}")
        if isinstance(value, list | tuple):
            args.extend(str(v) for v in value)
        else:
            args.append(str(value))
    return args


def apply_overrides(cfg: T, overrides: Mapping[str, Any]) -> T:
    """Return a copy of ``cfg`` with dotted-name ``overrides`` applied (the Ray Tune path)."""
    if not overrides:
        return cfg
    return _tyro_parse(type(cfg), cfg, overrides_to_args(overrides), prog=f"overrides for {type(cfg).__name__}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-dict view of a config (JSON-serialisable)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def flatten(cfg: Any) -> dict[str, Any]:
    """Flat ``{"optim.lr": 0.001, ...}`` view of a config, as logged to MLflow params."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = value

    walk("", to_dict(cfg))
    return out


def check(condition: bool, field: str, message: str) -> None:
    """Validate a config value in ``__post_init__``: raise an XlabError naming the field."""
    if not condition:
        raise XlabError(f"bad config value for {field}: {message}")



def check_max_failures(value: int, field: str = "train.max_failures") -> None:
    """Ray Train restarts: >= 0. -1 (unlimited) is refused: it would rerun a crash that makes no progress forever."""
    check(value >= 0, field, f"must be >= 0, got {value} (-1, unlimited restarts, would retry a crash forever)")
