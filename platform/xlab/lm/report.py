"""Reports of the pretraining comparison: per-trial curves, the corpus x task table and its plots.

    rows = comparison_rows(child_runs, depth_stats, kind_of)      # one row per corpus and task
    print(markdown_table(rows)); accuracy_figure(rows); loss_figure(curves); depth_figure(rows)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def curves_figure(title: str, history: list[dict], evals: list[dict]):
    """Training loss and validation loss per corpus against step."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([r["step"] for r in history], [r["train/loss"] for r in history], label="train", color="k")
    names = sorted({k.split("/")[1] for e in evals for k in e if k.startswith("val/") and k.endswith("/loss")})
    for name in names:
        ax.plot([e["step"] for e in evals], [e[f"val/{name}/loss"] for e in evals], marker="o", label=f"val {name}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def comparison_rows(runs: list[Any], depth: dict[str, dict], kind_of: Callable[[str], str] = lambda _: "?") -> list[dict]:
    """Corpus x task rows: accuracy, valid-label rate, validation perplexity (own corpus), AST depth."""
    rows = []
    for run in runs:
        corpus = run.data.params.get("data.corpus", "?")
        m = run.data.metrics
        for task in ("fld", "babi"):
            rows.append({"corpus": corpus, "kind": kind_of(corpus), "task": task, "status": run.info.status,
                         "accuracy": m.get(f"{task}_accuracy"), "valid_rate": m.get(f"{task}_valid_rate"),
                         "choice_accuracy": m.get(f"{task}_choice_accuracy"),
                         "val_ppl": m.get("val_ppl"), "val_ppl_first": m.get("val_ppl_first"),
                         "train_loss_first": m.get("train_loss_first"), "train_loss_last": m.get("train_loss_last"),
                         "ast_depth_mean": depth.get(corpus, {}).get("mean")})
    return sorted(rows, key=lambda r: (r["task"], r["kind"], r["corpus"]))


def accuracy_figure(rows: list[dict]):
    """Grouped bars: accuracy and valid-label rate per corpus, one panel per task."""
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = [r for r in rows if r["task"] == task and r["accuracy"] is not None]
        x = np.arange(len(sub))
        ax.bar(x - 0.2, [r["accuracy"] for r in sub], 0.4, label="accuracy")
        ax.bar(x + 0.2, [r["valid_rate"] for r in sub], 0.4, label="valid-label rate", alpha=0.7)
        ax.set_xticks(x, [f"{r['corpus']}\n({r['kind']})" for r in sub], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{task}: few-shot exact match")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_figure(curves: dict[str, dict]):
    """Training loss and own-corpus validation loss per corpus against step."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for corpus, h in sorted(curves.items()):
        axes[0].plot([r["step"] for r in h["history"]], [r["train/loss"] for r in h["history"]], label=corpus)
        axes[1].plot([e["step"] for e in h["evals"]], [e[f"val/{corpus}/ppl"] for e in h["evals"]], marker="o",
                     label=corpus)
    axes[0].set_title("training loss")
    axes[1].set_title("validation perplexity (own corpus)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def depth_figure(rows: list[dict]):
    """Mean AST depth of each code corpus against its models' accuracy per task."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for task, marker in (("fld", "o"), ("babi", "s")):
        sub = [r for r in rows if r["task"] == task and r["ast_depth_mean"] is not None and r["accuracy"] is not None]
        ax.scatter([r["ast_depth_mean"] for r in sub], [r["accuracy"] for r in sub], marker=marker, label=task)
        for r in sub:
            ax.annotate(r["corpus"], (r["ast_depth_mean"], r["accuracy"]), fontsize=7)
    ax.set_xlabel("mean AST depth of the corpus")
    ax.set_ylabel("few-shot accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def markdown_table(rows: list[dict]) -> str:
    cols = ["corpus", "kind", "task", "accuracy", "valid_rate", "choice_accuracy", "val_ppl", "val_ppl_first",
            "ast_depth_mean"]

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
