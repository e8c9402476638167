"""One hook layer over Hugging Face causal LMs: module maps, activation capture, interventions, logit lens.

Every LLM analysis study reads and edits a model through this module, so the same study code runs on
GPT-2, Llama/Mistral and GPT-NeoX models (downloaded elsewhere or trained by the platform). Points in a
model are named by strings:

    resid.L        output of block L (the residual stream leaving it)
    attn.L         attention output of block L (first element of the attention module's output tuple)
    mlp.L          MLP output of block L
    neurons.L      MLP neurons of block L before the down projection
                   (GPT-2 / NeoX: output of ``mlp.act``; Llama / Mistral: input of ``down_proj``)
    linear:<path>  output channels of the linear (or GPT-2 ``Conv1D``) layer at module path <path>
    final_norm     output of the final layer norm

Usage::

    with capture(model, ["resid.3", "mlp.3"], reduce="mean") as acts:
        acts.forward(input_ids, attention_mask=mask)      # mean over real (unmasked) tokens
    acts["resid.3"][0]                                     # [batch, d_model]

    with intervene(model, [Edit("neurons.0", [5, 17], "set", 2.5)]):
        model.generate(...)                               # applied at every position, prompt and generated

    probs = logit_lens(model, input_ids)                  # [n_layers + 1, vocab]
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from xlab.errors import XlabError

FAMILIES = ("gpt2", "llama", "mistral", "gpt_neox")

# model_type values whose modules follow one of the layouts above (same attribute names).
_MODEL_TYPES = {
    "gpt2": "gpt2",
    "llama": "llama",
    "mistral": "mistral",
    "gpt_neox": "gpt_neox",
}

REDUCTIONS = (None, "mean", "last")


def _linear_types() -> tuple[type, ...]:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - older/newer transformers without Conv1D
        return (nn.Linear,)
    return (nn.Linear, Conv1D)


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain transformers model under a peft wrapper (PeftModel / LoraModel)."""
    seen = 0
    while hasattr(model, "get_base_model") and seen < 4:
        inner = model.get_base_model()
        if inner is model:
            break
        model, seen = inner, seen + 1
    return model


@dataclasses.dataclass
class ModuleMap:
    """Where the standard points of one model live (see the module docstring for the names)."""

    family: str
    model: nn.Module
    blocks: nn.ModuleList
    final_norm: nn.Module
    unembed: nn.Module | None

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def _check_layer(self, layer: int) -> int:
        if not -self.n_layers <= layer < self.n_layers:
            raise XlabError(
                f"layer {layer} out of range: this {self.family} model has {self.n_layers} blocks"
            )
        return layer % self.n_layers

    def block(self, layer: int) -> nn.Module:
        return self.blocks[self._check_layer(layer)]

    def attn(self, layer: int) -> nn.Module:
        b = self.block(layer)
        return b.attn if self.family == "gpt2" else b.attention if self.family == "gpt_neox" else b.self_attn

    def mlp(self, layer: int) -> nn.Module:
        return self.block(layer).mlp

    @property
    def neurons_side(self) -> str:
        """Whether the neurons are the "output" or the "input" of :meth:`neurons_in`."""
        return "input" if self.family in ("llama", "mistral") else "output"

    def neurons_in(self, layer: int) -> nn.Module:
        """Module carrying the MLP neurons: its output (GPT-2/NeoX ``act``) or input (Llama ``down_proj``)."""
        mlp = self.mlp(layer)
        return mlp.down_proj if self.neurons_side == "input" else mlp.act

    def n_neurons(self, layer: int) -> int:
        mlp = self.mlp(layer)
        if self.family == "gpt2":
            return mlp.c_fc.nf
        if self.family == "gpt_neox":
            return mlp.dense_h_to_4h.out_features
        return mlp.down_proj.in_features

    def linear_layers(self) -> dict[str, nn.Module]:
        """Every linear / Conv1D layer by module path, except the unembedding (output channels = units)."""
        types = _linear_types()
        out = {}
        for name, module in self.model.named_modules():
            if isinstance(module, types) and module is not self.unembed:
                out[name] = module
        return out


def _find(model: nn.Module, *paths: str) -> nn.Module | None:
    for path in paths:
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    return None


def _structural_family(model: nn.Module) -> str | None:
    """Guess the layout for a model_type we do not list, from its module names."""
    if (
        _find(model, "transformer.h.0.attn", "h.0.attn") is not None
        and _find(model, "transformer.h.0.mlp.act") is not None
    ):
        return "gpt2"
    if _find(model, "gpt_neox.layers.0.attention", "layers.0.attention") is not None:
        return "gpt_neox"
    if (
        _find(model, "model.layers.0.self_attn", "layers.0.self_attn") is not None
        and _find(model, "model.layers.0.mlp.down_proj", "layers.0.mlp.down_proj") is not None
    ):
        return "llama"
    return None


