"""The in-context unlearning study around the fine-tune: teaching pairs, split evaluation, results table, plot.

:mod:`xlab.analysis.unlearning` holds the method (tags, LoRA, metrics, logit lens); this module holds
the steps ``jobs/icl_unlearning.py`` runs around it::

    pairs = teaching_pairs(rows, style, context_variants=2, seed=0)      # plain QA + QA after a distractor
    scores, outputs = evaluate_split(model, tok, splits.test_in, style=style)
    metrics, samples, curves = unlearning_trial(model, tok, splits, rows, UnlearnConfig(method="full"),
                                                target="name", style=style, start=True, block_size=128)
    table = results_table(child_runs(parent_run_id))                      # before/after per method, split
    fig = comparison_figure(pd.DataFrame(table))
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from xlab.analysis.unlearning_prompt import PromptStyle
from xlab.config import check
from xlab.studydata.tofu import QA, UnlearningExample

Method = Literal["lora", "lora_paper", "full"]
METHODS = ("lora", "lora_paper", "full")
"""lora (every attention/MLP projection, tag embeddings trainable), lora_paper (the authors' q_proj/v_proj,
tags frozen), full (full fine-tune)."""


@dataclasses.dataclass
class UnlearnConfig:
    """The unlearning fine-tune (spec: LoRA r=4, alpha=8, dropout 0.1, lr 2e-4; full lr 2e-6; batch 4)."""

    methods: tuple[Method, ...] = ("lora", "full")
    """One Tune trial per method: lora (xlab: every attention/MLP projection, tag embeddings trained
    when lora_train_tags), lora_paper (the authors' setting: q_proj/v_proj only, tags untrained),
    full (full fine-tune)."""
    targets: tuple[Literal["name", "answer", "mixed"], ...] = ()
    """Tag contents run as separate trials and reported separately (paper: answer, the TOFU setting, and
    name, the AGE setting); empty: data.target only."""
    method: Method = "lora"
    """The method of one trial (set by the sweep)."""
    lora_r: int = 4
    lora_alpha: int = 8
    lora_dropout: float = 0.1
    lora_lr: float = 2e-4
    lora_train_tags: bool = True
    """Train the two new tag embeddings along with the adapters (peft trainable_token_indices)."""
    full_lr: float = 2e-6
    epochs: float = 3.0
    """Passes over the unlearning training examples (spec: 1-3)."""
    batch_size: int = 4
    max_new_tokens: int = 20
    """Greedy answer length limit of the metrics (spec: 20)."""
    lens_examples: int = 64
    """Test examples (half forget, half retain) averaged in the logit-lens plot."""
    fresh_distractors: bool = True
    """Draw new retain distractors (and, for target mixed, new name/answer choices) every epoch; the
    forget targets stay the same. More variety makes the tag-matching rule, not the examples, the
    easiest thing to learn (False: the paper's fixed set)."""
    base_model: str = ""
    """URI of the fact-trained subject model; set by the job before the sweep."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    """GPUs each trial reserves (models run on CUDA whenever the process sees one)."""

    def __post_init__(self) -> None:
        check(bool(self.methods) and set(self.methods) <= set(METHODS), "unlearn.methods",
              f"name one or more of {', '.join(METHODS)}, got {self.methods}")
        check(set(self.targets) <= {"name", "answer", "mixed"}, "unlearn.targets",
              f"use name, answer and/or mixed, got {self.targets}")
        check(self.epochs > 0, "unlearn.epochs", f"must be > 0, got {self.epochs}")
        check(self.batch_size >= 1, "unlearn.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.lora_r >= 1, "unlearn.lora_r", f"must be >= 1, got {self.lora_r}")
        check(self.lora_lr > 0 and self.full_lr > 0, "unlearn.lora_lr/full_lr", "must be > 0")


def teaching_pairs(rows: Sequence[QA], style: PromptStyle, *, context_variants: int = 0,
                   seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, completion) pairs that teach the facts: every plain question, plus ``context_variants``
    copies of each after an unrelated prefix (another subject's name or answer, no tags), so recall
    survives extra text before the question, as a pretrained model's does."""
    from xlab.analysis.unlearning import fact_pairs

    pairs = fact_pairs(rows, style)
    rng = random.Random(f"context:{seed}")
    several = len({x.subject for x in rows}) > 1
    for _ in range(context_variants):
        for r in rows:
            other = rng.choice(rows)
            while other.subject == r.subject and several:
                other = rng.choice(rows)
            pairs.append((style(f"{rng.choice((other.subject, other.answer))} {r.question}"), f" {r.answer}"))
    return pairs


def evaluate_split(model: Any, tok: Any, examples: Sequence[UnlearningExample], *, style: PromptStyle,
                   max_new_tokens: int = 20, start: bool = True) -> tuple[dict[str, float], list[str]]:
    """Greedy answers to ``examples`` and their forget / retain scores."""
    from xlab.analysis.unlearning import example_prompt, greedy_answers, unlearning_scores

    outs = greedy_answers(model, tok, [example_prompt(e, style) for e in examples], max_new_tokens, start=start)
    return unlearning_scores(examples, outs), outs


def lens_sample(examples: Sequence[UnlearningExample], k: int) -> list[UnlearningExample]:
    """The first ``k // 2`` forget and ``k // 2`` retain examples (the logit-lens average)."""
    forget = [e for e in examples if e.kind == "forget"][: k // 2]
    retain = [e for e in examples if e.kind == "retain"][: k // 2]
    return forget + retain


def unlearning_net(model: Any, method: str, tag_ids: Sequence[int], *, r: int, alpha: int, dropout: float,
                   train_tags: bool = True) -> Any:
    """The module the unlearning fine-tune trains: ``model`` itself (full), or ``model`` with LoRA
    adapters (lora: every projection, the tag embeddings too when ``train_tags``; lora_paper: the
    authors' LoraConfig, peft's q/v default, tags untrained)."""
    from xlab.analysis.unlearning import wrap_lora

    if method == "full":
        return model
    if method == "lora_paper":
        return wrap_lora(model, [], r, alpha, dropout, scope="qv")
    return wrap_lora(model, list(tag_ids) if train_tags else [], r, alpha, dropout)


def unlearning_trial(
    model: Any, tok: Any, splits: Any, pool: Sequence[QA], u: UnlearnConfig, *, target: str, style: PromptStyle,
    start: bool, block_size: int, seed: int = 0, log_fn: Callable[[int, dict], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, float], dict[str, list], dict[str, Any]]:
    """The unlearning fine-tune of ``model`` (fact-trained) with ``u.method`` on ``splits``
    (:func:`xlab.studydata.tofu.build_unlearning_splits`; ``pool``: the training source's rows, for fresh
    distractors): the tags added, scores and logit lens before and after. Returns (metrics
    ``{before,after}/{in,ood[,train]}/...``, answer samples per split, logit-lens curves)."""
    from xlab.analysis.unlearning import (
        add_unlearning_tokens,
        example_prompt,
        logit_lens_curves,
        unlearning_pairs,
        unwrap_lora,
    )
    from xlab.lm import LMTrainConfig, train_on_pairs
    from xlab.studydata.tofu import unlearning_examples

    tag_ids = add_unlearning_tokens(model, tok, seed=seed)
    evals = {"in": splits.test_in, "ood": splits.test_ood}
    metrics: dict[str, float] = {}

    def evaluate(stage: str, sets: dict) -> dict[str, list]:
        outputs = {}
        for split, examples in sets.items():
            scores, outputs[split] = evaluate_split(model, tok, examples, style=style, max_new_tokens=u.max_new_tokens,
                                                    start=start)
            metrics.update({f"{stage}/{split}/{k}": v for k, v in scores.items()})
        log(f"{u.method}: {stage:6s} in-domain forget {metrics[f'{stage}/in/forget_acc']:.2f} retain "
            f"{metrics[f'{stage}/in/retain_acc']:.2f}; out-of-domain forget {metrics[f'{stage}/ood/forget_acc']:.2f} "
            f"retain {metrics[f'{stage}/ood/retain_acc']:.2f}")
        return outputs

    lens_in = lens_sample(splits.test_in, u.lens_examples)
    curves = {"before": logit_lens_curves(model, tok, lens_in, style=style, start=start)}
    evaluate("before", evals)
    lr = u.full_lr if u.method == "full" else u.lora_lr
    net = unlearning_net(model, u.method, tag_ids, r=u.lora_r, alpha=u.lora_alpha, dropout=u.lora_dropout,
                         train_tags=u.lora_train_tags)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    steps = max(1, round(u.epochs * len(splits.train) / u.batch_size))
    tcfg = LMTrainConfig(steps=steps, batch_size=u.batch_size, lr=lr, schedule="constant", weight_decay=0.0,
                         block_size=block_size, log_every=max(steps // 20, 1), seed=seed)

    def on_log(step: int, m: dict) -> None:
        if log_fn is not None:
            log_fn(step, m)
        if step % max(steps // 5, 1) == 0 or step == steps:
            log(f"{u.method}: unlearning step {step}/{steps} loss {m['train/loss']:.3f}")

    pairs = unlearning_pairs(splits.train, style)
    if u.fresh_distractors:
        forget_rows = [e.qa for e in splits.train if e.kind == "forget"]
        for epoch in range(1, math.ceil(u.epochs)):
            pairs += unlearning_pairs(unlearning_examples(forget_rows, target, seed=seed + 1000 * epoch, pool=pool),
                                      style)
    t0 = time.perf_counter()
    history = train_on_pairs(net, tok, pairs, tcfg, log_fn=on_log, start=start)
    metrics["train_seconds"] = time.perf_counter() - t0
    model = unwrap_lora(net)
    model.eval()
    every = {**evals, "train": splits.train}
    outputs = evaluate("after", every)
    samples = {split: [{"kind": e.kind, "prompt": example_prompt(e, style), "gold": e.output, "output": o}
                       for e, o in list(zip(examples, outputs[split], strict=True))[:40]]
               for split, examples in every.items()}
    curves["after"] = logit_lens_curves(model, tok, lens_in, style=style, start=start)
    metrics.update({"trainable_params": float(trainable), "steps": float(steps), "lr": lr,
                    "final_loss": history[-1]["train/loss"] if history else float("nan")})
    return metrics, samples, curves


def trial_label(method: str, target: str | None) -> str:
    """A trial's name in tables and metric keys: the method, with the tag contents when several are run."""
    return method if target is None else f"{method}[{target}]"


def results_table(children: Sequence[Any], by_target: bool = False) -> list[dict]:
    """Rows (method, target, split, stage, forget_acc, retain_acc, ...) from the trials' MLflow runs;
    with ``by_target`` the method label names the tag contents too (``lora[answer]``)."""
    rows = []
    for run in children:
        m = run.data.metrics
        target = run.data.params.get("data.target")
        method = trial_label(run.data.params.get("unlearn.method", "?"), target if by_target else None)
        for stage in ("before", "after"):
            for split in ("in", "ood"):
                key = f"{stage}/{split}"
                if f"{key}/forget_acc" not in m:
                    continue
                rows.append({"method": method, "target": target, "split": split, "stage": stage,
                             "status": run.info.status,
                             **{k: m.get(f"{key}/{k}") for k in ("forget_acc", "retain_acc", "forget_leak",
                                                                  "retain_forgot")}})
    return rows


def trials_logit_lens(children: Sequence[Any], by_target: bool = False) -> dict[str, Any]:
    """The logit-lens curves of the finished trials' runs (their ``logit_lens.json``): ``before`` (the
    subject before any tuning, the same in every trial) and ``after <trial label>``."""
    import mlflow

    lens = {}
    for run in children:
        if run.info.status == "FINISHED":
            curves = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/logit_lens.json")
            lens.setdefault("before", curves["before"])
            label = trial_label(run.data.params.get("unlearn.method", "?"),
                                run.data.params.get("data.target") if by_target else None)
            lens[f"after {label}"] = curves["after"]
    return lens


def comparison_figure(table: Any) -> Any:
    """Forget and retain accuracy, before vs after, per method and split (grouped bars)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    groups = [(m, s) for m in sorted(table.method.unique()) for s in ("in", "ood")]
    x = np.arange(len(groups))
    for ax, metric in zip(axes, ("forget_acc", "retain_acc"), strict=True):
        for k, stage in enumerate(("before", "after")):
            vals = [table[(table.method == m) & (table.split == s) & (table.stage == stage)][metric].mean()
                    for m, s in groups]
            ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=stage)
        ax.set_xticks(x, [f"{m}\n{'in-domain' if s == 'in' else 'out-of-domain'}" for m, s in groups], fontsize=8)
        ax.set_title(metric.replace("_acc", " accuracy"))
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
    return fig
