"""In-context knowledge unlearning (Takashiro et al.): prompts, fine-tuning set-up, metrics, logit lens.

The model sees ``"Question: <<UNL>>{target}<</UNL>> {question}\\nAnswer:"`` (the ``plain`` layout;
the authors' Llama-2 layout and chat templates: :mod:`xlab.analysis.unlearning_prompt`) and should answer
``"forgot"`` when ``target`` names what the question asks about (forget examples) and the gold answer
otherwise (retain examples); see :mod:`xlab.studydata.tofu` for the examples.

Metrics use the clean definitions of the spec (not the authors' script, which counts every forget
example as correct in the retain accuracy):

- forget accuracy = share of *forget* examples whose greedy answer (at most 20 new tokens) is exactly
  ``forgot``;
- retain accuracy = share of *retain* examples whose greedy answer is exactly the gold answer.

Answers are compared after stripping surrounding whitespace and a trailing period, case-insensitively.
The logit lens reads the residual stream at the first answer position (the last prompt token) through
the final norm and unembedding (:func:`xlab.analysis.hooks.logit_lens`) and tracks, per layer, the
probability of the first token of the gold answer and of ``forgot``.

    add_unlearning_tokens(model, tok)                     # <<UNL>>, <</UNL>> as special tokens
    model = wrap_lora(model, tok, r=4, alpha=8, dropout=0.1)
    outputs = greedy_answers(model, tok, [prompt(e.user_turn) for e in examples])
    scores = unlearning_scores(examples, outputs)         # forget_acc, retain_acc, ...
    curves = logit_lens_curves(model, tok, examples)      # per-layer p(gold), p(forgot)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from xlab.analysis.unlearning_prompt import PromptStyle
from xlab.lm.sequence_start import encode, encode_many
from xlab.studydata.tofu import FORGOT, QA, UNL_CLOSE, UNL_OPEN, UnlearningExample

PROMPT_TEMPLATE = "Question: {q}\nAnswer:"
PLAIN = PromptStyle("plain")


def prompt(user_turn: str) -> str:
    """The text the model completes for one user turn."""
    return PROMPT_TEMPLATE.format(q=user_turn)


def completion(output: str) -> str:
    """The training completion for an answer (a leading space: the answer is its own word)."""
    return f" {output}"


def fact_pairs(rows: Sequence[QA], style: PromptStyle = PLAIN) -> list[tuple[str, str]]:
    """(prompt, completion) pairs that teach the facts (plain questions, no tags)."""
    return [(style(r.question), completion(r.answer)) for r in rows]


def example_prompt(e: UnlearningExample, style: PromptStyle = PLAIN) -> str:
    """The prompt of one forget/retain example in ``style``."""
    return style(e.question, e.target)


def unlearning_pairs(examples: Sequence[UnlearningExample], style: PromptStyle = PLAIN) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of the unlearning fine-tune."""
    return [(example_prompt(e, style), completion(e.output)) for e in examples]