def module_map(model: nn.Module) -> ModuleMap:
    """The :class:`ModuleMap` of a transformers causal LM (or its base model, or a peft wrapper of it)."""
    model = _unwrap(model)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    family = _MODEL_TYPES.get(model_type) or _structural_family(model)
    if family is None:
        raise XlabError(
            f"unsupported model architecture {model_type or type(model).__name__!r}: the hook layer knows the "
            f"families {', '.join(FAMILIES)} (module layouts of GPT-2, Llama/Mistral and GPT-NeoX); "
            "use a model of one of these families or add its module map to xlab.analysis.hooks"
        )
    if family == "gpt2":
        blocks = _find(model, "transformer.h", "h")
        norm = _find(model, "transformer.ln_f", "ln_f")
    elif family == "gpt_neox":
        blocks = _find(model, "gpt_neox.layers", "layers")
        norm = _find(model, "gpt_neox.final_layer_norm", "final_layer_norm")
    else:
        blocks = _find(model, "model.layers", "layers")
        norm = _find(model, "model.norm", "norm")
    if blocks is None or norm is None:
        raise XlabError(
            f"model of type {model_type!r} does not have the {family} module layout "
            f"(blocks and final norm not found); supported families: {', '.join(FAMILIES)}"
        )
    unembed = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if unembed is None:
        unembed = _find(model, "lm_head", "embed_out")
    return ModuleMap(family=family, model=model, blocks=blocks, final_norm=norm, unembed=unembed)


def point(model: nn.Module, name: str, mm: ModuleMap | None = None) -> tuple[nn.Module, str]:
    """Resolve a point name to ``(module, side)``; side is "output" or "input" of that module."""
    mm = mm or module_map(model)
    if name == "final_norm":
        return mm.final_norm, "output"
    if name.startswith("linear:"):
        path = name[len("linear:") :]
        layers = mm.linear_layers()
        if path not in layers:
            raise XlabError(
                f"unknown linear layer {path!r}; names come from ModuleMap.linear_layers(), e.g. "
                f"{', '.join(list(layers)[:3])}"
            )
        return layers[path], "output"
    kind, _, idx = name.partition(".")
    if kind not in ("resid", "attn", "mlp", "neurons") or not idx.lstrip("-").isdigit():
        raise XlabError(
            f"unknown hook point {name!r}; use resid.L, attn.L, mlp.L, neurons.L, linear:<module path> or final_norm"
        )
    layer = int(idx)
    if kind == "resid":
        return mm.block(layer), "output"
    if kind == "attn":
        return mm.attn(layer), "output"
    if kind == "mlp":
        return mm.mlp(layer), "output"
    return mm.neurons_in(layer), mm.neurons_side


def _first(x: Any) -> Tensor:
    return x[0] if isinstance(x, tuple | list) else x


