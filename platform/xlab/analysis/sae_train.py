"""Training sparse autoencoders (:mod:`xlab.analysis.sae`) on a tensor of activations.

The standard recipe: Adam, sparsity coefficient warmed up over the first steps, learning rate decayed
over the last 20%, decoder-row gradients projected and rows renormalised after every step, and dead
features (no activation in the last ``dead_window`` training tokens) either resampled (ReLU, JumpReLU:
the decoder row is pointed at a badly reconstructed input, Anthropic 2023) or trained through the AuxK
loss (TopK, Gao et al. 2024).

    cfg = SAETrainConfig(activation="topk", expansion=8, k=16, steps=2000)
    result = train_sae(acts, cfg, log_fn=print)     # acts: [n_tokens, d_in]
    result.sae, result.metrics["explained_variance"], result.metrics["dead_frac"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from xlab.analysis.sae import ACTIVATIONS, SAE, sae_metrics
from xlab.config import check

DEAD_HANDLING = ("auto", "resample", "auxk", "none")


@dataclasses.dataclass
class SAETrainConfig:
    """One SAE: architecture and training recipe."""

    activation: str = "topk"
    """relu (L1 penalty), topk (k active) or jumprelu (learned thresholds, L0 penalty)."""
    expansion: int = 8
    """n_features = expansion * d_in."""
    k: int = 16
    """Active features per token (topk)."""
    l1_coeff: float = 5.0
    """lambda of the ReLU SAE's L1 term (inputs scaled to mean norm sqrt(d_in))."""
    l0_coeff: float = 0.1
    """lambda of the JumpReLU SAE's L0 term."""
    jump_init: float = 0.1
    """Initial JumpReLU threshold (scaled units)."""
    bandwidth: float = 0.05
    """Width of the JumpReLU pseudo-gradient kernel."""
    steps: int = 2000
    batch_size: int = 512
    lr: float = 1e-3
    sparsity_warmup: float = 0.05
    """Share of steps over which the sparsity coefficient ramps up linearly from 0."""
    lr_decay: float = 0.2
    """Share of final steps over which the learning rate decays linearly to 0."""
    dead_window: int = 50_000
    """A feature is dead if it has not fired in this many most recent training tokens."""
    dead_handling: str = "auto"
    """auto (auxk for topk, resample otherwise), resample, auxk or none."""
    resample_every: int = 500
    """Steps between dead-feature resamplings (resample mode; none in the last lr_decay share)."""
    aux_coeff: float = 1 / 32
    """Weight of the AuxK loss."""

    def __post_init__(self) -> None:
        check(
            self.activation in ACTIVATIONS,
            "sae.activation",
            f"use one of {ACTIVATIONS}, got {self.activation!r}",
        )
        check(self.expansion >= 1, "sae.expansion", f"must be >= 1, got {self.expansion}")
        check(self.k >= 1, "sae.k", f"must be >= 1, got {self.k}")
        check(self.steps >= 1 and self.batch_size >= 1, "sae.steps/sae.batch_size", "must be positive")
        check(self.dead_handling in DEAD_HANDLING, "sae.dead_handling", f"use one of {DEAD_HANDLING}")
        check(self.l1_coeff >= 0 and self.l0_coeff >= 0, "sae.l1_coeff/sae.l0_coeff", "must be >= 0")
        check(self.jump_init > 0 and self.bandwidth > 0, "sae.jump_init/sae.bandwidth", "must be > 0")

    @property
    def dead_mode(self) -> str:
        if self.dead_handling != "auto":
            return self.dead_handling
        return "auxk" if self.activation == "topk" else "resample"


@dataclasses.dataclass
class SAEResult:
    sae: SAE
    metrics: dict[str, float]
    """sae_metrics on the training activations plus dead_frac (training window) and final losses."""
    history: list[dict[str, float]]


def build_sae(d_in: int, cfg: SAETrainConfig, seed: int = 0) -> SAE:
    n = cfg.expansion * d_in
    return SAE(
        d_in, n, cfg.activation, k=min(cfg.k, n), jump_init=cfg.jump_init, bandwidth=cfg.bandwidth, seed=seed
    )


@torch.no_grad()
def _resample(sae: SAE, dead: Tensor, xs: Tensor, opt: torch.optim.Optimizer) -> int:
    """Point dead features at inputs the SAE reconstructs worst (sampled by squared loss)."""
    idx = torch.nonzero(dead).flatten()
    if len(idx) == 0:
        return 0
    err = (xs - sae.decode_scaled(sae.encode_scaled(xs))).pow(2).sum(-1)
    pick = torch.multinomial(err + 1e-12, len(idx), replacement=len(idx) > len(xs))
    dirs = xs[pick] - sae.b_dec
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive = ~dead
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
    sae.W_dec[idx] = dirs
    sae.W_enc[:, idx] = dirs.t() * 0.2 * enc_norm
    sae.b_enc[idx] = 0.0
    if sae.activation == "jumprelu":
        sae.log_threshold[idx] = sae.log_threshold[alive].mean() if alive.any() else sae.log_threshold[idx]
    # Fresh Adam moments for the rewritten parameters.
    for p, sl in ((sae.W_dec, (idx,)), (sae.W_enc, (slice(None), idx)), (sae.b_enc, (idx,))):
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][sl] = 0.0
    return len(idx)


