"""The PS-Eval study around the SAEs: pairs for a tokenizer, cached activations, the dense baseline, the summary.

:mod:`xlab.analysis.ps_eval` scores one SAE on PS-Eval pairs; this module holds the steps of the study
that surround the SAE sweep (``jobs/sae_polysemy.py``)::

    pairs, counts = ps_pairs(tok, pairs_file=None, seed=0)                # shipped inventory, balanced
    cache = cache_activations(model, tok, texts, pairs, ["resid.1", "mlp.1"], act_tokens=30_000)
    dense = dense_baseline(cache, [p.target_word for p in pairs])         # no SAE: raw activations
    metrics = summary_metrics(table, pd.DataFrame(dense))                 # table: one row per SAE
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xlab.analysis.ps_eval import PSPair
from xlab.config import check

MODULES = ("resid", "mlp", "attn")
"""Hook-point kinds of the study: block output, MLP output, attention output."""


def point_name(module: str, layer: int) -> str:
    """The hook point ``{module}.{layer}`` (:mod:`xlab.analysis.hooks`)."""
    return f"{module}.{layer}"


def ps_pairs(
    tok: Any, *, pairs_file: str | None = None, seed: int = 0, lemma_in_context: bool = True, max_pairs: int = 0,
) -> tuple[list[PSPair], dict[str, int]]:
    """PS-Eval pairs from ``pairs_file`` (PS-Eval / WiC JSON, JSONL or TSV) or the shipped polysemy
    inventory, single-token filtered for ``tok``, class-balanced and capped at ``max_pairs`` (0 = all);
    and the counts at each step."""
    from xlab.analysis.ps_eval import balance_pairs, filter_single_token, load_pairs
    from xlab.studydata.polysemy import load_inventory, polysemy_pairs

    raw = load_pairs(pairs_file) if pairs_file else polysemy_pairs(load_inventory(), seed=seed)
    kept, dropped = filter_single_token(raw, tok, require_in_context=lemma_in_context)
    pairs = balance_pairs(kept, seed=seed)
    if max_pairs:
        pairs = balance_pairs(pairs[:max_pairs], seed=seed)
    check(len(pairs) >= 4, "data", f"only {len(pairs)} PS-Eval pairs survive the single-token filter "
          f"({dropped} of {len(raw)} dropped); use a larger vocabulary or another pairs file")
    return pairs, {"pairs_raw": len(raw), "pairs_dropped_multi_token": dropped, "pairs_used": len(pairs),
                   "words_used": len({p.target_word for p in pairs})}


def cache_activations(
    model: Any, tok: Any, texts: Sequence[str], pairs: Sequence[PSPair], points: Sequence[str], *,
    act_tokens: int, act_block: int = 64, start: bool = True, lemma_in_context: bool = True,
    log: Any = print,
) -> dict[str, dict[str, Any]]:
    """Per point: SAE training activations ``train`` [act_tokens, d] on ``texts``, PS-Eval activations
    ``ps`` [n_pairs, 2, d] and the pairs' ``labels``. Progress goes to ``log`` about every 10 %."""
    from xlab.analysis.ps_eval import ps_activations
    from xlab.analysis.sae_train import token_activations

    step, last = max(1, act_tokens // 10), [0]

    def progress(n: int) -> None:  # one line per ~10 % (a carriage-return bar would flood captured logs)
        if n // step != last[0] // step or n >= act_tokens:
            log(f"caching activations: {min(n, act_tokens)}/{act_tokens} tokens")
        last[0] = n

    train = token_activations(model, tok, list(texts), points, max_tokens=act_tokens, block_size=act_block,
                              progress=progress, start=start)
    ps = ps_activations(model, tok, pairs, points, start=start, require_in_context=lemma_in_context)
    labels = [p.label for p in pairs]
    return {p: {"train": train[p], "ps": ps[p], "labels": labels} for p in points}


def dense_baseline(cache: dict[str, dict[str, Any]], words: Sequence[str]) -> list[dict[str, Any]]:
    """Per point, without an SAE: PS-Eval with the raw activation's arg-max dimension as the 'feature',
    and the ROC AUC of the two contexts' cosine similarity for same- vs different-sense pairs: on the raw
    activations and after subtracting each word's mean activation (removes the word's identity). These
    say whether the model's activation carries the sense at all (0.5 = no)."""
    import torch
    from sklearn.metrics import roc_auc_score

    from xlab.analysis.ps_eval import ps_from_features

    rows = []
    for point, data in cache.items():
        module, layer = point.split(".")
        x, labels = data["ps"], data["labels"]
        m, _, _ = ps_from_features(x[:, 0], x[:, 1], labels)
        centered = x.clone()
        for w in set(words):
            idx = [i for i, v in enumerate(words) if v == w]
            centered[idx] -= x[idx].reshape(-1, x.shape[-1]).mean(0)
        row = {"module": module, "layer": int(layer), "f1": m["f1"], "accuracy": m["accuracy"]}
        for name, a in (("cos_auc", x), ("cos_auc_centered", centered)):
            cos = torch.nn.functional.cosine_similarity(a[:, 0], a[:, 1], dim=-1).numpy()
            row[name] = float(roc_auc_score(labels, cos)) if len(set(labels)) == 2 else float("nan")
        rows.append(row)
    return rows


def summary_metrics(table: Any, dense: Any) -> dict[str, float]:
    """Study metrics from the SAE table (columns module, layer, activation, mse, l0, explained_variance,
    ps_f1, ps_accuracy) and the dense baseline: best F1 / accuracy overall, per module, per layer, mean
    per activation, and the paper's question in one number: does a better MSE go with a better F1
    (Spearman correlation)? NaNs are dropped."""
    metrics = {"best_f1": table.ps_f1.max(), "best_accuracy": table.ps_accuracy.max(),
               "dense_best_f1": dense.f1.max(), "dense_best_cos_auc": dense.cos_auc.max()}
    for mod in table.module.unique():
        metrics[f"best_f1_{mod}"] = table[table.module == mod].ps_f1.max()
    for lay in table.layer.unique():
        metrics[f"best_f1_layer{lay}"] = table[table.layer == lay].ps_f1.max()
    for act in table.activation.unique():
        sub = table[table.activation == act]
        metrics[f"mean_f1_{act}"] = sub.ps_f1.mean()
        metrics[f"mean_ev_{act}"] = sub.explained_variance.mean()
    if len(table) >= 3:
        metrics["spearman_f1_vs_mse"] = float(table.ps_f1.corr(table.mse, method="spearman"))
        metrics["spearman_f1_vs_l0"] = float(table.ps_f1.corr(table.l0, method="spearman"))
    return {k: float(v) for k, v in metrics.items() if v == v}
