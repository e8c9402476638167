"""Training-curve plots from a history of evaluation rows (``FitResult.history``)."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def curves_figure(history: Sequence[dict], title: str) -> Figure:
    """Accuracy, loss (log) and, when logged, FFS/FCR of embedding/unembedding/neuron-logit map vs step."""
    steps = [r["step"] for r in history]
    fourier = [p for p in ("embed", "unembed", "neuron_logit") if f"fourier/{p}_ffs" in history[0]]
    fig = Figure(figsize=(15 if fourier else 10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if fourier else 2)
    for split, style in (("train", "--"), ("test", "-")):
        axes[0].plot(steps, [r[f"{split}/acc"] for r in history], style, label=f"{split} acc")
        axes[1].semilogy(steps, [max(r[f"{split}/loss"], 1e-12) for r in history], style, label=f"{split} loss")
    axes[0].set_ylim(-0.02, 1.02)
    names = ["accuracy", "loss"]
    if fourier:
        for part in fourier:
            line = axes[2].plot(steps, [r[f"fourier/{part}_ffs"] for r in history], label=f"FFS {part}")[0]
            axes[2].plot(steps, [r[f"fourier/{part}_fcr"] for r in history], ":", color=line.get_color(),
                         label=f"FCR {part}")
        axes[2].set_ylim(-0.02, 1.05)
        names.append("Fourier progress measures")
    for ax, name in zip(axes, names, strict=True):
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig
