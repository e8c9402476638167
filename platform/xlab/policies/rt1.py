"""The RT-1 / RT-1-X policy: FiLM image tokenizer, TokenLearner, masked decoder, action-token head.

One forward pass maps a window of ``T`` frames and an instruction embedding to action-token
logits for every frame of the window::

    from xlab.policies import build_policy, load_policy
    policy = build_policy("rt1x-tiny")
    logits = policy(images, embedding, pad_mask)   # [B,T,H,W,3], [B,E], [B,T] -> [B,T,11,256]
    loss, metrics = policy.loss(batch)             # batch from xlab.rlds window batches
    action = policy.act(images, embedding)         # RT-1 action dict of the last frame, numpy [B, ...]
    policy.save_pretrained("ckpt/"); policy = load_policy("ckpt/")

Pipeline per frame: image (uint8 -> [0, 1] -> ImageNet normalization, resized to
``config.image_size`` if needed) -> FiLM-conditioned backbone (``small-film``: a small conv net,
``efficientnet-b3-film``: EfficientNet-B3, randomly initialized) -> ``d_model``-channel feature
map -> :class:`~xlab.policies.token_learner.TokenLearner` -> ``num_image_tokens`` tokens. The
window's sequence interleaves each frame's image tokens with 11 action slots whose inputs are
learned query embeddings, plus learned position embeddings; the decoder uses RT-1's attention
mask (:func:`~xlab.policies.transformer.rt1_attention_mask`) and a linear head maps each action
slot to ``vocab_size`` logits. Tokens are RT-1's (:class:`xlab.rlds.tokenize.ActionTokenizer`).

For step-by-step control of many simulators at once see :mod:`xlab.policies.session`
(:class:`~xlab.policies.session.HistoryBuffer`, :class:`~xlab.policies.session.PolicySession`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xlab.errors import XlabError
from xlab.policies.efficientnet import EfficientNetB3FiLM
from xlab.policies.film import SmallFiLMConvNet
from xlab.policies.token_learner import TokenLearner
from xlab.policies.transformer import RT1Transformer, rt1_attention_mask
from xlab.rlds.tokenize import RT1_BOUNDS, RT1X_BOUNDS, ActionBounds, ActionTokenizer

BACKBONES = ("small-film", "efficientnet-b3-film")
FEED_FORWARDS = ("gelu", "swiglu", "linear")
BOUNDS: dict[str, ActionBounds] = {"rt1x": RT1X_BOUNDS, "rt1": RT1_BOUNDS}
CONFIG_FILE, WEIGHTS_FILE, FORMAT, FORMAT_VERSION = "config.json", "model.pt", "xlab.rt1", 2
# ImageNet statistics: what EfficientNet expects, and harmless for the small conv net.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class PolicyError(XlabError):
    """A bad policy config, input or checkpoint."""


@dataclasses.dataclass
class RT1Config:
    """Hyper-parameters of :class:`RT1Policy` (see the presets in :mod:`xlab.policies.registry`).

    ``head_dim`` defaults to ``d_model // num_heads`` (RT-1 uses 8 heads of 128 on a 512 width).
    ``film_channels`` are the block widths of the ``small-film`` backbone (ignored by EfficientNet).
    """

    image_size: int = 64
    history: int = 4
    embed_dim: int = 384  # all-MiniLM-L6-v2 sentence embeddings
    vocab_size: int = 256
    num_action_tokens: int = 11
    backbone: str = "small-film"
    num_image_tokens: int = 8
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    ff_dim: int = 256
    dropout: float = 0.1
    bounds: str = "rt1x"
    head_dim: int | None = None
    film_channels: tuple[int, ...] = (32, 64, 128)
    token_learner_hidden: int = 64
    feed_forward: str = "gelu"
    """Transformer feed-forward: gelu (2-layer MLP), swiglu (RT-1-X JAX) or linear (RT-1 TF: one Dense)."""
    image_pos_embedding: bool = True
    """Learned position embedding on the feature map before TokenLearner: its attention pooling otherwise
    keeps little of *where* a feature was (a reach target's position), since conv features are shift-equivariant."""
    action_chunk: int = 1
    """Actions predicted per frame: the next k steps (ACT/Octo-style chunking; 1 = RT-1)."""
    state_dim: int = 0
    """Proprioceptive state size fed as one extra token per frame (0: images + instruction only, as RT-1)."""
    name: str = ""  # preset it came from, for bookkeeping only

    def __post_init__(self) -> None:
        self.film_channels = tuple(int(c) for c in self.film_channels)
        if self.backbone not in BACKBONES:
            raise PolicyError(f"unknown backbone {self.backbone!r}; choose one of {list(BACKBONES)}")
        if self.bounds not in BOUNDS:
            raise PolicyError(f"unknown action bounds {self.bounds!r}; choose one of {sorted(BOUNDS)}")
        if self.num_action_tokens != 11:
            raise PolicyError("num_action_tokens must be 11 (the RT-1 action tokenizer's layout)")
        if self.feed_forward not in FEED_FORWARDS:
            raise PolicyError(f"unknown feed_forward {self.feed_forward!r}; choose one of {list(FEED_FORWARDS)}")
        if self.num_image_tokens < 0 or self.state_dim < 0:
            raise PolicyError("num_image_tokens and state_dim must be >= 0 (num_image_tokens 0: no TokenLearner)")
        for field in ("image_size", "history", "embed_dim", "vocab_size", "d_model", "num_layers", "num_heads",
                      "ff_dim", "action_chunk"):
            if int(getattr(self, field)) < 1:
                raise PolicyError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.head_dim is None and self.d_model % self.num_heads:
            raise PolicyError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}; set head_dim")
        if not 0.0 <= self.dropout < 1.0:
            raise PolicyError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def attn_head_dim(self) -> int:
        return self.head_dim or self.d_model // self.num_heads

    @property
    def feature_map_size(self) -> int:
        """Side of the backbone's feature map (small-film: /2 per block; EfficientNet: /32, rounded up)."""
        size = self.image_size
        for _ in range(len(self.film_channels) if self.backbone == "small-film" else 5):
            size = (size + 1) // 2
        return size

    @property
    def image_tokens(self) -> int:
        """Image tokens per frame: TokenLearner's outputs, or every feature-map cell without it."""
        return self.num_image_tokens or self.feature_map_size**2

    @property
    def context_tokens(self) -> int:
        """Tokens per frame that action slots may attend to: image tokens plus the state token."""
        return self.image_tokens + (1 if self.state_dim else 0)

    @property
    def tokens_per_frame(self) -> int:
        return self.context_tokens + self.num_action_tokens

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["film_channels"] = list(self.film_channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RT1Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PolicyError(f"unknown RT1Config fields {unknown}; known: {sorted(known)}")
        return cls(**d)


def sinusoidal_2d(channels: int, size: int) -> torch.Tensor:
    """``[channels, size, size]`` 2-D sine/cosine position code (half the channels for rows, half for
    columns), unit scale: the initial value of the learned image position embedding. TokenLearner's tokens
    are attention-weighted means over the map, so a position code in the features makes each token carry
    the (soft) location of what it attends to, like spatial-softmax keypoints."""
    half = channels // 2
    freqs = torch.exp(torch.arange(0, half, 2).float() * (-np.log(100.0) / max(1, half)))
    coords = torch.linspace(-1.0, 1.0, size)
    code = torch.zeros(channels, size, size)
    for axis, offset in ((0, 0), (1, half)):
        angles = coords[:, None] * freqs[None, :] * np.pi  # [size, half/2]
        enc = torch.cat([angles.sin(), angles.cos()], dim=1).T[: channels - offset if axis else half]  # [<=half, size]
        n = enc.shape[0]
        code[offset:offset + n] = enc[:, :, None] if axis == 0 else enc[:, None, :]
    return code


def _to_tensor(x: Any, device: torch.device) -> torch.Tensor:
    return x.to(device) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), device=device)


