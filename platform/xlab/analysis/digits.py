"""First- and last-digit confidence of multiplication answers (Gambardella et al., ACL 2024).

For a prompt ``"{a} * {b} = "`` and the gold product ``c`` with digits ``c_1 ... c_k``:

- **first-digit confidence** ``p(c_1 | prompt)``;
- **last-digit confidence, unconditioned**: ``p(c_k | prompt + model's own greedy c'_1..c'_{k-1})``,
  the higher digits being the model's greedy choice among digit tokens (the model is told the length
  only by where we stop, so the measure is defined even when it would have stopped early);
- **last-digit confidence, conditioned**: ``p(c_k | prompt + gold c_1..c_{k-1})``;
- the accuracy of each: the greedy (arg-max over the whole vocabulary) next token starts with the gold digit;
- **Monte-Carlo dropout**: the same three probabilities with dropout on at inference, mean and
  standard deviation over passes (the spread is the model's uncertainty).

Works with any HF causal LM. Tokenizers that merge digit runs (BPE): the probability of a digit is
the sum over every token whose text, leading whitespace removed, starts with that digit (the spec's
rule for the first digit; for last digits the prefix is re-tokenized, an approximation such
tokenizers force). The platform's digit tokenizer (:func:`xlab.studydata.arithmetic.digit_tokenizer`)
has one token per digit, so there every measure is exact.

    records = evaluate_digits(model, tok, problems, mc_passes=30, mc_p=0.1)
    table = cell_table(records)             # one row per (n, m): means of every measure
    fig = heatmaps(table, ["first_conf", "last_conf_uncond", "last_conf_cond"])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from xlab.analysis.mc_dropout import mc_dropout
from xlab.lm.sequence_start import encode
from xlab.studydata.arithmetic import Problem

DIGITS = "0123456789"
MEASURES = ("first", "last_uncond", "last_cond")


def digit_token_sets(tokenizer: Any) -> torch.Tensor:
    """A [10, vocab] 0/1 matrix: row d marks the tokens whose text (leading whitespace stripped) starts with d."""
    vocab = len(tokenizer)
    mat = torch.zeros(10, vocab)
    for i in range(vocab):
        text = tokenizer.decode([i]).lstrip()
        if text and text[0] in DIGITS:
            mat[int(text[0]), i] = 1.0
    if not bool(mat.sum(1).all()):
        missing = [d for d in DIGITS if not mat[int(d)].any()]
        raise ValueError(f"the tokenizer has no token starting with digit(s) {', '.join(missing)}")
    return mat


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def next_token_probs(model: nn.Module, sequences: Sequence[Sequence[int]], batch_size: int = 256) -> torch.Tensor:
    """``p(next token | sequence)`` for each sequence, [N, vocab] (float32, on CPU).

    Sequences of equal length are batched together, so no padding or attention mask is needed and
    positions are exact for every family.
    """
    device = _device(model)
    out: list[torch.Tensor | None] = [None] * len(sequences)
    by_len: dict[int, list[int]] = {}
    for i, seq in enumerate(sequences):
        by_len.setdefault(len(seq), []).append(i)
    with torch.no_grad():
        for idx in by_len.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                ids = torch.tensor([list(sequences[i]) for i in chunk], device=device)
                logits = model(input_ids=ids).logits[:, -1, :].float()
                probs = torch.softmax(logits, dim=-1).cpu()
                for j, i in enumerate(chunk):
                    out[i] = probs[j]
    return torch.stack(out) if out else torch.zeros(0, 0)  # type: ignore[arg-type]


def greedy_digits(model: nn.Module, tokenizer: Any, prompts: Sequence[str], lengths: Sequence[int],
                  digit_sets: torch.Tensor, start: bool = True) -> list[str]:
    """For each prompt, the model's greedy ``lengths[i]`` digits, choosing among digit tokens only.

    Each step takes the most probable digit (probabilities summed over tokens starting with it) and
    appends it as text, so any tokenizer works.
    """
    done = [""] * len(prompts)
    for step in range(max(lengths, default=0)):
        active = [i for i, n in enumerate(lengths) if step < n]
        if not active:
            break
        seqs = [encode(tokenizer, prompts[i] + done[i], start=start) for i in active]
        dprobs = next_token_probs(model, seqs) @ digit_sets.T
        for i, d in zip(active, dprobs.argmax(-1).tolist(), strict=True):
            done[i] += DIGITS[d]
    return done


def _measure(model: nn.Module, tokenizer: Any, texts: Sequence[str], gold: Sequence[int],
             digit_sets: torch.Tensor, start: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """p(gold digit | text) and whether the arg-max token starts with the gold digit."""
    probs = next_token_probs(model, [encode(tokenizer, t, start=start) for t in texts])
    dprobs = probs @ digit_sets.T
    gold_t = torch.tensor(list(gold))
    conf = dprobs[torch.arange(len(gold)), gold_t]
    top = probs.argmax(-1)
    correct = digit_sets[gold_t, top] > 0
    return conf.numpy(), correct.numpy()


def evaluate_digits(model: nn.Module, tokenizer: Any, problems: Sequence[Problem], *, mc_passes: int = 0,
                    mc_p: float = 0.1, progress: Callable[[str], None] | None = None,
                    start: bool = True, mc_sites: Sequence[str] = ("native",)) -> list[dict[str, Any]]:
    """Per-problem first/last-digit confidences and accuracies (see module docstring).

    Every sequence starts the way the model's tokenizer starts one (:mod:`xlab.lm.sequence_start`:
    Llama/Mistral ``<s>``, GPT-2 ``<|endoftext|>``); ``start=False`` feeds the text tokens only.

    With ``mc_passes > 0`` also ``{measure}_mc_mean`` and ``{measure}_mc_std`` over that many
    dropout passes at probability ``mc_p`` at ``mc_sites`` (:mod:`xlab.analysis.mc_dropout`: on
    Llama/Mistral ``native`` is attention dropout only); prefixes fixed from the deterministic pass.
    """
    model.eval()
    digit_sets = digit_token_sets(tokenizer)
    prompts = [p.prompt for p in problems]
    answers = [p.answer for p in problems]
    own = greedy_digits(model, tokenizer, prompts, [len(a) - 1 for a in answers], digit_sets, start)
    texts = {
        "first": prompts,
        "last_uncond": [pr + o for pr, o in zip(prompts, own, strict=True)],
        "last_cond": [pr + a[:-1] for pr, a in zip(prompts, answers, strict=True)],
    }
    gold = {"first": [int(a[0]) for a in answers], "last_uncond": [int(a[-1]) for a in answers],
            "last_cond": [int(a[-1]) for a in answers]}
    cols: dict[str, np.ndarray] = {}
    for m in MEASURES:
        cols[f"{m}_conf"], cols[f"{m}_correct"] = _measure(model, tokenizer, texts[m], gold[m], digit_sets, start)
    if mc_passes > 0:
        with mc_dropout(model, mc_p, mc_sites):
            for m in MEASURES:
                passes = []
                for k in range(mc_passes):
                    passes.append(_measure(model, tokenizer, texts[m], gold[m], digit_sets, start)[0])
                    if progress is not None and k % 10 == 9:
                        progress(f"MC dropout {m}: pass {k + 1}/{mc_passes}")
                stack = np.stack(passes)
                cols[f"{m}_mc_mean"], cols[f"{m}_mc_std"] = stack.mean(0), stack.std(0)
        model.eval()
    records = []
    for i, p in enumerate(problems):
        rec: dict[str, Any] = {"a": p.a, "b": p.b, "n": p.n, "m": p.m, "answer": p.answer,
                               "own_higher_digits": own[i],
                               "higher_digits_correct": own[i] == p.answer[:-1]}
        rec.update({k: (bool(v[i]) if v.dtype == bool else float(v[i])) for k, v in cols.items()})
        records.append(rec)
    return records


def cell_table(records: Sequence[dict[str, Any]]):
    """Mean of every numeric measure per (n, m) cell, as a pandas DataFrame (``count`` = problems)."""
    import pandas as pd

    df = pd.DataFrame(list(records))
    numeric = [c for c in df.columns if c not in ("a", "b", "n", "m", "answer", "own_higher_digits")]
    table = df.groupby(["n", "m"])[numeric].mean().astype(float)
    table["count"] = df.groupby(["n", "m"]).size()
    return table.reset_index()


def heatmaps(table, columns: Sequence[str], title: str = ""):
    """One n x m heatmap per column of ``table`` (values annotated), as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns, ms = sorted(table["n"].unique()), sorted(table["m"].unique())
    cols = min(3, len(columns))
    rows = (len(columns) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    for k, col in enumerate(columns):
        ax = axes[k // cols][k % cols]
        grid = np.full((len(ns), len(ms)), np.nan)
        for r in table.itertuples():
            grid[ns.index(r.n), ms.index(r.m)] = getattr(r, col)
        im = ax.imshow(grid, vmin=0.0, vmax=1.0 if not col.endswith("_std") else max(np.nanmax(grid), 1e-6),
                       cmap="viridis", origin="lower")
        for i in range(len(ns)):
            for j in range(len(ms)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if grid[i, j] < 0.5 * im.norm.vmax else "black")
        ax.set_xticks(range(len(ms)), [str(m) for m in ms])
        ax.set_yticks(range(len(ns)), [str(n) for n in ns])
        ax.set_xlabel("m (digits of b)")
        ax.set_ylabel("n (digits of a)")
        ax.set_title(col, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    for k in range(len(columns), rows * cols):
        axes[k // cols][k % cols].axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
