"""Language-specific neurons (Kojima et al., NAACL 2024): find them by average precision, tamper with them.

Units are the output channels of every linear layer of a causal LM except the unembedding
(:meth:`xlab.analysis.hooks.ModuleMap.linear_layers`). A unit's response to a sentence is its mean
over the sentence's tokens. For a target language, a unit's score is the average precision (the
same quantity as ``sklearn.metrics.average_precision_score``, ties included, computed for all units
at once) of its response as a classifier of "the sentence is in the target language". The top N/2
and bottom N/2 units by score are the language's units. Tampering sets each of them, at every
position (prompt and generated tokens), to its median response over target-language sentences; the
effect is measured as the share of unconditional generations that a language identifier assigns to
the target language.

    layout = unit_layout(model)
    resp = unit_responses(model, tok, texts, layout)            # [n_sentences, n_units]
    ap = average_precision(resp, labels == "de")                # [n_units]
    units = select_units(ap, 2000)                              # top 1000 + bottom 1000
    edits = tamper_edits(layout, units, median_responses(resp[labels == "de"], units))
    with intervene(model, edits):
        texts = generate_unconditional(model, tok, n=100, seed=0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from xlab.analysis.hooks import Edit, capture, module_map
from xlab.errors import XlabError
from xlab.lm.sequence_start import encode_many, start_ids


@dataclasses.dataclass(frozen=True)
class UnitLayout:
    """Where each global unit index lives: module path, channel, and the block (layer) it belongs to."""

    names: tuple[str, ...]
    """Linear module paths, in model order."""
    widths: tuple[int, ...]
    layers: tuple[int, ...]
    """Block index of each module (-1 for a linear layer outside the blocks)."""
    n_layers: int

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.widths)]).astype(np.int64)

    @property
    def n_units(self) -> int:
        return int(sum(self.widths))

    def locate(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(module index, channel)`` of each global unit index."""
        units = np.asarray(units, dtype=np.int64)
        if units.size and (units.min() < 0 or units.max() >= self.n_units):
            raise XlabError(f"unit index out of range: this model has {self.n_units} units")
        mod = np.searchsorted(self.offsets, units, side="right") - 1
        return mod, units - self.offsets[mod]

    def unit_layers(self) -> np.ndarray:
        """Block index of every unit."""
        return np.repeat(np.asarray(self.layers), self.widths)


def _out_width(module: torch.nn.Module) -> int:
    if hasattr(module, "out_features"):
        return int(module.out_features)
    if hasattr(module, "nf"):  # GPT-2 Conv1D
        return int(module.nf)
    raise XlabError(f"cannot tell the output width of {type(module).__name__}")


