"""Periodicity of input maps: spectra of W_in . W_E, a proper Shannon entropy, and the authors' number."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xlab.analysis.periodicity import (
    input_map,
    neuron_spectra,
    periodicity_metrics,
    plot_spectra,
    reference_entropy,
    shannon_entropy,
)
from xlab.errors import XlabError

P = 67
K = (P - 1) // 2


def _cosines(freqs):
    a = np.arange(P)
    return np.stack([np.cos(2 * np.pi * f * a / P + 0.3 * f) for f in freqs])


def test_one_frequency_per_neuron_has_zero_entropy_flat_noise_near_log_k():
    spec = neuron_spectra(_cosines([1, 5, 33]))
    assert spec.shape == (3, K)
    assert [int(np.argmax(r)) + 1 for r in spec] == [1, 5, 33]  # k = (p-1)/2 is kept (the authors drop it)
    np.testing.assert_allclose(shannon_entropy(spec), 0.0, atol=1e-9)
    m = periodicity_metrics(spec, P)
    assert m["entropy"] == pytest.approx(0.0, abs=1e-9) and m["top1_share"] == pytest.approx(1.0)
    # two equal frequencies: log 2
    two = neuron_spectra(_cosines([3]) + _cosines([7]))
    assert shannon_entropy(two)[0] == pytest.approx(math.log(2), rel=1e-6)
    noise = neuron_spectra(np.random.default_rng(0).normal(size=(48, P)))
    assert 0.85 < periodicity_metrics(noise, P)["entropy_norm"] < 1.0


def test_reference_entropy_is_cross_entropy_with_itself_and_compressed():
    peaked, noise = neuron_spectra(_cosines([5])), neuron_spectra(np.random.default_rng(1).normal(size=(8, P)))
    # The authors' CrossEntropyLoss(q, q) over k = 1..32: near log 32 for a single frequency and for noise.
    q = peaked[:, : P // 2 - 1] / peaked[:, : P // 2 - 1].sum(1, keepdims=True)
    want = float(-(torch.from_numpy(q) * torch.log_softmax(torch.from_numpy(q), 1)).sum(1).mean())
    assert reference_entropy(peaked, P) == pytest.approx(want)
    # One frequency gives log(K' - 1 + e) - 1 (K' = 32 frequencies), not 0: the whole range is under one nat.
    kk = P // 2 - 1
    assert reference_entropy(peaked, P) == pytest.approx(math.log(kk - 1 + math.e) - 1, rel=1e-6)
    assert math.log(kk - 1 + math.e) - 1 < reference_entropy(noise, P) <= math.log(kk)
    assert shannon_entropy(peaked).mean() == pytest.approx(0.0, abs=1e-9)
    assert shannon_entropy(noise).mean() > 2.5


def test_input_map_of_the_tickets_mlp_and_pruned_neurons():
    from xlab.models import build_model

    model = build_model("ticket-mlp", d_vocab=P, n_out=P)
    state = model.state_dict()
    w = input_map(state, P)
    assert w.shape == (state["inproj.weight"].shape[0], P)
    np.testing.assert_allclose(w, (state["inproj.weight"].double() @ state["embed.weight"].double().T).numpy(), rtol=1e-9)
    state["inproj.weight"][0] = 0  # a fully pruned neuron has no spectrum: left out
    m = periodicity_metrics(neuron_spectra(input_map(state, P)), P)
    assert m["neurons"] == w.shape[0] - 1
    assert plot_spectra(neuron_spectra(w)).axes
    with pytest.raises(XlabError, match="input map"):
        input_map({"x": torch.zeros(2, 2)}, P)
