"""Plots of the language-neuron study: target-language share vs N, overlap of the languages' units, units per layer.

    figs = plots(layout, selected, shares, baseline, ["en", "de"])   # {"share_vs_n.png": Figure, ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xlab.analysis.lang_neurons import Selection, UnitLayout, layer_distribution, overlap_matrix


def plots(layout: UnitLayout, selected: Selection, results: Mapping[int, Mapping[str, Mapping[str, float]]],
          baseline: Mapping[str, float], languages: Sequence[str]) -> dict[str, Figure]:
    """Share of target-language generations vs N (``results[N][target][language]``); overlap of the
    selected sets; units per layer (at the largest N)."""
    langs = list(languages)
    ns = sorted(selected)
    figs = {}
    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for lang in langs:
        line = ax.plot([0, *ns], [baseline[lang], *[results[n][lang][lang] for n in ns]], "o-", label=lang)[0]
        ax.axhline(baseline[lang], color=line.get_color(), ls=":", lw=0.7)
    ax.set_xscale("symlog", linthresh=max(1, min(ns)))
    ax.set_xlim(-0.3, max(ns) * 1.3)
    ax.set_xlabel("N tampered units (0 = none)")
    ax.set_ylabel("share of generations in target language")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    figs["share_vs_n.png"] = fig
    n_top = ns[-1]
    names, m = overlap_matrix({lang: selected[n_top][lang][0] for lang in langs})
    fig = Figure(figsize=(4.8, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w" if m[i, j] < 0.5 else "k")
    fig.colorbar(im)
    ax.set_title(f"overlap of selected units (N={n_top})")
    figs["overlap.png"] = fig
    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(langs)
    for j, lang in enumerate(langs):
        units = selected[n_top][lang][0]
        half = len(units) // 2
        top = layer_distribution(layout, units[:half])[: layout.n_layers]
        bottom = layer_distribution(layout, units[half:])[: layout.n_layers]
        x = np.arange(layout.n_layers) + j * width
        ax.bar(x, top, width, label=lang)
        ax.bar(x, bottom, width, bottom=top, alpha=0.45, color=ax.patches[-1].get_facecolor())
    ax.set_xticks(np.arange(layout.n_layers) + 0.4 - width / 2, [str(i) for i in range(layout.n_layers)])
    ax.set_xlabel("layer (solid: top units, light: bottom units)")
    ax.set_ylabel("selected units")
    ax.set_title(f"selected units per layer (N={n_top})")
    ax.legend(fontsize=7)
    figs["units_per_layer.png"] = fig
    return figs