def unit_layout(model: torch.nn.Module) -> UnitLayout:
    """Every linear layer's output channels except the unembedding (see module docstring)."""
    mm = module_map(model)
    block_of: dict[int, int] = {}
    for i, block in enumerate(mm.blocks):
        for m in block.modules():
            block_of[id(m)] = i
    linears = mm.linear_layers()
    if not linears:
        raise XlabError("the model has no linear layers besides the unembedding: nothing to score")
    names = tuple(linears)
    return UnitLayout(
        names=names,
        widths=tuple(_out_width(linears[n]) for n in names),
        layers=tuple(block_of.get(id(linears[n]), -1) for n in names),
        n_layers=mm.n_layers,
    )


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def unit_responses(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    layout: UnitLayout | None = None,
    *,
    batch_size: int = 16,
    max_length: int = 128,
    progress: bool = False,
    start: bool = True,
) -> np.ndarray:
    """Mean-over-tokens response of every unit to every text: ``[len(texts), n_units]`` float32.

    Each text starts the way the tokenizer starts a sequence (:mod:`xlab.lm.sequence_start`: XGLM
    ``</s>``, Llama ``<s>``, GPT-2 ``<|endoftext|>``), as ``tokenizer(text)`` does in the authors' code;
    the start tokens count in the mean. ``start=False``: text tokens only. At most ``max_length`` tokens.
    """
    layout = layout or unit_layout(model)
    points = [f"linear:{n}" for n in layout.names]
    out = np.empty((len(texts), layout.n_units), dtype=np.float32)
    off = layout.offsets
    dev = _device(model)
    was_training = model.training
    model.eval()
    # Padded positions are masked out of the mean; any id pads (GPT-2-style tokenizers have no pad token).
    pad = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
    try:
        for b in range(0, len(texts), batch_size):
            enc = [ids[:max_length] for ids in encode_many(tokenizer, texts[b : b + batch_size], start=start)]
            width = max(len(e) for e in enc)
            ids = torch.full((len(enc), width), pad, dtype=torch.long)
            mask = torch.zeros((len(enc), width), dtype=torch.long)
            for r, e in enumerate(enc):
                ids[r, : len(e)] = torch.tensor(e, dtype=torch.long)
                mask[r, : len(e)] = 1
            with capture(model, points, reduce="mean") as acts:
                acts.forward(ids.to(dev), attention_mask=mask.to(dev))
            for j, p in enumerate(points):
                out[b : b + len(enc), off[j] : off[j + 1]] = acts[p][0].float().numpy()
            if progress and (b // batch_size) % 20 == 0:
                print(f"[lang_neurons] responses {b + len(enc)}/{len(texts)}", flush=True)
    finally:
        model.train(was_training)
    return out


def average_precision(scores: np.ndarray, positive: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Average precision of each column of ``scores`` [n, U] as a classifier of ``positive`` [n] (bool).

    Equals ``sklearn.metrics.average_precision_score(positive, scores[:, u])`` for every unit u (tied
    scores form one threshold), computed for all units at once.
    """
    y = torch.as_tensor(np.asarray(positive, dtype=bool))
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise XlabError("average precision needs both positive and negative sentences")
    x = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    if x.shape[0] != len(y):
        raise XlabError(f"{x.shape[0]} score rows for {len(y)} labels")
    n = x.shape[0]
    ranks = torch.arange(1, n + 1, dtype=torch.float64).unsqueeze(1)
    out = []
    for s in range(0, x.shape[1], chunk):
        xs, order = torch.sort(x[:, s : s + chunk], dim=0, descending=True, stable=True)
        pos = y[order].to(torch.float64)
        tp = pos.cumsum(0)
        precision = tp / ranks
        # Tied scores are one threshold: every positive in a tie group gets the group-end precision.
        end = torch.ones_like(xs, dtype=torch.bool)
        end[:-1] = xs[:-1] != xs[1:]
        idx = torch.where(end, torch.arange(n).unsqueeze(1).expand_as(xs), torch.full_like(order, n))
        next_end = torch.flip(torch.cummin(torch.flip(idx, [0]), dim=0).values, [0])
        out.append(((pos * precision.gather(0, next_end)).sum(0) / n_pos).numpy())
    return np.concatenate(out).astype(np.float64)


def select_units(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the top ``n // 2`` and bottom ``n - n // 2`` units by score (top first)."""
    scores = np.asarray(scores)
    if not 0 < n <= len(scores):
        raise XlabError(f"cannot select {n} units from {len(scores)}: choose N between 1 and {len(scores)}")
    order = np.argsort(-scores, kind="stable")
    top = order[: n // 2]
    bottom = order[::-1][: n - n // 2]
    return np.concatenate([top, bottom]).astype(np.int64)


def median_responses(responses: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Median response of each selected unit over the given (target-language) sentences."""
    return np.median(np.asarray(responses)[:, units], axis=0).astype(np.float32)


def tamper_edits(layout: UnitLayout, units: np.ndarray, values: np.ndarray) -> list[Edit]:
    """One ``set`` edit per linear layer: its selected channels fixed to the given values."""
    values = np.asarray(values, dtype=np.float32)
    if len(values) != len(units):
        raise XlabError(f"{len(values)} values for {len(units)} units")
    mods, chans = layout.locate(units)
    edits = []
    for m in np.unique(mods):
        sel = mods == m
        edits.append(Edit(f"linear:{layout.names[m]}", chans[sel].tolist(), "set", torch.from_numpy(values[sel])))
    return edits


def overlap_matrix(selected: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """``M[a, b] = |S_a & S_b| / |S_a|`` for the languages' selected unit sets."""
    langs = list(selected)
    sets = [set(np.asarray(selected[lang]).tolist()) for lang in langs]
    m = np.zeros((len(langs), len(langs)))
    for i, a in enumerate(sets):
        for j, b in enumerate(sets):
            m[i, j] = len(a & b) / max(len(a), 1)
    return langs, m


def layer_distribution(layout: UnitLayout, units: np.ndarray) -> np.ndarray:
    """How many of ``units`` sit in each block (index L) and outside the blocks (last entry)."""
    layers = layout.unit_layers()[np.asarray(units, dtype=np.int64)]
    layers = np.where(layers < 0, layout.n_layers, layers)
    return np.bincount(layers, minlength=layout.n_layers + 1)


@torch.no_grad()
def generate_unconditional(
    model: torch.nn.Module,
    tokenizer,
    n: int = 100,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    seed: int = 0,
    batch_size: int = 50,
    start: bool = True,
) -> list[str]:
    """``n`` samples from the start of a sequence, temperature sampling.

    ``start=True``: the tokens the model's tokenizer starts a sequence with (:mod:`xlab.lm.sequence_start`;
    XGLM ``</s>``, as the authors' ``tokenizer("")``); False: the BOS token (else EOS) whatever the
    tokenizer does (xlab's earlier rule; it starts XGLM from ``<s>``, a token it never saw first).
    Batch b is drawn with seed ``seed + b``, so a run is reproducible and each sample has its own stream.
    """
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prefix = start_ids(tokenizer) if start else ([] if tid is None else [int(tid)])
    if not prefix:
        raise XlabError("the tokenizer has neither a BOS nor an EOS token to start generation from")
    dev = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix[-1]
    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        for b, s in enumerate(range(0, n, batch_size)):
            k = min(batch_size, n - s)
            torch.manual_seed(seed + b)
            ids = torch.tensor([prefix] * k, dtype=torch.long, device=dev)
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temperature, top_k=0,
                top_p=1.0, max_new_tokens=max_new_tokens, pad_token_id=pad,
            )
            texts.extend(tokenizer.batch_decode(out[:, len(prefix) :], skip_special_tokens=True))
    finally:
        model.train(was_training)
    return texts


def language_shares(texts: Sequence[str], languages: Sequence[str], min_chars: int = 3) -> dict[str, float]:
    """Share of ``texts`` identified as each language (py3langid restricted to ``languages``'s six);
    texts with fewer than ``min_chars`` letters count as ``und``."""
    from xlab.studydata.multilingual import identify

    counts = dict.fromkeys([*languages, "und"], 0)
    for t in texts:
        lang = identify(t, min_chars=min_chars)
        counts[lang if lang in counts else "und"] += 1
    return {k: v / max(len(texts), 1) for k, v in counts.items()}


Selection = dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]
"""N -> language -> (selected units, their median target-language responses)."""


def select_per_language(resp: np.ndarray, labels: np.ndarray, languages: Sequence[str],
                        n_values: Sequence[int]) -> tuple[dict[str, np.ndarray], Selection]:
    """Every language's unit scores (AP of "the sentence is in this language") and, for each N, its
    N selected units with their median responses on its sentences."""
    ap = {lang: average_precision(resp, labels == lang) for lang in languages}
    selected: Selection = {}
    for n in sorted(set(n_values)):
        selected[n] = {}
        for lang in languages:
            units = select_units(ap[lang], n)
            selected[n][lang] = (units, median_responses(resp[labels == lang], units))
    return ap, selected


def selection_record(layout: UnitLayout, ap: Mapping[str, np.ndarray], selected: Selection) -> dict:
    """JSON view of the selection: per N and language, the units as [linear layer, channel], their AP
    and the values tampering fixes them to."""
    out = {}
    for n, sel in selected.items():
        out[str(n)] = {}
        for lang, (units, values) in sel.items():
            mods, chans = layout.locate(units)
            out[str(n)][lang] = {"units": [[layout.names[m], int(c)] for m, c in zip(mods, chans, strict=True)],
                                 "ap": ap[lang][units].round(4).tolist(), "values": values.tolist()}
    return out


def tampering_summary(layout: UnitLayout, selected: Selection, baseline: Mapping[str, float],
                      shares: Mapping[int, Mapping[str, Mapping[str, float]]],
                      languages: Sequence[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Study metrics and the share table: the target-language share of generations before tampering
    and after it at each N (``shares[N][target][language]``), the gain at the largest N, the overlap
    of the languages' unit sets there, and the share of their units in the first and last block."""
    n_top = max(selected)
    metrics = {f"share_before/{lang}": baseline[lang] for lang in [*languages, "und"]}
    for n in selected:
        for lang in languages:
            metrics[f"share_after_N{n}/{lang}"] = shares[n][lang][lang]
    gains = {lang: shares[n_top][lang][lang] - baseline[lang] for lang in languages}
    metrics |= {f"share_gain/{lang}": v for lang, v in gains.items()}
    _, overlap = overlap_matrix({lang: selected[n_top][lang][0] for lang in languages})
    off = overlap[~np.eye(len(languages), dtype=bool)]
    metrics |= {"share_gain_mean": float(np.mean(list(gains.values()))), "share_gain_max": float(max(gains.values())),
                "overlap_mean": float(off.mean()), "overlap_max": float(off.max()), "N_top": n_top}
    for lang in languages:
        dist = layer_distribution(layout, selected[n_top][lang][0])
        metrics[f"first_last_layer_share/{lang}"] = float((dist[0] + dist[layout.n_layers - 1]) / dist.sum())
    table = {lang: {"before": round(baseline[lang], 3), **{f"N={n}": round(shares[n][lang][lang], 3)
                                                           for n in sorted(shares)}} for lang in languages}
    return metrics, table
