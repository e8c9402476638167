"""Reports of the pretraining comparison: per-trial summary and curves, the corpus x task table and its plots.

    summary = trial_summary(result, "python", evaluate_logic(gen, cfg.eval))   # one trial's flat metrics
    rows = comparison_rows(child_runs, depth_stats, kind_of)      # one row per corpus and task
    log_comparison(tracker, rows, curves, depth)                  # table, plots, AST-depth correlation
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xlab.lm.pretrain import PretrainResult
    from xlab.track import Tracker


def trial_summary(result: PretrainResult, corpus: str, logic: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Flat metrics of one pretraining trial: validation perplexity at the best step (own corpus and every
    other), first and last training loss, throughput (median of the steady steps), MFU, and the accuracy,
    valid-label rate and speed of each logic task of :func:`xlab.evals.evaluate_logic`."""
    import numpy as np

    best = next((e for e in result.evals if int(e["step"]) == result.best_step), result.evals[-1])
    first, last = result.history[0], result.history[-1]
    steady = result.history[1:] or [first]
    summary = {
        "val_ppl": best[f"val/{corpus}/ppl"], "val_loss": best[f"val/{corpus}/loss"], "best_step": result.best_step,
        "train_loss_first": first["train/loss"], "train_loss_last": last["train/loss"],
        "val_ppl_first": result.evals[0][f"val/{corpus}/ppl"], "train_seconds": result.seconds,
        "tokens_per_s": float(np.median([r["train/tokens_per_s"] for r in steady])), "final_step": result.step,
    }
    if "train/mfu" in last:
        summary["mfu"] = float(np.median([r["train/mfu"] for r in result.history[1:] or [last]]))
    for key in best:
        if key.startswith("val/") and key.endswith("/ppl"):
            summary[f"val_ppl/{key[4:-4]}"] = best[key]
    for task, res in logic.items():
        summary[f"{task}_accuracy"] = res["accuracy"]
        if not task.endswith("_choice"):  # choosing among the labels is valid by construction
            summary[f"{task}_valid_rate"] = res["valid_rate"]
        summary[f"{task}_items_per_s"] = res["items_per_s"]
    return {k: float(v) for k, v in summary.items()}


def log_logic_results(tracker: Tracker, logic: Mapping[str, Mapping[str, Any]], records: int = 50) -> None:
    """Each logic task's result as ``eval/<task>.json`` (its first ``records`` per-item records)."""
    for task, res in logic.items():
        tracker.log_dict({k: v for k, v in res.items() if k != "records"} | {"records": res["records"][:records]},
                         f"eval/{task}.json")


def summary_line(corpus: str, summary: Mapping[str, float]) -> str:
    """One console line: perplexity before and after, and the logic scores."""
    line = (f"{corpus}: val ppl {summary['val_ppl_first']:.1f} -> {summary['val_ppl']:.1f}, "
            f"FLD acc {summary['fld_accuracy']:.3f} (valid {summary['fld_valid_rate']:.2f}), "
            f"bAbI acc {summary['babi_accuracy']:.3f} (valid {summary['babi_valid_rate']:.2f})")
    if "fld_choice_accuracy" in summary:
        line += f"; by label choice FLD {summary['fld_choice_accuracy']:.3f}, bAbI {summary['babi_choice_accuracy']:.3f}"
    return line


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


def log_comparison(tracker: Tracker, rows: list[dict], curves: Mapping[str, dict], depth: Mapping[str, dict]) -> None:
    """Log the comparison to the parent run: the table (JSON and markdown), per-corpus metrics, the accuracy,
    loss and AST-depth plots, and the correlation of AST depth with accuracy per task."""
    import mlflow

    from xlab.analysis.ast_depth import depth_score_correlation

    tracker.log_dict(rows, "comparison.json")
    tracker.log_dict({"markdown": markdown_table(rows)}, "comparison_table.json")
    mlflow.MlflowClient().log_text(tracker.run_id, markdown_table(rows), "comparison.md")
    if rows:
        tracker.log_figure(accuracy_figure(rows), "accuracy_per_corpus.png")
    if curves:
        tracker.log_figure(loss_figure(dict(curves)), "loss_curves.png")
    flat = {}
    for r in rows:
        if r["accuracy"] is not None:
            flat[f"{r['corpus']}/{r['task']}_accuracy"] = r["accuracy"]
            flat[f"{r['corpus']}/{r['task']}_valid_rate"] = r["valid_rate"]
            flat[f"{r['corpus']}/val_ppl"] = r["val_ppl"]
    if flat:
        tracker.log_metrics(flat)
    if depth and any(r["ast_depth_mean"] is not None for r in rows):
        tracker.log_figure(depth_figure(rows), "ast_depth_vs_accuracy.png")
        for task in ("fld", "babi"):
            sub = [r for r in rows if r["task"] == task and r["ast_depth_mean"] and r["accuracy"] is not None]
            corr = depth_score_correlation({r["corpus"]: r["ast_depth_mean"] for r in sub},
                                           {r["corpus"]: r["accuracy"] for r in sub})
            tracker.log_dict(corr, f"ast_depth_correlation_{task}.json")