class Capture(dict):
    """Captured activations by point name: one tensor per forward pass (see :func:`capture`)."""

    def __init__(self, model: nn.Module, names: Sequence[str], reduce: str | None, to_cpu: bool):
        super().__init__({n: [] for n in names})
        self.model = model
        self.reduce = reduce
        self.to_cpu = to_cpu
        self.attention_mask: Tensor | None = None
        """Mask of the batch being run ([batch, seq], 1 = real token); used by reduce="mean"/"last"."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> Any:
        """Run the model on one batch with its mask registered for the reductions."""
        self.attention_mask = attention_mask
        try:
            with torch.no_grad():
                return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            self.attention_mask = None

    def stacked(self, name: str) -> Tensor:
        """All batches of one point concatenated along the batch dimension."""
        return torch.cat(self[name], dim=0)

    def _store(self, name: str, x: Tensor) -> None:
        x = x.detach()
        if self.reduce is not None and x.dim() == 3:
            mask = self.attention_mask
            if mask is None:
                mask = torch.ones(x.shape[:2], device=x.device, dtype=torch.long)
            elif tuple(mask.shape) != tuple(x.shape[:2]):
                raise XlabError(
                    f"attention mask of shape {tuple(mask.shape)} does not match activations {tuple(x.shape)} "
                    f"at {name}; pass the mask of the same batch to Capture.forward"
                )
            m = mask.to(x.device, x.dtype).unsqueeze(-1)
            if self.reduce == "mean":
                x = (x * m).sum(1) / m.sum(1).clamp_min(1)
            else:  # last real token of each row (works for left and right padding)
                idx = (mask.long() * torch.arange(1, mask.shape[1] + 1, device=mask.device)).argmax(1)
                x = x[torch.arange(x.shape[0], device=x.device), idx.to(x.device)]
        self[name].append(x.cpu() if self.to_cpu else x)


@contextlib.contextmanager
def capture(
    model: nn.Module, names: Sequence[str], *, reduce: str | None = None, to_cpu: bool = True
) -> Iterator[Capture]:
    """Collect the activations at ``names`` on every forward pass inside the block.

    ``reduce=None`` keeps ``[batch, seq, d]``; ``"mean"`` averages over tokens and ``"last"`` takes the last
    token, both respecting the attention mask given to :meth:`Capture.forward` (or set as
    ``acts.attention_mask``).
    """
    if reduce not in REDUCTIONS:
        raise XlabError(f"unknown reduce {reduce!r}; use one of {REDUCTIONS}")
    mm = module_map(model)
    store = Capture(model, names, reduce, to_cpu)
    handles = []
    try:
        for name in names:
            module, side = point(model, name, mm)
            if side == "output":

                def hook(_m, _args, out, name=name):
                    store._store(name, _first(out))

                handles.append(module.register_forward_hook(hook))
            else:

                def pre_hook(_m, args, name=name):
                    store._store(name, args[0])

                handles.append(module.register_forward_pre_hook(pre_hook))
        yield store
    finally:
        for h in handles:
            h.remove()


EDIT_MODES = ("set", "zero", "scale")


@dataclasses.dataclass
class Edit:
    """Change ``units`` (indices on the last dimension) of point ``name``: set to / scale by ``value``, or zero."""

    name: str
    units: Sequence[int] | Tensor
    mode: str = "set"
    value: float | Tensor = 0.0

    def __post_init__(self) -> None:
        if self.mode not in EDIT_MODES:
            raise XlabError(f"Edit({self.name!r}): unknown mode {self.mode!r}; use one of {EDIT_MODES}")

    def apply(self, x: Tensor) -> Tensor:
        units = torch.as_tensor(self.units, dtype=torch.long, device=x.device)
        if units.numel() and (units.max() >= x.shape[-1] or units.min() < -x.shape[-1]):
            raise XlabError(f"Edit({self.name!r}): unit index out of range for width {x.shape[-1]}")
        x = x.clone()
        if self.mode == "zero":
            x[..., units] = 0
            return x
        value = torch.as_tensor(self.value, dtype=x.dtype, device=x.device)
        if value.dim() > 0 and value.shape[-1] != units.numel():
            raise XlabError(
                f"Edit({self.name!r}): {value.shape[-1]} values for {units.numel()} units; give one per unit or a scalar"
            )
        if self.mode == "set":
            x[..., units] = value.expand(*x.shape[:-1], units.numel())
        else:
            x[..., units] = x[..., units] * value
        return x


def _edit_hook(edits: list[Edit], side: str) -> Callable:
    def apply(x: Tensor) -> Tensor:
        for e in edits:
            x = e.apply(x)
        return x

    if side == "output":

        def hook(_m, _args, out):
            if isinstance(out, tuple):
                return (apply(out[0]), *out[1:])
            return apply(out)

        return hook

    def pre_hook(_m, args):
        return (apply(args[0]), *args[1:])

    return pre_hook


@contextlib.contextmanager
def intervene(model: nn.Module, edits: Sequence[Edit]) -> Iterator[None]:
    """Apply ``edits`` on every forward pass inside the block (every position, prompt and generated tokens)."""
    mm = module_map(model)
    by_point: dict[str, list[Edit]] = {}
    for e in edits:
        by_point.setdefault(e.name, []).append(e)
    handles = []
    try:
        for name, group in by_point.items():
            module, side = point(model, name, mm)
            hook = _edit_hook(group, side)
            handles.append(
                module.register_forward_hook(hook)
                if side == "output"
                else module.register_forward_pre_hook(hook)
            )
        yield
    finally:
        for h in handles:
            h.remove()


def _positions(input_ids: Tensor, attention_mask: Tensor | None, position: int) -> Tensor:
    """Index of ``position`` among each row's real tokens (all tokens when there is no mask)."""
    b, t = input_ids.shape
    if attention_mask is None:
        return torch.full((b,), position % t, dtype=torch.long)
    out = []
    for row in attention_mask.bool().cpu():
        real = torch.nonzero(row).flatten()
        out.append(real[position])
    return torch.stack(out)


@torch.no_grad()
def logit_lens(
    model: nn.Module, input_ids: Tensor, *, position: int = -1, attention_mask: Tensor | None = None
) -> Tensor:
    """Next-token probabilities read from every layer's residual stream at one position.

    Row 0 reads the embeddings, row L+1 the output of block L; each hidden state gets the final norm and
    the unembedding, except the last, which transformers returns already normed. The last row therefore
    equals the model's own output distribution. ``position`` indexes each row's real tokens when an
    attention mask is given. Returns ``[n_layers + 1, vocab]`` for one sequence (1-D ids or batch of 1),
    else ``[batch, n_layers + 1, vocab]``.
    """
    mm = module_map(model)
    single = input_ids.dim() == 1 or input_ids.shape[0] == 1
    ids = input_ids.view(1, -1) if input_ids.dim() == 1 else input_ids
    mask = attention_mask.view(ids.shape) if attention_mask is not None else None
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hidden = out.hidden_states
    if len(hidden) != mm.n_layers + 1:
        raise XlabError(f"expected {mm.n_layers + 1} hidden states from the model, got {len(hidden)}")
    pos = _positions(ids, mask, position).to(ids.device)
    rows = torch.arange(ids.shape[0], device=ids.device)
    picked = torch.stack([h[rows, pos] for h in hidden], dim=1)  # [batch, n_layers + 1, d]
    normed = torch.cat([mm.final_norm(picked[:, :-1]), picked[:, -1:]], dim=1)
    logits = mm.unembed(normed).float()
    probs = logits.softmax(-1)
    return probs[0] if single else probs
