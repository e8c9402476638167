"""SAE invariants and learning on synthetic sparse data with planted features."""

from __future__ import annotations

import pytest
import torch

from xlab.analysis.sae import SAE, geometric_median, sae_metrics
from xlab.analysis.sae_train import SAETrainConfig, build_sae, train_sae
from xlab.errors import XlabError


def planted(n=12000, d=24, n_true=48, active=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_true, d, generator=g)
    feats = feats / feats.norm(dim=1, keepdim=True)
    on = torch.rand(n, n_true, generator=g) < active / n_true
    mags = 0.5 + 1.5 * torch.rand(n, n_true, generator=g)
    x = (on * mags) @ feats + 0.01 * torch.randn(n, d, generator=g) + 0.3
    return x, feats


def test_perfect_reconstruction_has_ev_one_and_scale_is_set():
    x = torch.randn(500, 8) * 3.0
    sae = SAE(8, 16, "relu")
    sae.init_from_data(x)
    # mean norm of scaled inputs is sqrt(d_in)
    assert sae.scale(x).norm(dim=1).mean().item() == pytest.approx(8**0.5, rel=1e-4)
    # An identity SAE: features = +/- coordinates (ReLU of both signs), decoder rows unit vectors.
    with torch.no_grad():
        eye = torch.eye(8)
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    m = sae_metrics(sae, x)
    assert m["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    assert m["mse"] == pytest.approx(0.0, abs=1e-10)
    torch.testing.assert_close(sae(x), x, atol=1e-5, rtol=1e-5)


def test_geometric_median_is_robust_to_outliers():
    x = torch.cat([torch.zeros(95, 3), torch.full((5, 3), 1000.0)])
    assert geometric_median(x).norm() < 1.0
    assert x.mean(0).norm() > 40


@pytest.mark.parametrize("activation", ["relu", "topk", "jumprelu"])
def test_variants_learn_planted_features(activation):
    x, feats = planted()
    cfg = SAETrainConfig(
        activation=activation,
        expansion=4,
        k=4,
        l1_coeff=1.0,
        l0_coeff=0.3,
        steps=800,
        batch_size=256,
        lr=3e-3,
        dead_window=10_000,
        resample_every=200,
    )
    r = train_sae(x, cfg, seed=0, log_every=100)
    sae = r.sae
    # decoder rows stay unit-norm after every step
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(sae.n_features), atol=1e-5, rtol=0)
    # loss falls: the trained SAE reconstructs far better than the same SAE at initialisation
    fresh = build_sae(x.shape[1], cfg, seed=0)
    fresh.init_from_data(x)
    assert r.metrics["mse"] < 0.5 * sae_metrics(fresh, x)["mse"]
    assert r.history[0]["step"] == 1 and r.history[-1]["loss"] < r.history[0]["loss"]
    m = r.metrics
    assert m["explained_variance"] > 0.75
    assert 0.0 <= m["dead_frac"] <= 1.0
    # most planted directions have a decoder row within ~25 degrees
    best = (feats @ sae.W_dec.t()).max(1).values
    assert (best > 0.9).float().mean() > 0.7, best
    f = sae.encode(x[:500])
    assert (f >= 0).all()
    if activation == "topk":
        assert ((f > 0).sum(1) <= 4).all() and (f > 0).sum(1).float().mean() > 3.5
    if activation == "jumprelu":
        # thresholds stay positive and move away from their initial value
        assert (sae.threshold > 0).all()
        assert not torch.allclose(sae.threshold, torch.full_like(sae.threshold, cfg.jump_init))
        # below-threshold pre-activations are zeroed
        z = sae.pre_acts(sae.scale(x[:500]))
        assert torch.all(f[z <= sae.threshold] == 0)


def test_topk_keeps_exactly_k_and_decoder_grad_projection():
    sae = SAE(10, 40, "topk", k=5)
    x = torch.randn(64, 10)
    sae.init_from_data(x)
    f = sae.encode(x)
    z = sae.pre_acts(sae.scale(x))
    assert ((f > 0).sum(1) <= 5).all()
    # exactly the k largest pre-activations survive (where they are positive)
    assert ((f > 0).sum(1) == (torch.topk(z, 5).values > 0).sum(1)).all()
    loss = sae.loss_terms(sae.scale(x), 0.0)["recon"]
    loss.backward()
    sae.project_decoder_grad()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
    torch.testing.assert_close(parallel, torch.zeros(40), atol=1e-5, rtol=0)


def test_jumprelu_threshold_gets_a_pseudo_gradient():
    sae = SAE(6, 12, "jumprelu", jump_init=0.5, bandwidth=1.0)
    x = torch.randn(256, 6)
    sae.init_from_data(x)
    terms = sae.loss_terms(sae.scale(x), 1.0)
    (terms["recon"] + terms["sparsity"]).backward()
    assert sae.log_threshold.grad is not None and sae.log_threshold.grad.abs().sum() > 0


def test_dead_features_are_resampled():
    x, _ = planted(n=4000)
    # A huge L1 kills most features; resampling must revive some of them.
    cfg = SAETrainConfig(
        activation="relu",
        expansion=4,
        l1_coeff=50.0,
        steps=300,
        batch_size=256,
        lr=3e-3,
        dead_window=2000,
        resample_every=100,
    )
    r = train_sae(x, cfg)
    assert r.metrics["resampled"] > 0


def test_bad_configs():
    with pytest.raises(XlabError, match="sae.activation"):
        SAETrainConfig(activation="gelu")
    with pytest.raises(XlabError, match="unknown SAE activation"):
        SAE(4, 8, "tanh")
    with pytest.raises(XlabError, match="k="):
        SAE(4, 8, "topk", k=9)