class RT1Policy(nn.Module):
    """RT-1 / RT-1-X policy (module docstring has the architecture and usage)."""

    def __init__(self, config: RT1Config):
        super().__init__()
        self.config = config
        #: ``{"name", "dim"}`` of the instruction encoder it was trained with (xlab.policies.encoder), or None.
        self.instruction_encoder: dict[str, Any] | None = None
        c = config
        if c.backbone == "small-film":
            self.backbone: nn.Module = SmallFiLMConvNet(c.embed_dim, c.d_model, c.film_channels)
        else:
            self.backbone = EfficientNetB3FiLM(c.embed_dim, c.d_model)
        m = c.feature_map_size
        self.image_pos = nn.Parameter(sinusoidal_2d(c.d_model, m)) if c.image_pos_embedding else None
        self.token_learner = (TokenLearner(c.d_model, c.num_image_tokens, c.token_learner_hidden)
                              if c.num_image_tokens else None)
        self.state_proj = nn.Linear(c.state_dim, c.d_model) if c.state_dim else None
        # Action slots take learned queries as inputs, never previous actions (no action copying).
        self.action_queries = nn.Parameter(torch.randn(c.num_action_tokens, c.d_model) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(c.history * c.tokens_per_frame, c.d_model) * 0.02)
        self.transformer = RT1Transformer(c.d_model, c.num_layers, c.num_heads, c.attn_head_dim, c.ff_dim, c.dropout,
                                          c.feed_forward)
        # One output per chunk step and action token: [..., k * vocab] -> [..., k, vocab].
        self.head = nn.Linear(c.d_model, c.action_chunk * c.vocab_size)
        self.tokenizer = ActionTokenizer(BOUNDS[c.bounds], c.vocab_size)
        self.register_buffer("_mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------- forward
    def _frames(self, images: torch.Tensor) -> torch.Tensor:
        """[N, H, W, 3] uint8 (0..255) or float (0..1) -> normalized [N, 3, S, S] float."""
        x = images.permute(0, 3, 1, 2)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        s = self.config.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - self._mean) / self._std

    def forward(
        self,
        images: torch.Tensor,
        embedding: torch.Tensor,
        pad_mask: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Action-token logits ``[B, T, K, 11, vocab]`` for every frame of the window and chunk step.

        ``images`` ``[B, T, H, W, 3]``: uint8 in 0..255 or float in 0..1 (``T == config.history``);
        ``embedding`` ``[B, embed_dim]``; ``pad_mask`` ``[B, T]`` bool, ``True`` = real frame,
        ``False`` = front padding (default: all real); ``state`` ``[B, T, state_dim]`` when the policy
        takes proprioception (``config.state_dim > 0``). ``K = config.action_chunk``: logits ``[:, t, j]``
        predict the action of step ``t + j``.
        """
        c = self.config
        if images.dim() != 5 or images.shape[-1] != 3:
            raise PolicyError(f"images must be [B, T, H, W, 3], got {tuple(images.shape)}")
        b, t = images.shape[:2]
        if t != c.history:
            raise PolicyError(f"window has {t} frames, the policy was built for history={c.history}")
        if embedding.shape != (b, c.embed_dim):
            raise PolicyError(f"embedding must be [{b}, {c.embed_dim}], got {tuple(embedding.shape)}")
        if pad_mask is None:
            pad_mask = torch.ones(b, t, dtype=torch.bool, device=images.device)
        x = self._frames(images.reshape(b * t, *images.shape[2:]))
        e = embedding.float().repeat_interleave(t, dim=0)  # every frame is conditioned on the instruction
        features = self.backbone(x, e)
        if self.image_pos is not None:
            features = features + self.image_pos
        if self.token_learner is not None:
            tokens = self.token_learner(features)
        else:  # every cell a token, as RT-1-X's JAX release (81 tokens of a 9x9 map)
            tokens = features.flatten(2).transpose(1, 2)
        parts = [tokens.reshape(b, t, c.image_tokens, c.d_model)]
        if self.state_proj is not None:
            if state is None or state.shape[:2] != (b, t) or state.shape[-1] != c.state_dim:
                got = None if state is None else tuple(state.shape)
                raise PolicyError(f"this policy takes state [{b}, {t}, {c.state_dim}], got {got}")
            parts.append(self.state_proj(state.float())[:, :, None])
        parts.append(self.action_queries.expand(b, t, -1, -1))
        seq = torch.cat(parts, dim=2).reshape(b, t * c.tokens_per_frame, c.d_model)
        seq = seq + self.pos_embedding
        mask = rt1_attention_mask(t, c.context_tokens, c.num_action_tokens, pad_mask.to(torch.bool))
        h = self.transformer(seq, mask).view(b, t, c.tokens_per_frame, c.d_model)
        logits = self.head(h[:, :, c.context_tokens:])  # [B, T, 11, K * V]
        return logits.view(b, t, c.num_action_tokens, c.action_chunk, c.vocab_size).transpose(2, 3)

    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy over the action tokens of the valid frames and chunk steps of a window batch.

        ``batch``: ``image`` [B,T,H,W,3] uint8, ``embedding`` [B,E], ``pad_mask`` [B,T] bool,
        ``window_tokens`` [B,T+K-1,11] long (the tokens of the window's steps and the ``K-1`` after it),
        ``token_mask`` [B,T+K-1] bool (a valid action at that step; default: ``pad_mask``, K = 1), and
        ``state`` [B,T,S] for policies that take it. Frame ``t``'s chunk step ``j`` is scored against
        step ``t + j``. Returns ``(loss, {"token_acc": scalar, "token_acc_per_sample": [B],
        "token_acc_per_token": [11]})``: accuracies over the valid (frame, step) pairs, detached.
        """
        dev, k = self.device, self.config.action_chunk
        pad_mask = _to_tensor(batch["pad_mask"], dev).to(torch.bool)
        state = _to_tensor(batch["state"], dev) if self.config.state_dim else None
        logits = self(_to_tensor(batch["image"], dev), _to_tensor(batch["embedding"], dev), pad_mask, state)
        b, t, _, n, v = logits.shape
        tokens = _to_tensor(batch["window_tokens"], dev).long()
        token_mask = _to_tensor(batch.get("token_mask", pad_mask), dev).to(torch.bool)
        if tokens.shape[1] != t + k - 1 or token_mask.shape[1] != t + k - 1:
            raise PolicyError(f"window_tokens/token_mask must cover {t + k - 1} steps (history {t} + chunk {k} - 1), "
                              f"got {tuple(tokens.shape)} / {tuple(token_mask.shape)}")
        steps = torch.arange(t, device=dev)[:, None] + torch.arange(k, device=dev)[None, :]  # [T, K]
        targets = tokens[:, steps]  # [B, T, K, 11]
        valid = (pad_mask[:, :, None] & token_mask[:, steps])[..., None].expand(b, t, k, n).float()
        ce = F.cross_entropy(logits.reshape(-1, v), targets.reshape(-1), reduction="none").view(b, t, k, n)
        loss = (ce * valid).sum() / valid.sum().clamp(min=1.0)
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == targets).float() * valid
            per_sample = correct.sum(dim=(1, 2, 3)) / valid.sum(dim=(1, 2, 3)).clamp(min=1.0)
            per_token = correct.sum(dim=(0, 1, 2)) / valid.sum(dim=(0, 1, 2)).clamp(min=1.0)
            acc = correct.sum() / valid.sum().clamp(min=1.0)
        return loss, {"token_acc": acc, "token_acc_per_sample": per_sample, "token_acc_per_token": per_token}

    # ---------------------------------------------------------------- inference
    def _window(self, images: Any, pad_mask: Any, state: Any = None) -> tuple[torch.Tensor, ...]:
        """Batch, front-pad or crop a window (and its states) to ``history`` frames."""
        dev, t_model = self.device, self.config.history
        images = _to_tensor(images, dev)
        if state is not None:
            state = _to_tensor(state, dev).float()
        if images.dim() == 4:  # one environment: [T, H, W, 3]
            images = images[None]
            pad_mask = None if pad_mask is None else _to_tensor(pad_mask, dev)[None]
            state = None if state is None else state[None]
        b, t = images.shape[:2]
        pad_mask = (torch.ones(b, t, dtype=torch.bool, device=dev) if pad_mask is None
                    else _to_tensor(pad_mask, dev).to(torch.bool).reshape(b, t))
        if t > t_model:  # keep the most recent frames
            images, pad_mask = images[:, -t_model:], pad_mask[:, -t_model:]
            state = None if state is None else state[:, -t_model:]
        elif t < t_model:  # front-pad, as at an episode start
            pad = t_model - t
            images = torch.cat([images.new_zeros(b, pad, *images.shape[2:]), images], dim=1)
            pad_mask = torch.cat([pad_mask.new_zeros(b, pad), pad_mask], dim=1)
            if state is not None:
                state = torch.cat([state.new_zeros(b, pad, state.shape[-1]), state], dim=1)
        return images, pad_mask, state

    @torch.no_grad()
    def act_tokens(
        self,
        observation_history: Any,
        instruction_embedding: Any,
        mode: str = "argmax",
        temperature: float = 1.0,
        pad_mask: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        state: Any = None,
    ) -> torch.Tensor:
        """Action tokens ``[B, K, 11]`` of the last frame's chunk (arguments as in :meth:`act`)."""
        if mode not in ("argmax", "sample"):
            raise PolicyError(f"mode must be 'argmax' or 'sample', got {mode!r}")
        if isinstance(observation_history, Mapping):
            if pad_mask is None:
                pad_mask = observation_history.get("pad_mask")
            if state is None:
                state = observation_history.get("state")
            observation_history = observation_history["image"]
        images, pad_mask, state = self._window(observation_history, pad_mask, state)
        emb = _to_tensor(instruction_embedding, self.device).float().reshape(images.shape[0], -1)
        was_training = self.training
        self.eval()  # no dropout at inference
        try:
            logits = self(images, emb, pad_mask, state)[:, -1]  # [B, K, 11, V]
        finally:
            self.train(was_training)
        if mode == "argmax":
            return logits.argmax(dim=-1)
        if temperature <= 0:
            raise PolicyError(f"temperature must be > 0, got {temperature}")
        if generator is None and seed is not None:
            generator = torch.Generator(device=logits.device).manual_seed(seed)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return flat.view(probs.shape[:-1])

    def act_chunk(
        self,
        observation_history: Any,
        instruction_embedding: Any,
        mode: str = "argmax",
        temperature: float = 1.0,
        pad_mask: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        state: Any = None,
    ) -> dict[str, np.ndarray]:
        """RT-1 action dicts of the next ``K`` steps after the LAST frame of each window, numpy ``[B, K, ...]``."""
        tokens = self.act_tokens(observation_history, instruction_embedding, mode, temperature, pad_mask,
                                 seed, generator, state)
        return self.tokenizer.detokenize(tokens.cpu().numpy())

    def act(
        self,
        observation_history: Any,
        instruction_embedding: Any,
        mode: str = "argmax",
        temperature: float = 1.0,
        pad_mask: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        state: Any = None,
    ) -> dict[str, np.ndarray]:
        """RT-1 action dict for the LAST frame of each window, numpy arrays ``[B, ...]``.

        ``observation_history``: images ``[B, T, H, W, 3]`` (uint8 numpy or torch; ``[T, H, W, 3]``
        for one environment), or a dict with ``image`` and optional ``pad_mask`` / ``state``. Windows
        shorter than ``history`` are front-padded, longer ones keep their last frames. ``state``
        ``[B, T, state_dim]`` for policies that take proprioception.
        ``instruction_embedding``: ``[B, E]``. ``mode="argmax"`` is deterministic; ``"sample"``
        draws from ``softmax(logits / temperature)`` using ``generator``, a fresh one seeded with
        ``seed``, or torch's global RNG. A chunking policy's first chunk step is the current action
        (:meth:`act_chunk` returns all ``K``).
        """
        chunk = self.act_chunk(observation_history, instruction_embedding, mode, temperature, pad_mask, seed,
                               generator, state)
        return {k: v[:, 0] for k, v in chunk.items()}

    # ---------------------------------------------------------------- checkpoints
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.pt`` (CPU state dict) to ``directory``; returns it."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "class": "RT1Policy", "config": self.config.to_dict(),
                "instruction_encoder": self.instruction_encoder}
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save(state, path / WEIGHTS_FILE)
        return path


def load_policy(directory: str | Path, map_location: str | torch.device = "cpu") -> RT1Policy:
    """Load a policy written by :meth:`RT1Policy.save_pretrained` (on CPU by default), in eval mode."""
    path = Path(directory)
    cfg_file, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not cfg_file.is_file() or not weights.is_file():
        raise PolicyError(f"{path} is not a saved policy: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    meta = json.loads(cfg_file.read_text())
    if meta.get("format") != FORMAT:
        raise PolicyError(f"{cfg_file} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise PolicyError(f"{cfg_file} is policy format version {meta.get('version')}, this xlab reads version "
                          f"{FORMAT_VERSION} (the architecture changed): train the policy again")
    policy = RT1Policy(RT1Config.from_dict(meta["config"]))
    policy.load_state_dict(torch.load(weights, map_location=map_location, weights_only=True))
    encoder = meta.get("instruction_encoder")
    if encoder is not None and not (isinstance(encoder, dict) and isinstance(encoder.get("name"), str)
                                    and isinstance(encoder.get("dim"), int)):
        raise PolicyError(f"{cfg_file}: instruction_encoder must be {{'name': str, 'dim': int}}, got {encoder!r}")
    policy.instruction_encoder = encoder
    return policy.to(map_location).eval()
