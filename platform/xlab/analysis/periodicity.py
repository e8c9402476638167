"""Periodicity of the neurons' input maps (Grokking Tickets, Minegishi et al.): spectrum and entropy.

For the modular-arithmetic MLP the input map of hidden neuron ``n`` is row ``n`` of
``W_in · W_E`` (``[n_neurons, p]``: the first projection applied to every number token's embedding);
a generalizing network's neurons become periodic in the token, each concentrated on a few
frequencies. Per neuron, the amplitude spectrum over frequencies ``k = 1..(p-1)/2`` (the DFT
magnitude; ``k = 0`` is the neuron's mean and is left out) is normalized to a distribution
``q_n(k)``, and its **Shannon entropy** ``H_n = -sum_k q_n(k) log q_n(k)`` (nats) measures how spread
it is: ``log K`` for a flat spectrum, 0 for a single frequency. The reported number is the mean over
neurons with a non-zero spectrum (a fully pruned neuron has none), also divided by ``log K``.

The authors' code (``vis_activate.py``) computes something else under the name entropy:
``CrossEntropyLoss(q, q)``, the cross-entropy of ``q`` against ``softmax(q)`` (``q`` used as logits),
``-sum_k q(k) log softmax(q)(k)``, over ``k = 1..floor(p/2)-1`` (the last frequency is dropped).
Because ``q`` lies in [0, 1], ``softmax(q)`` is nearly uniform: the value runs from
``log(K' - 1 + e) - 1`` (one frequency) to ``log K'`` (flat), a range under one nat where the Shannon
entropy spans ``[0, log K]``; it orders spectra the same way only roughly. :func:`reference_entropy`
computes it so runs can be compared with theirs.

    W = input_map(model.state_dict(), p)            # [n_neurons, p]
    spec = neuron_spectra(W)                         # [n_neurons, K]
    periodicity_metrics(spec)                        # entropy, entropy_norm, entropy_ref, top1_share
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from xlab.errors import XlabError

_INPUT_KEYS = (("embed.weight", "inproj.weight"), ("embed.weight", "blocks.0.mlp.w_in.weight"))


def input_map(state: Mapping[str, torch.Tensor], p: int) -> np.ndarray:
    """``W_in · W_E`` restricted to the ``p`` number tokens: ``[n_neurons, p]`` (float64).

    Works for the tickets MLP (``inproj``) and the one-layer transformer (first MLP's ``w_in``); masked
    (pruned) weights are zero in the state, so a ticket's map is the masked product as in the paper.
    """
    for emb_key, in_key in _INPUT_KEYS:
        if emb_key in state and in_key in state:
            w_e = state[emb_key].detach().double().cpu()[:p]  # [p, d]
            w_in = state[in_key].detach().double().cpu()  # [n_neurons, d]
            return (w_in @ w_e.T).numpy()
    raise XlabError(f"no input map in this model: need one of {_INPUT_KEYS} among its weights")


def neuron_spectra(w_in: np.ndarray) -> np.ndarray:
    """Per-neuron DFT amplitude at frequencies ``1..(p-1)//2``: ``[n_neurons, K]``."""
    w = np.asarray(w_in, dtype=np.float64)
    p = w.shape[1]
    if p < 3:
        raise XlabError(f"need at least 3 tokens for a spectrum, got {p}")
    return np.abs(np.fft.rfft(w, axis=1))[:, 1 : (p - 1) // 2 + 1] / (p / 2)


def _distributions(spectra: np.ndarray) -> np.ndarray:
    total = spectra.sum(axis=1, keepdims=True)
    keep = total[:, 0] > 0
    return spectra[keep] / total[keep]


def shannon_entropy(spectra: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each neuron's normalized spectrum (neurons with none are dropped)."""
    q = _distributions(spectra)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * np.log(q), 0.0)
    return -terms.sum(axis=1)


def reference_entropy(spectra: np.ndarray, p: int) -> float:
    """The authors' number: mean over neurons of ``-sum_k q log softmax(q)`` over ``k = 1..floor(p/2)-1``."""
    q = _distributions(spectra[:, : max(1, p // 2 - 1)])
    if len(q) == 0:
        return float("nan")
    logsm = torch.log_softmax(torch.from_numpy(q), dim=1).numpy()
    return float(-(q * logsm).sum(axis=1).mean())


def periodicity_metrics(spectra: np.ndarray, p: int | None = None) -> dict[str, float]:
    """Mean Shannon entropy (``entropy``), divided by ``log K`` (``entropy_norm``), the share of each
    neuron's amplitude at its strongest frequency (``top1_share``, mean), and the authors' ``entropy_ref``."""
    k = spectra.shape[1]
    p = p if p is not None else 2 * k + 1
    h = shannon_entropy(spectra)
    q = _distributions(spectra)
    if len(h) == 0:
        return {"entropy": float("nan"), "entropy_norm": float("nan"), "top1_share": float("nan"),
                "entropy_ref": float("nan"), "neurons": 0.0}
    return {"entropy": float(h.mean()), "entropy_norm": float(h.mean() / math.log(k)) if k > 1 else 0.0,
            "top1_share": float(q.max(axis=1).mean()), "entropy_ref": reference_entropy(spectra, p),
            "neurons": float(len(h))}


def plot_spectra(spectra: np.ndarray, title: str = "", max_neurons: int = 48):
    """Per-neuron amplitude spectra (one small panel each), as a matplotlib figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = min(len(spectra), max_neurons)
    cols = 8
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(2.0 * cols, 1.3 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    ks = np.arange(1, spectra.shape[1] + 1)
    top = float(spectra[:n].max()) if n else 1.0
    for i, ax in enumerate(axes.flat):
        if i < n:
            ax.plot(ks, spectra[i], lw=0.8)
            ax.set_ylim(0, top * 1.05 or 1.0)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def periodicity_over_training(states: Mapping[int, Mapping[str, torch.Tensor]], p: int) -> tuple[dict[int, dict[str, float]], np.ndarray]:
    """:func:`periodicity_metrics` of each step's weights in ``states`` (step -> state dict), and the
    per-neuron spectra of the last step."""
    out, spec = {}, np.zeros((0, 0))
    for step in sorted(states):
        spec = neuron_spectra(input_map(states[step], p))
        out[step] = periodicity_metrics(spec, p)
    return out, spec
