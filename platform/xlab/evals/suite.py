"""The logic suite of the pretraining study: FLD and bAbI few-shot scores of one model as flat metrics.

    from xlab.evals import HFGenerator, logic_suite
    metrics = logic_suite(HFGenerator.from_pretrained("runs/python/model"), n_fld=300, n_babi=300)
    metrics["fld/accuracy"], metrics["fld/valid_rate"], metrics["babi/accuracy"], metrics["babi/task1/accuracy"]
    results = evaluate_logic(generator, LogicEvalConfig(n=60, fld_depth=(1, 2), choice=True))  # what pretrain_lm runs
    results["fld"]["accuracy"], results["babi_choice"]["records"]

Items are generated with fixed seeds, so every model of a comparison sees the same questions and the
same shots. The flat ``task/metric`` names are ready for ``mlflow.log_metrics``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from xlab.evals.babi import babi_mixture
from xlab.evals.fewshot import evaluate_fewshot
from xlab.evals.fld import fld_examples
from xlab.evals.generators import Generator


def logic_suite(generator: Generator, *, n_fld: int = 300, n_babi: int = 300,
                fld_depth: tuple[int, int] = (1, 3), fld_distractors: tuple[int, int] = (0, 20),
                fld_branches: tuple[int, int] = (0, 5), babi_tasks: Sequence[int] = (1,), shots: int = 3,
                mode: str = "generate", seed: int = 0,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Few-shot FLD and bAbI scores of ``generator``: ``{"fld/accuracy": ..., "babi/valid_rate": ...}``.

    Shots come from a separate pool generated with another seed. ``results`` holds the full
    :func:`evaluate_fewshot` outputs (with per-item records) under ``"_results"``.
    """
    metrics: dict[str, Any] = {}
    results: dict[str, Any] = {}
    if n_fld > 0:
        kw = {"depth": fld_depth, "distractors": fld_distractors, "branches": fld_branches}
        items = fld_examples(n_fld, seed=seed, **kw)
        pool = fld_examples(max(shots * 4, 12), seed=seed + 10_000, **kw)
        r = evaluate_fewshot(generator, "fld", items, shots=shots, seed=seed, mode=mode, fewshot_pool=pool,
                             progress=None if progress is None else lambda d, t: progress("fld", d, t))
        results["fld"] = r
        metrics.update({"fld/accuracy": r["accuracy"], "fld/valid_rate": r["valid_rate"]})
        for depth, v in r["by_depth"].items():
            metrics[f"fld/depth{depth}/accuracy"] = v["accuracy"]
    if n_babi > 0:
        tasks = tuple(babi_tasks)
        items = babi_mixture(n_babi, tasks=tasks, seed=seed)
        pool = babi_mixture(max(shots * 4, 12) * len(tasks), tasks=tasks, seed=seed + 10_000)
        r = evaluate_fewshot(generator, "babi", items, shots=shots, seed=seed, mode=mode, fewshot_pool=pool,
                             progress=None if progress is None else lambda d, t: progress("babi", d, t))
        results["babi"] = r
        metrics.update({"babi/accuracy": r["accuracy"], "babi/valid_rate": r["valid_rate"]})
        for task, v in r["by_task"].items():
            metrics[f"babi/task{task}/accuracy"] = v["accuracy"]
    metrics["_results"] = results
    return metrics


@dataclasses.dataclass
class LogicEvalConfig:
    """The logic suite as a config section (``--eval.*`` of pretrain_lm)."""

    n: int = 300
    """Items per task."""
    shots: int = 3
    fld_depth: tuple[int, int] = (1, 3)
    """FLD proof depth range (the paper's default 1-3; FLD* is 1-8)."""
    fld_distractors: tuple[int, int] = (0, 20)
    fld_branches: tuple[int, int] = (0, 5)
    babi_tasks: tuple[int, ...] = (1, 2, 3, 15, 16, 17, 18, 19)
    """bAbI tasks mixed into one evaluation (the harness's mix)."""
    batch_size: int = 16
    """Prompts per generation batch."""
    choice: bool = True
    """Also score by the model's likeliest label among the candidates (always a valid label: accuracy
    without the format effect; the paper's metric is free generation)."""
    seed: int = 0


def evaluate_logic(generator: Generator, cfg: LogicEvalConfig) -> dict[str, dict[str, Any]]:
    """:func:`logic_suite` per mode: ``{"fld": ..., "babi": ...}`` (free generation) plus ``fld_choice`` and
    ``babi_choice`` (likeliest label) when ``cfg.choice``; each the full :func:`evaluate_fewshot` result."""
    out: dict[str, dict[str, Any]] = {}
    for mode, suffix in (("generate", ""), ("choice", "_choice"))[: 2 if cfg.choice else 1]:
        results = logic_suite(generator, n_fld=cfg.n, n_babi=cfg.n, fld_depth=cfg.fld_depth,
                              fld_distractors=cfg.fld_distractors, fld_branches=cfg.fld_branches,
                              babi_tasks=cfg.babi_tasks, shots=cfg.shots, mode=mode, seed=cfg.seed)["_results"]
        out.update({f"{task}{suffix}": r for task, r in results.items()})
    return out