def add_unlearning_tokens(model: Any, tokenizer: Any, seed: int = 0) -> list[int]:
    """Add ``<<UNL>>`` and ``<</UNL>>`` as special tokens and grow the embeddings; returns their ids.

    New rows are drawn around the mean of the old embeddings (transformers' mean resizing), seeded,
    so the two tags are distinct vectors. A no-op for a tokenizer that already has them.
    """
    tokenizer.add_tokens([UNL_OPEN, UNL_CLOSE], special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids([UNL_OPEN, UNL_CLOSE])
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.resize_token_embeddings(len(tokenizer))
    for text, i in zip((UNL_OPEN, UNL_CLOSE), ids, strict=True):
        if tokenizer(text, add_special_tokens=False)["input_ids"] != [i]:
            raise RuntimeError(f"{text} is not a single token after adding it to the tokenizer")
    return list(ids)


_LORA_TARGETS = {
    "all": {
        "gpt2": ["c_attn", "c_proj", "c_fc"],
        "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    },
    # peft's default for Llama/Mistral, which the authors' LoraConfig (no target_modules) gets. GPT-2 and
    # NeoX fuse q, k and v into one projection: the closest is that fused projection.
    "qv": {"gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
           "gpt_neox": ["query_key_value"]},
}


def lora_targets(model: nn.Module, scope: str = "all") -> list[str]:
    """Names (suffixes) of the linear layers LoRA adapts: ``all`` attention and MLP projections of each
    block (xlab), or ``qv`` the query and value projections (the authors' setting)."""
    if scope not in _LORA_TARGETS:
        raise ValueError(f"unknown LoRA scope {scope!r}; use all or qv")
    known = _LORA_TARGETS[scope]
    kind = getattr(getattr(model, "config", None), "model_type", "")
    if kind not in known:
        raise ValueError(f"no LoRA target list for model type {kind!r}; supported: {', '.join(known)}")
    return known[kind]


def wrap_lora(model: nn.Module, token_ids: Sequence[int], r: int = 4, alpha: int = 8, dropout: float = 0.1,
              scope: str = "all") -> Any:
    """A peft LoRA model over the ``scope`` projections (:func:`lora_targets`); the embeddings of
    ``token_ids`` (the new tags) are trained too (xlab: randomly initialised tags are hard to learn by
    adapters alone; pass no ids for the authors' setting, tags frozen)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_targets(model, scope),
                     trainable_token_indices=list(token_ids) or None, task_type="CAUSAL_LM",
                     fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2")
    return get_peft_model(model, cfg)


def unwrap_lora(model: Any) -> nn.Module:
    """The plain ``transformers`` model with LoRA merged in (hooks and the logit lens need the module map)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def normalize(text: str) -> str:
    """Whitespace-collapsed, trailing-period-free, case-folded answer text."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip().casefold()


def greedy_answers(model: nn.Module, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 20,
                   batch_size: int = 64, start: bool = True) -> list[str]:
    """Greedy continuations (at most ``max_new_tokens``), cut at EOS or the first newline.

    Prompts start the way the tokenizer starts a sequence (:mod:`xlab.lm.sequence_start`; ``start=False``:
    text tokens only). Prompts of equal token length are batched together: no padding, so every
    family's positions are exact.
    """
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    encoded = encode_many(tokenizer, prompts, start=start)
    out: list[str] = [""] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_len.setdefault(len(ids), []).append(i)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for length, idx in by_len.items():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start:start + batch_size]
                ids = torch.tensor([encoded[i] for i in chunk], device=device)
                gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_new_tokens, eos_token_id=eos,
                                     pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
                for j, i in enumerate(chunk):
                    text = tokenizer.decode(gen[j, length:], skip_special_tokens=True)
                    out[i] = text.split("\n", 1)[0]
    model.train(was_training)
    return out


def unlearning_scores(examples: Sequence[UnlearningExample], outputs: Sequence[str]) -> dict[str, float]:
    """Forget/retain accuracy with the clean definitions, plus two diagnostics.

    ``forget_acc``: forget examples answered exactly "forgot" (answering the gold answer is a miss);
    ``retain_acc``: retain examples answered exactly with the gold answer;
    ``forget_leak``: forget examples answered with the gold answer (the fact leaks);
    ``retain_forgot``: retain examples answered "forgot" (over-forgetting).
    """
    if len(examples) != len(outputs):
        raise ValueError(f"{len(examples)} examples but {len(outputs)} outputs")
    forget = [(e, o) for e, o in zip(examples, outputs, strict=True) if e.kind == "forget"]
    retain = [(e, o) for e, o in zip(examples, outputs, strict=True) if e.kind == "retain"]

    def share(pairs, ok) -> float:
        return float(np.mean([ok(e, normalize(o)) for e, o in pairs])) if pairs else float("nan")

    return {
        "forget_acc": share(forget, lambda e, o: o == FORGOT),
        "retain_acc": share(retain, lambda e, o: o == normalize(e.gold)),
        "forget_leak": share(forget, lambda e, o: o == normalize(e.gold)),
        "retain_forgot": share(retain, lambda e, o: o == FORGOT),
        "n_forget": float(len(forget)),
        "n_retain": float(len(retain)),
    }


def knowledge_accuracy(model: nn.Module, tokenizer: Any, rows: Sequence[QA], max_new_tokens: int = 20,
                       start: bool = True, style: PromptStyle = PLAIN) -> float:
    """Share of plain questions (no tags) answered exactly with the gold answer."""
    outs = greedy_answers(model, tokenizer, [style(r.question) for r in rows], max_new_tokens, start=start)
    return float(np.mean([normalize(o) == normalize(r.answer) for r, o in zip(rows, outs, strict=True)]))


def first_token(tokenizer: Any, output: str) -> int:
    """Id of the first token the model emits for answer ``output`` (as in the training completion)."""
    return tokenizer(completion(output), add_special_tokens=False)["input_ids"][0]


def logit_lens_curves(model: nn.Module, tokenizer: Any, examples: Sequence[UnlearningExample],
                      lens: Callable[..., torch.Tensor] | None = None, start: bool = True,
                      style: PromptStyle = PLAIN) -> dict[str, dict[str, list[float]]]:
    """Per-layer mean p(first gold token) and p(first token of "forgot") at the first answer position,
    separately for forget and retain examples: ``{kind: {"p_gold": [...], "p_forgot": [...]}}``
    (index 0 = embeddings, last = final layer output)."""
    if lens is None:
        from xlab.analysis.hooks import logit_lens as lens
    device = next(model.parameters()).device
    forgot_id = first_token(tokenizer, FORGOT)
    sums: dict[str, dict[str, list[np.ndarray]]] = {}
    model.eval()
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([encode(tokenizer, example_prompt(e, style), start=start)], device=device)
            probs = lens(model, ids, position=-1).float().cpu()
            gold_id = first_token(tokenizer, e.gold)
            rec = sums.setdefault(e.kind, {"p_gold": [], "p_forgot": []})
            rec["p_gold"].append(probs[:, gold_id].numpy())
            rec["p_forgot"].append(probs[:, forgot_id].numpy())
    return {kind: {k: np.mean(v, axis=0).tolist() for k, v in rec.items()} for kind, rec in sums.items()}


def plot_logit_lens(curves: dict[str, dict[str, dict[str, list[float]]]], title: str = ""):
    """Per-layer p(gold) and p(forgot), one panel per query kind; ``curves`` maps a label (e.g.
    "before"/"after") to the output of :func:`logit_lens_curves`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in ("forget", "retain") if any(k in c for c in curves.values())]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), squeeze=False, sharey=True)
    styles = ["-", "--", ":", "-."]
    for ax, kind in zip(axes[0], kinds, strict=True):
        for s, (label, c) in enumerate(curves.items()):
            if kind not in c:
                continue
            layers = np.arange(len(c[kind]["p_gold"]))
            ax.plot(layers, c[kind]["p_gold"], styles[s % 4], color="tab:blue", marker="o", label=f"p(gold) {label}")
            ax.plot(layers, c[kind]["p_forgot"], styles[s % 4], color="tab:red", marker="s",
                    label=f"p(forgot) {label}")
        ax.set_title(f"{kind} queries")
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_xticks(layers)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("probability at first answer position")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
