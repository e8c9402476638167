"""Fourier progress measures on hand-built matrices with known spectra."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xlab.analysis.fourier import (
    cos_share,
    fcr,
    ffs,
    fourier_basis,
    fourier_basis_names,
    fourier_metrics,
    fourier_spectrum,
    plot_spectrum,
    spectrum_metrics,
)
from xlab.models import build_model

P = 61
K = (P - 1) // 2


def _wave(kind: str, k: int, p: int = P) -> np.ndarray:
    x = np.arange(p)
    f = np.cos if kind == "cos" else np.sin
    return f(2 * math.pi * k * x / p)


def test_basis_orthonormal():
    for p in (3, 7, 59, 61):
        basis = fourier_basis(p)
        assert basis.shape == (p, p)
        assert np.allclose(basis @ basis.T, np.eye(p), atol=1e-10)
    assert fourier_basis_names(5) == ["const", "cos_1", "sin_1", "cos_2", "sin_2"]
    with pytest.raises(ValueError):
        fourier_basis(8)


def test_single_balanced_frequency():
    rng = np.random.default_rng(0)
    e = np.outer(_wave("cos", 3), rng.normal(size=16)) + np.outer(_wave("sin", 3), rng.normal(size=16))
    c, s, n = fourier_spectrum(e)
    assert c.shape == s.shape == n.shape == (K,)
    assert np.argmax(n) == 2 and np.allclose(np.delete(n, 2), 0, atol=1e-9)
    assert ffs(c, s) == pytest.approx(1 / K)
    assert fcr(c, s) == pytest.approx(1.0, abs=0.3)  # two random directions: balanced up to their norms


def test_exactly_balanced_frequency_gives_fcr_one():
    # cos_3 and sin_3 with equal norms in orthogonal directions.
    e = np.stack([_wave("cos", 3), _wave("sin", 3)], axis=1)
    c, s, _ = fourier_spectrum(e)
    assert ffs(c, s) == pytest.approx(1 / K)
    assert fcr(c, s) == pytest.approx(1.0)
    assert cos_share(c, s) == pytest.approx(0.5)


def test_cosine_only_gives_fcr_zero():
    one = fourier_spectrum(_wave("cos", 5)[:, None])
    assert fcr(*one[:2]) == pytest.approx(0.0) and cos_share(*one[:2]) == pytest.approx(1.0)
    every = np.stack([_wave("cos", k) for k in range(1, K + 1)], axis=1)
    c, s, _ = fourier_spectrum(every)
    assert ffs(c, s) == pytest.approx(1.0) and fcr(c, s) == pytest.approx(0.0, abs=1e-9)


def test_ffs_threshold_is_a_parameter():
    e = np.stack([_wave("cos", 1), 0.4 * _wave("sin", 2), 0.8 * _wave("cos", 7)], axis=1)
    c, s, _ = fourier_spectrum(e)
    assert ffs(c, s, eps=0.5) == pytest.approx(2 / K)
    assert ffs(c, s, eps=0.3) == pytest.approx(3 / K)
    assert ffs(c, s, eps=0.9) == pytest.approx(1 / K)


def test_random_gaussian_is_dense_and_balanced():
    e = np.random.default_rng(1).normal(size=(P, 128))
    m = spectrum_metrics(e)
    assert m["ffs"] > 0.9
    assert 0.8 < m["fcr"] < 1.0
    assert 0.4 < m["cos_share"] < 0.6


def test_torch_input_and_constant_component_ignored():
    e = torch.ones(P, 4, dtype=torch.float32)  # only the constant component
    c, s, n = fourier_spectrum(e)
    assert np.allclose(n, 0, atol=1e-9)


def test_fourier_metrics_on_models():
    torch.manual_seed(0)
    model = build_model("grok-transformer", d_vocab=P + 5)
    metrics = fourier_metrics(model, P)
    parts = ("embed", "unembed", "neuron_logit")
    assert set(metrics) == {f"fourier/{part}_{m}" for part in parts for m in ("ffs", "fcr", "cos_share")}
    assert metrics["fourier/embed_ffs"] > 0.9 and metrics["fourier/embed_fcr"] > 0.8  # random init
    # Only number tokens count: operator rows do not change the measure.
    with torch.no_grad():
        model.embed.weight[P:] = 100.0
    assert fourier_metrics(model, P)["fourier/embed_ffs"] == metrics["fourier/embed_ffs"]
    mlp = fourier_metrics(build_model("ticket-mlp", d_vocab=67), 67, eps=0.3, prefix="f")
    assert "f/neuron_logit_fcr" in mlp


def test_plot_spectrum_returns_figure(tmp_path):
    c, s, _ = fourier_spectrum(np.random.default_rng(2).normal(size=(P, 8)))
    fig = plot_spectrum(c, s, "embed")
    fig.savefig(tmp_path / "spec.png")
    assert (tmp_path / "spec.png").stat().st_size > 1000
    assert len(fig.axes[0].patches) == 2 * K