def train_sae(
    acts: Tensor,
    cfg: SAETrainConfig,
    *,
    seed: int = 0,
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
    log_every: int = 100,
    device: str | torch.device = "cpu",
) -> SAEResult:
    """Train one SAE on ``acts`` ([n_tokens, d_in]); returns the SAE, its metrics and a loss history."""
    check(
        acts.dim() == 2 and len(acts) >= 2,
        "acts",
        f"need [n_tokens, d_in] activations, got {tuple(acts.shape)}",
    )
    torch.manual_seed(seed)
    x = acts.float().to(device)
    sae = build_sae(x.shape[1], cfg, seed).to(device)
    sae.init_from_data(x)
    xs_all = sae.scale(x)
    params = [p for p in sae.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    decay_start = int(cfg.steps * (1 - cfg.lr_decay))
    warm = max(1, int(cfg.steps * cfg.sparsity_warmup))
    coeff = cfg.l1_coeff if cfg.activation == "relu" else cfg.l0_coeff
    last_fired = torch.zeros(sae.n_features, dtype=torch.long, device=device)  # token counter at last firing
    tokens = 0
    gen = torch.Generator(device="cpu").manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    pos = 0
    history: list[dict[str, float]] = []
    resampled = 0
    for step in range(1, cfg.steps + 1):
        if pos + cfg.batch_size > len(x):
            perm, pos = torch.randperm(len(x), generator=gen), 0
        batch = xs_all[perm[pos : pos + cfg.batch_size].to(device)]
        pos += cfg.batch_size
        lr = cfg.lr * (
            1.0 if step <= decay_start else max(0.0, (cfg.steps - step) / max(1, cfg.steps - decay_start))
        )
        for group in opt.param_groups:
            group["lr"] = lr
        terms = sae.loss_terms(batch, coeff * min(1.0, step / warm))
        loss = terms["recon"] + terms["sparsity"]
        tokens += len(batch)
        fired = (terms["f"] > 0).any(0)
        last_fired[fired] = tokens
        dead = (
            (tokens - last_fired) >= cfg.dead_window if tokens >= cfg.dead_window else torch.zeros_like(fired)
        )
        aux = torch.zeros((), device=device)
        if cfg.dead_mode == "auxk":
            aux = sae.aux_k_loss(batch, terms["z"], terms["x_hat"], dead, k_aux=max(1, sae.d_in // 2))
            loss = loss + cfg.aux_coeff * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()
        if (
            cfg.dead_mode == "resample"
            and step % cfg.resample_every == 0
            and step < decay_start
            and dead.any()
        ):
            resampled += _resample(sae, dead, xs_all[perm[: min(len(x), 8192)].to(device)], opt)
            last_fired[dead] = tokens  # give resampled features a fresh window
        if step == 1 or step % log_every == 0 or step == cfg.steps:
            row = {
                "step": step,
                "loss": loss.item(),
                "recon": terms["recon"].item(),
                "sparsity": terms["sparsity"].item(),
                "aux": aux.item(),
                "l0": (terms["f"] > 0).float().sum(-1).mean().item(),
                "dead_frac": dead.float().mean().item(),
            }
            history.append(row)
            if log_fn is not None:
                log_fn(step, row)
    sae.eval()
    metrics = sae_metrics(sae, x)
    window_ok = tokens >= cfg.dead_window
    metrics["dead_frac"] = (
        ((tokens - last_fired) >= cfg.dead_window).float().mean().item()
        if window_ok
        else float(metrics["never_active_frac"])
    )
    metrics["resampled"] = float(resampled)
    if cfg.activation == "jumprelu":
        metrics["threshold_mean"] = sae.threshold.mean().item()
    return SAEResult(sae=sae.cpu(), metrics=metrics, history=history)


def describe(cfg: SAETrainConfig) -> dict[str, Any]:
    """The fields that identify an SAE variant, for tables and run names."""
    return {
        "activation": cfg.activation,
        "expansion": cfg.expansion,
        "k": cfg.k if cfg.activation == "topk" else None,
    }


@torch.no_grad()
def token_activations(
    model: Any,
    tok: Any,
    texts: Sequence[str],
    points: Sequence[str],
    *,
    max_tokens: int,
    block_size: int = 128,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
    start: bool = True,
) -> dict[str, Tensor]:
    """SAE training data: activations at ``points`` on every real token of ``texts`` (``{point: [n, d]}``).

    Each text starts the way the model's tokenizer starts a sequence (:mod:`xlab.lm.sequence_start`),
    exactly as the PS-Eval prompts do (:func:`xlab.analysis.ps_eval.ps_activations` with the same
    ``start``), then is truncated to ``block_size`` tokens; texts are read until ``max_tokens``
    tokens are collected. The start tokens are skipped (with ``start=False``, the first text token):
    the first position is an attention sink with an outsized norm.
    """
    from xlab.analysis.hooks import capture
    from xlab.lm.sequence_start import start_ids

    prefix = start_ids(tok, start)
    skip = max(1, len(prefix))

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {p: [] for p in points}
    total = 0
    try:
        for b in range(0, len(texts), batch_size):
            enc = [
                (prefix + tok(t, add_special_tokens=False)["input_ids"])[:block_size]
                for t in texts[b : b + batch_size]
            ]
            enc = [e for e in enc if len(e) > skip]
            if not enc:
                continue
            width = max(len(e) for e in enc)
            ids = torch.zeros(len(enc), width, dtype=torch.long)
            mask = torch.zeros(len(enc), width, dtype=torch.long)
            for r, e in enumerate(enc):
                ids[r, : len(e)] = torch.tensor(e)
                mask[r, : len(e)] = 1
            keep = mask.bool()
            keep[:, :skip] = False
            with capture(model, points) as acts:
                acts.forward(ids.to(device), attention_mask=mask.to(device))
            for p in points:
                out[p].append(acts[p][0][keep].float())
            total += int(keep.sum())
            if progress is not None:
                progress(total)
            if total >= max_tokens:
                break
    finally:
        model.train(was_training)
    check(total > 0, "texts", "no text gave any token activations")
    return {p: torch.cat(v)[:max_tokens] for p, v in out.items()}
