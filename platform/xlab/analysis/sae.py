"""Sparse autoencoders over captured LM activations: ReLU (L1), TopK and JumpReLU.

One module holds all three variants; they share the standard recipe:

- inputs are scaled by one constant so that their mean L2 norm is sqrt(d_in) (``input_scale``), so
  hyper-parameters such as the L1 coefficient transfer across layers and models;
- the pre-encoder bias ``b_dec`` (subtracted before encoding, added after decoding) starts at the
  geometric median of the data;
- decoder rows have unit norm: the trainer projects the row-parallel part out of their gradient and
  renormalises after every step (:func:`xlab.analysis.sae_train.train_sae`).

Activations:

- ``relu``: f = ReLU(W_enc (x - b_dec) + b_enc), loss ||x - x_hat||^2 + lambda * sum_i f_i ||W_dec,i||;
- ``topk``: keep the k largest pre-activations (after ReLU), loss ||x - x_hat||^2 (+ AuxK for dead features);
- ``jumprelu``: f = z * H(z - theta) with a learned per-feature threshold theta = exp(log_theta) > 0;
  loss ||x - x_hat||^2 + lambda * ||f||_0, the step function getting a straight-through pseudo-gradient
  through a rectangle kernel of width ``bandwidth`` (Rajamanoharan et al., 2024).

    sae = SAE(d_in=256, n_features=2048, activation="topk", k=32)
    f = sae.encode(x)          # [batch, n_features], non-negative, sparse
    x_hat = sae(x)             # reconstruction in the units of x
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from xlab.errors import XlabError

ACTIVATIONS = ("relu", "topk", "jumprelu")


def _rect(u: Tensor) -> Tensor:
    """Rectangle kernel: 1 on (-1/2, 1/2)."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """z * H(z - theta); d/dz = H(z - theta), d/dtheta = -(theta / eps) * K((z - theta) / eps)."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        dz = (z > theta).to(z.dtype) * grad
        dtheta = -(theta / eps) * _rect((z - theta) / eps) * grad
        return dz, dtheta.sum(0), None


class _Step(torch.autograd.Function):
    """H(z - theta); no gradient to z, d/dtheta = -(1 / eps) * K((z - theta) / eps)."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        dtheta = -(1.0 / eps) * _rect((z - theta) / eps) * grad
        return torch.zeros_like(z), dtheta.sum(0), None


def geometric_median(x: Tensor, iters: int = 30, eps: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows of ``x``."""
    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=1).clamp_min(eps)
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - m).norm() < eps * (1 + m.norm()):
            return new
        m = new
    return m


