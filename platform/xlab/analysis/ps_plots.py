"""Plots of the PS-Eval study: PS-Eval vs MSE and L0, the best SAE per layer and module, the sense signal.

Layers are labelled with xlab's block index and the TransformerLens hook of the same activation, so the
plots compare with the paper's::

    figs = summary_plots(table, dense, n_layers=4)      # {"ps_eval_vs_mse_l0.png": Figure, ...}
"""

from __future__ import annotations

from typing import Any

from xlab.analysis.ps_study import MODULES


def layer_label(layer: int, n_layers: int) -> str:
    """Plot label of block ``layer``'s output with its TransformerLens name, so plots compare with the paper's."""
    from xlab.analysis.ps_eval import tl_hook_name

    return f"layer {layer}\n(TL {tl_hook_name('resid', layer, n_layers).replace('.hook_', ' ')})"


def summary_plots(table: Any, dense: Any, n_layers: int) -> dict[str, Any]:
    """PS-Eval F1 / accuracy vs MSE and vs L0 (one colour per module, one marker per activation), and
    the best F1 per layer and module with the dense baseline. Layers are labelled with xlab's block
    index and the TransformerLens residual hook of the same activation (resid.L = blocks.{L+1}.hook_resid_pre)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"resid": "tab:blue", "mlp": "tab:green", "attn": "tab:red"}
    markers = {"relu": "o", "topk": "s", "jumprelu": "^"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for r, metric in enumerate(("ps_f1", "ps_accuracy")):
        for c, x in enumerate(("mse", "l0")):
            ax = axes[r][c]
            for row in table.itertuples():
                ax.scatter(
                    getattr(row, x),
                    getattr(row, metric),
                    c=colors.get(row.module, "k"),
                    marker=markers.get(row.activation, "x"),
                    s=20 + 6 * row.expansion**0.5 * 3,
                    alpha=0.8,
                )
            # Balanced classes: chance accuracy is 0.5, and always predicting "same sense" gives F1 = 2/3.
            ax.axhline(0.5 if metric == "ps_accuracy" else 2 / 3, color="k", lw=0.6, ls=":")
            ax.set_xlabel(x.upper() if x == "mse" else "L0")
            ax.set_ylabel(metric.replace("ps_", "PS-Eval "))
            if x == "l0":
                ax.set_xscale("log")
    handles = [plt.Line2D([], [], color=v, marker="o", ls="", label=k) for k, v in colors.items()]
    handles += [plt.Line2D([], [], color="gray", marker=v, ls="", label=k) for k, v in markers.items()]
    axes[0][0].legend(handles=handles, fontsize=8)
    fig.suptitle("PS-Eval vs reconstruction (MSE) and sparsity (L0); marker size = expansion")
    fig.tight_layout()

    fig2, axes2 = plt.subplots(1, 2, figsize=(12, 4))
    layers = sorted(table.layer.unique())
    width = 0.8 / max(1, len(MODULES))
    for ax, (metric, dense_col, chance) in zip(
        axes2, (("ps_accuracy", "accuracy", 0.5), ("ps_f1", "f1", 2 / 3)), strict=True
    ):
        best = table.groupby(["layer", "module"], as_index=False)[metric].max()
        for i, mod in enumerate(MODULES):
            sub = best[best.module == mod].set_index("layer")
            xs = [j + i * width for j in range(len(layers))]
            ax.bar(
                xs,
                [sub[metric].get(lay, float("nan")) for lay in layers],
                width,
                color=colors[mod],
                label=f"{mod} (best SAE)",
            )
            dsub = dense[dense.module == mod].set_index("layer")
            ax.scatter(
                xs,
                [dsub[dense_col].get(lay, float("nan")) for lay in layers],
                color="k",
                marker="_",
                s=200,
                label="dense arg-max" if i == 0 else None,
                zorder=3,
            )
        ax.axhline(chance, color="k", lw=0.6, ls=":")
        ax.set_xticks([j + width for j in range(len(layers))], [layer_label(lay, n_layers) for lay in layers])
        ax.set_ylabel(metric.replace("ps_", "PS-Eval "))
        ax.set_ylim(0, 1)
        ax.set_title(f"Best {metric.replace('ps_', 'PS-Eval ')} per layer and module")
    axes2[0].legend(fontsize=8)
    fig2.tight_layout()
    figs = {"ps_eval_vs_mse_l0.png": fig, "ps_eval_by_layer_module.png": fig2}
    if "cos_auc_centered" in dense:
        fig3, ax = plt.subplots(figsize=(7, 4))
        for mod in MODULES:
            sub = dense[dense.module == mod].sort_values("layer")
            ax.plot(sub.layer, sub.cos_auc_centered, marker="o", color=colors[mod], label=mod)
        ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.set_xlabel("layer (xlab block output = TransformerLens blocks.{L+1}.hook_resid_pre)")
        ax.set_ylabel("ROC AUC (same vs different sense)")
        ax.set_title("Sense signal in the raw activations (cosine of word-centred activations)")
        ax.legend(fontsize=8)
        fig3.tight_layout()
        figs["sense_signal_by_layer_module.png"] = fig3
    return figs
