"""PS-Eval: do SAE features separate the senses of polysemous words? (Minegishi et al., ICLR 2025).

A PS-Eval item is a pair of contexts sharing a target word, labelled 1 (same sense) or 0 (different
senses). Each context becomes the prompt ``"{context} The {target_word} means"``; the activation at a
hook point is read at the last occurrence of the target token (the one in the template), encoded by
the SAE, and its arg-max feature taken. The pair is predicted "same sense" when both contexts give the
same arg-max feature. Confusion: label 1 + match = TP, label 1 + no match = FN, label 0 + match = FP,
label 0 + no match = TN. Pairs are kept only if the target word is a single token with the same id
in both contexts, and classes are balanced.

    pairs = load_pairs("ps_eval.jsonl")                   # or xlab.studydata.polysemy.polysemy_pairs(...)
    pairs, dropped = filter_single_token(pairs, tok)
    pairs = balance_pairs(pairs, seed=0)
    acts = ps_activations(model, tok, pairs, ["resid.2", "attn.2"])   # {point: [n_pairs, 2, d]}
    ps_eval(sae, acts["resid.2"], [p.label for p in pairs])            # accuracy, precision, recall, ...
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xlab.analysis.hooks import capture
from xlab.errors import XlabError
from xlab.lm.sequence_start import start_ids

FIELDS = ("context_1", "context_2", "target_word", "label")


@dataclasses.dataclass(frozen=True)
class PSPair:
    context_1: str
    context_2: str
    target_word: str
    label: int
    """1 = same sense, 0 = different senses."""


def ps_prompt(context: str, target_word: str) -> str:
    return f"{context} The {target_word} means"


# -- loading ------------------------------------------------------------------------------------------

_TRUE = {"1", "t", "true", "yes", "same"}
_FALSE = {"0", "f", "false", "no", "different"}


def _label(value: Any, where: str) -> int:
    s = str(value).strip().lower()
    if s in _TRUE:
        return 1
    if s in _FALSE:
        return 0
    raise XlabError(f"{where}: label {value!r} is not one of 1/0, T/F, true/false")


def _record(rec: dict, where: str) -> PSPair:
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise XlabError(
            f"{where}: missing field(s) {', '.join(missing)}; PS-Eval/WiC records need {', '.join(FIELDS)}"
        )
    return PSPair(
        str(rec["context_1"]), str(rec["context_2"]), str(rec["target_word"]), _label(rec["label"], where)
    )


def load_pairs(path: str | Path) -> list[PSPair]:
    """Read PS-Eval / WiC-style pairs (fields context_1, context_2, target_word, label).

    Formats: ``.json`` (a list of records, or an object with a ``data``/``pairs``/``examples`` list),
    ``.jsonl``, and ``.tsv``/``.csv`` with a header row naming the fields.
    """
    path = Path(path)
    if not path.is_file():
        raise XlabError(f"PS-Eval file {path} not found; give a .json, .jsonl, .tsv or .csv file")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict):
            key = next((k for k in ("data", "pairs", "examples") if isinstance(data.get(k), list)), None)
            if key is None:
                raise XlabError(f"{path}: JSON object without a data/pairs/examples list")
            data = data[key]
        rows = data
    elif suffix in (".tsv", ".csv"):
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        rows = list(csv.DictReader(lines, delimiter="\t" if suffix == ".tsv" else ","))
    else:
        raise XlabError(f"{path}: unknown PS-Eval format {suffix!r}; use .json, .jsonl, .tsv or .csv")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise XlabError(f"{path}: expected a list of records with fields {', '.join(FIELDS)}")
    return [_record(r, f"{path} record {i}") for i, r in enumerate(rows)]


# -- filtering ----------------------------------------------------------------------------------------


def _token_at(offsets: Sequence[tuple[int, int]], ids: Sequence[int], start: int, end: int) -> int | None:
    """The id of the single token covering [start, end) (a leading space may be part of it), else None."""
    covering = [i for i, (s, e) in enumerate(offsets) if e > start and s < end and e > s]
    if len(covering) != 1:
        return None
    s, e = offsets[covering[0]]
    return ids[covering[0]] if s <= start and e >= end else None


def target_token(tok: Any, context: str, target_word: str, require_in_context: bool = True) -> int | None:
    """Token id of ``target_word`` in the prompt's template ("The {word} means") if it is one token there.

    ``require_in_context`` (an xlab addition, off in the paper protocol): the word must also occur
    verbatim in the context as the same single token; that drops WiC pairs whose context has an
    inflected or capitalized form of the lemma ("banks", "Bank").
    """
    prompt = ps_prompt(context, target_word)
    enc = tok(prompt, return_offsets_mapping=True, add_special_tokens=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    start = len(prompt) - len(" means") - len(target_word)
    t_template = _token_at(offsets, ids, start, start + len(target_word))
    if t_template is None or not require_in_context:
        return t_template
    hits = [m.start() for m in re.finditer(rf"\b{re.escape(target_word)}\b", context)]
    if not hits:
        return None
    t_context = _token_at(offsets, ids, hits[-1], hits[-1] + len(target_word))
    return t_template if t_context == t_template else None


def filter_single_token(
    pairs: Sequence[PSPair], tok: Any, require_in_context: bool = True
) -> tuple[list[PSPair], int]:
    """Keep pairs whose target word is one token with the same id in both prompts; returns (kept, dropped).

    ``require_in_context=False`` is the paper's filter (the word in the template only); True also
    needs the word verbatim, as that token, in both contexts (see :func:`target_token`).
    """
    if not getattr(tok, "is_fast", False):
        raise XlabError("PS-Eval needs a fast (Rust) tokenizer for offset mappings")
    kept = []
    for p in pairs:
        a = target_token(tok, p.context_1, p.target_word, require_in_context)
        if a is not None and a == target_token(tok, p.context_2, p.target_word, require_in_context):
            kept.append(p)
    return kept, len(pairs) - len(kept)


def balance_pairs(pairs: Sequence[PSPair], seed: int = 0) -> list[PSPair]:
    """Subsample the larger class so both labels have the same count (deterministic in ``seed``)."""
    pos = [p for p in pairs if p.label == 1]
    neg = [p for p in pairs if p.label == 0]
    n = min(len(pos), len(neg))
    rng = random.Random(seed)
    out = rng.sample(pos, n) + rng.sample(neg, n)
    rng.shuffle(out)
    return out


# -- activations --------------------------------------------------------------------------------------


@torch.no_grad()
def ps_activations(
    model: Any,
    tok: Any,
    pairs: Sequence[PSPair],
    points: Sequence[str],
    *,
    batch_size: int = 16,
    occurrence: str = "last",
    start: bool = True,
    require_in_context: bool = True,
) -> dict[str, Tensor]:
    """Activations at ``points`` on the target token of both prompts: ``{point: [n_pairs, 2, d]}``.

    Each prompt starts the way the model's tokenizer starts a sequence (:mod:`xlab.lm.sequence_start`;
    GPT-2: ``<|endoftext|>``, as TransformerLens prepends in the authors' code); ``start=False``: the
    prompt's own tokens only.

    ``occurrence="last"`` (PS-Eval): the last occurrence, the one in the template "The {word} means";
    ``"context"``: the last occurrence inside the context sentence itself (a diagnostic; needs
    ``require_in_context``, the filter that guarantees such an occurrence).
    """
    if occurrence not in ("last", "context"):
        raise XlabError(f"occurrence must be 'last' or 'context', got {occurrence!r}")
    if occurrence == "context" and not require_in_context:
        raise XlabError("occurrence='context' needs require_in_context=True (the word must be in the context)")
    prefix = start_ids(tok, start)
    prompts, targets = [], []
    for i, p in enumerate(pairs):
        for ctx in (p.context_1, p.context_2):
            t = target_token(tok, ctx, p.target_word, require_in_context)
            if t is None:
                raise XlabError(
                    f"pair {i} ({p.target_word!r}): target word is not a single token in both contexts; "
                    "run filter_single_token first"
                )
            prompts.append(prefix + tok(ps_prompt(ctx, p.target_word), add_special_tokens=False)["input_ids"])
            targets.append(t)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {n: [] for n in points}
    try:
        for b in range(0, len(prompts), batch_size):
            chunk, tchunk = prompts[b : b + batch_size], targets[b : b + batch_size]
            width = max(len(x) for x in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            pos = []
            for r, (x, t) in enumerate(zip(chunk, tchunk, strict=True)):
                ids[r, : len(x)] = torch.tensor(x)
                mask[r, : len(x)] = 1
                hits = [i for i, v in enumerate(x) if v == t]
                pos.append(hits[-1] if occurrence == "last" else hits[-2])
            rows, cols = torch.arange(len(chunk)), torch.tensor(pos)
            with capture(model, points) as acts:
                acts.forward(ids.to(device), attention_mask=mask.to(device))
            for n in points:
                out[n].append(acts[n][0][rows, cols].float())
    finally:
        model.train(was_training)
    return {n: torch.cat(v).view(len(pairs), 2, -1) for n, v in out.items()}


def tl_hook_name(module: str, layer: int, n_layers: int) -> str:
    """The TransformerLens hook that reads the same activation as xlab's point ``{module}.{layer}``.

    xlab's ``resid.L`` is block L's output (``hidden_states[L + 1]``), which TransformerLens (and
    the PS-Eval code) calls ``blocks.{L+1}.hook_resid_pre`` (``blocks.{L}.hook_resid_post`` for the
    last block); ``mlp.L`` and ``attn.L`` are ``blocks.L.hook_mlp_out`` / ``blocks.L.hook_attn_out``.
    """
    if module == "resid":
        return f"blocks.{layer + 1}.hook_resid_pre" if layer + 1 < n_layers else f"blocks.{layer}.hook_resid_post"
    if module in ("mlp", "attn"):
        return f"blocks.{layer}.hook_{module}_out"
    raise XlabError(f"no TransformerLens name for module {module!r}; use resid, mlp or attn")


# -- metrics ------------------------------------------------------------------------------------------


def confusion(match: Sequence[bool] | Tensor, labels: Sequence[int] | Tensor) -> dict[str, int]:
    m = torch.as_tensor(match, dtype=torch.bool)
    y = torch.as_tensor(labels, dtype=torch.long) == 1
    return {
        "tp": int((y & m).sum()),
        "fn": int((y & ~m).sum()),
        "fp": int((~y & m).sum()),
        "tn": int((~y & ~m).sum()),
    }


def ps_metrics(c: dict[str, int]) -> dict[str, float]:
    """Accuracy, precision, recall, specificity and F1 of a confusion (0 where a ratio is undefined)."""
    tp, fn, fp, tn = c["tp"], c["fn"], c["fp"], c["tn"]

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": ratio(tp + tn, tp + fn + fp + tn),
        "precision": precision,
        "recall": recall,
        "specificity": ratio(tn, tn + fp),
        "f1": ratio(2 * precision * recall, precision + recall),
    }


def ps_from_features(
    f1: Tensor, f2: Tensor, labels: Sequence[int] | Tensor
) -> tuple[dict[str, float], Tensor, Tensor]:
    """PS-Eval metrics from two feature matrices ([n, n_features]); returns (metrics, argmax_1, argmax_2).

    A context with no active feature has no arg-max: such a pair counts as "no match".
    """
    a1, a2 = f1.argmax(-1), f2.argmax(-1)
    has = (f1.max(-1).values > 0) & (f2.max(-1).values > 0)
    c = confusion((a1 == a2) & has, labels)
    return (
        {
            **ps_metrics(c),
            **{k: float(v) for k, v in c.items()},
            "no_feature_frac": 1 - has.float().mean().item(),
        },
        a1,
        a2,
    )


@torch.no_grad()
def ps_eval(sae: Any, acts: Tensor, labels: Sequence[int] | Tensor) -> dict[str, float]:
    """PS-Eval of one SAE on ``acts`` ([n_pairs, 2, d_in]) with pair labels; adds decoder-row cosines.

    ``cos_same`` / ``cos_diff``: mean cosine of the two arg-max features' decoder rows over same-sense
    and different-sense pairs (1.0 when the arg-max feature is shared).
    """
    f1, f2 = sae.encode(acts[:, 0]), sae.encode(acts[:, 1])
    out, a1, a2 = ps_from_features(f1, f2, labels)
    w = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    cos = (w[a1] * w[a2]).sum(-1)
    y = torch.as_tensor(labels) == 1
    out["cos_mean"] = cos.mean().item()
    out["cos_same"] = cos[y].mean().item() if y.any() else float("nan")
    out["cos_diff"] = cos[~y].mean().item() if (~y).any() else float("nan")
    out["n_pairs"] = float(len(acts))
    return out