class SAE(nn.Module):
    """A sparse autoencoder (see the module docstring); works in the scaled input space internally."""

    def __init__(
        self,
        d_in: int,
        n_features: int,
        activation: str = "topk",
        *,
        k: int = 32,
        jump_init: float = 0.1,
        bandwidth: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise XlabError(f"unknown SAE activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")
        if activation == "topk" and not 0 < k <= n_features:
            raise XlabError(f"TopK SAE needs 0 < k <= n_features, got k={k}, n_features={n_features}")
        self.d_in, self.n_features, self.activation = d_in, n_features, activation
        self.k, self.bandwidth = k, bandwidth
        g = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(n_features, d_in, generator=g)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        # Encoder starts as the decoder's transpose (a common, well-conditioned start).
        self.W_enc = nn.Parameter(w_dec.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(n_features))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.log_threshold = nn.Parameter(torch.full((n_features,), math.log(jump_init)))
        self.log_threshold.requires_grad_(activation == "jumprelu")
        self.register_buffer("input_scale", torch.tensor(1.0))

    # -- set-up from data ------------------------------------------------------------------------------

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> None:
        """Set the input scale (mean norm -> sqrt(d_in)) and the pre-bias (geometric median)."""
        mean_norm = x.float().norm(dim=1).mean().clamp_min(1e-8)
        self.input_scale.fill_(math.sqrt(self.d_in) / mean_norm.item())
        xs = x.float() * self.input_scale
        self.b_dec.copy_(geometric_median(xs[: min(len(xs), 8192)]))

    # -- forward -------------------------------------------------------------------------------------

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def scale(self, x: Tensor) -> Tensor:
        return x * self.input_scale

    def pre_acts(self, xs: Tensor) -> Tensor:
        """Encoder pre-activations of scaled inputs."""
        return (xs - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, z: Tensor) -> Tensor:
        if self.activation == "relu":
            return torch.relu(z)
        if self.activation == "topk":
            vals, idx = torch.topk(z, self.k, dim=-1)
            return torch.zeros_like(z).scatter(-1, idx, torch.relu(vals))
        return _JumpReLU.apply(z, self.threshold, self.bandwidth)

    def encode_scaled(self, xs: Tensor) -> Tensor:
        return self.activate(self.pre_acts(xs))

    def decode_scaled(self, f: Tensor) -> Tensor:
        return f @ self.W_dec + self.b_dec

    def encode(self, x: Tensor) -> Tensor:
        """Feature activations of raw (unscaled) inputs."""
        return self.encode_scaled(self.scale(x.float()))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of raw inputs, in their units."""
        return self.decode_scaled(self.encode(x)) / self.input_scale

    # -- losses --------------------------------------------------------------------------------------

    def loss_terms(self, xs: Tensor, sparsity_coeff: float) -> dict[str, Tensor]:
        """Reconstruction and sparsity terms on scaled inputs (sums over dims, means over the batch)."""
        z = self.pre_acts(xs)
        f = self.activate(z)
        x_hat = self.decode_scaled(f)
        recon = (xs - x_hat).pow(2).sum(-1).mean()
        out = {"recon": recon, "f": f, "z": z, "x_hat": x_hat}
        if self.activation == "relu":
            out["sparsity"] = sparsity_coeff * (f * self.W_dec.norm(dim=1)).sum(-1).mean()
        elif self.activation == "jumprelu":
            out["sparsity"] = sparsity_coeff * _Step.apply(z, self.threshold, self.bandwidth).sum(-1).mean()
        else:
            out["sparsity"] = torch.zeros((), device=xs.device)
        return out

    def aux_k_loss(self, xs: Tensor, z: Tensor, x_hat: Tensor, dead: Tensor, k_aux: int) -> Tensor:
        """AuxK (Gao et al., 2024): the top-k_aux dead features reconstruct the residual error."""
        n_dead = int(dead.sum())
        if n_dead == 0:
            return torch.zeros((), device=xs.device)
        k_aux = min(k_aux, n_dead)
        z_dead = torch.where(dead[None, :], z, torch.full_like(z, -torch.inf))
        vals, idx = torch.topk(z_dead, k_aux, dim=-1)
        f_aux = torch.zeros_like(z).scatter(-1, idx, torch.relu(vals))
        err = (xs - x_hat).detach()
        err_hat = f_aux @ self.W_dec
        # Normalised by the error's own size so the term does not dwarf the reconstruction loss.
        return (err - err_hat).pow(2).sum(-1).mean() / err.pow(2).sum(-1).mean().clamp_min(1e-8)

    # -- decoder norm --------------------------------------------------------------------------------

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the part of each decoder row's gradient parallel to the row (keeps norms at 1 to first order)."""
        if self.W_dec.grad is None:
            return
        w = self.W_dec
        self.W_dec.grad -= (self.W_dec.grad * w).sum(1, keepdim=True) * w

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)


@torch.no_grad()
def sae_metrics(sae: SAE, x: Tensor, batch_size: int = 4096) -> dict[str, float]:
    """MSE (per element, scaled units), L0, explained variance and never-active fraction on ``x``.

    Explained variance = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (on scaled inputs; the scale
    cancels).
    """
    sq_err, sq_dev, l0, n = 0.0, 0.0, 0.0, 0
    fired = torch.zeros(sae.n_features, dtype=torch.bool)
    xs_all = sae.scale(x.float())
    mean = xs_all.mean(0)
    for i in range(0, len(xs_all), batch_size):
        xs = xs_all[i : i + batch_size]
        f = sae.encode_scaled(xs)
        x_hat = sae.decode_scaled(f)
        sq_err += (xs - x_hat).pow(2).sum().item()
        sq_dev += (xs - mean).pow(2).sum().item()
        l0 += (f > 0).sum().item()
        fired |= (f > 0).any(0).cpu()
        n += len(xs)
    return {
        "mse": sq_err / (n * sae.d_in),
        "l0": l0 / n,
        "explained_variance": 1.0 - sq_err / max(sq_dev, 1e-12),
        "never_active_frac": 1.0 - fired.float().mean().item(),
    }
