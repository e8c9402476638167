"""In-context knowledge unlearning: teach a model TOFU-like facts, then tune it to forget on request.

Study: *Answer When Needed, Forget When Not* (Takashiro et al.). Steps:

1. **Facts**: fictitious authors (the training source) and fictitious companies (the out-of-domain
   source), generated with ``faker`` (:mod:`xlab.data.tofu`).
2. **Subject model**: a byte-level BPE and a GPT-2 trained here on the plain QA of both sources until
   it answers them (``model.ref`` starts from any HF causal LM instead, e.g. a 7B chat model on a GPU
   cluster; ``learn.steps 0`` skips teaching). Logged to MLflow as ``subject_model``.
3. **Unlearning fine-tune**, one Ray Tune trial per method (LoRA via ``peft``; full fine-tune), each
   with its nested MLflow run: ``<<UNL>>``/``<</UNL>>`` added as special tokens, forget examples
   (name or answer in the tags -> "forgot") and retain examples (unrelated distractor -> gold answer)
   from 80% of the author rows, constant lr, batch 4.
4. **Evaluation** before and after, on the held-out 20% of author rows (in-domain) and on the company
   rows (out-of-domain): forget accuracy and retain accuracy with the clean definitions, plus the
   per-layer logit lens of p(gold first token) and p("forgot") at the first answer position.

The parent run gets the before/after table (``results.json``), the comparison plot, the logit lens
of both methods (``logit_lens.png``), and the key
metrics ``{method}/{split}/{forget,retain}_acc``.

    xlab run icl_unlearning --preset smoke
    xlab run icl_unlearning --preset paper --model.ref models:/llama2-7b-chat/1   # GPU cluster
    xlab run icl_unlearning --unlearn.methods lora --data.target name

Protocol vs paper (what matches, what differs and why): docs/studies/icl_unlearning.md.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from typing import Literal

from xlab.config import JobConfig, check

Method = Literal["lora", "lora_paper", "full"]
METHODS = ("lora", "lora_paper", "full")


@dataclasses.dataclass
class DataConfig:
    """The two fact sources and how unlearning examples are built from them."""

    train_domain: str = "authors"
    """Source of the unlearning training rows and the in-domain test rows (authors or companies)."""
    ood_domain: str = "companies"
    """Out-of-domain source: the model learns its facts but is never unlearning-tuned on it."""
    n_subjects: int = 200
    """Subjects of the training source (TOFU: 200 authors)."""
    ood_subjects: int = 200
    """Subjects of the out-of-domain source."""
    qa_per_subject: int = 20
    """QA rows per subject (1..20; TOFU: 20)."""
    train_frac: float = 0.8
    """In-domain split of the training source's rows (the rest is the in-domain test set)."""
    target: Literal["name", "answer", "mixed"] = "mixed"
    """What a forget example puts in the tags: the subject's name, the answer, or either (per row)."""

    def __post_init__(self) -> None:
        from xlab.data.tofu import DOMAINS

        for f in ("train_domain", "ood_domain"):
            check(getattr(self, f) in DOMAINS, f"data.{f}", f"must be one of {', '.join(DOMAINS)}, got {getattr(self, f)!r}")
        check(self.train_domain != self.ood_domain, "data.ood_domain",
              "must differ from data.train_domain (out-of-domain = another source)")
        check(self.n_subjects >= 2 and self.ood_subjects >= 2, "data.n_subjects/ood_subjects",
              "need at least 2 subjects per source (distractors are other subjects)")
        check(1 <= self.qa_per_subject <= 20, "data.qa_per_subject", f"must be in 1..20, got {self.qa_per_subject}")
        check(0 < self.train_frac < 1, "data.train_frac", f"must be in (0, 1), got {self.train_frac}")


@dataclasses.dataclass
class ModelConfig:
    """The subject model: a new GPT-2 trained here, or any HF causal LM."""

    ref: str | None = None
    """Start from this causal LM (local save_pretrained dir, models:/..., runs:/...) instead of a new one."""
    arch: str = "gpt2"
    """Family of a new model (gpt2, llama, gpt_neox)."""
    size: str = "gpt2-small"
    """Size preset of a new model (xlab.lm.SIZES)."""
    vocab_size: int = 4096
    """BPE vocabulary of a new model's tokenizer, trained on the fact texts."""
    n_ctx: int = 128
    prompt_format: Literal["auto", "plain", "paper", "chat"] = "auto"
    """Prompt layout (xlab.analysis.unlearning_prompt): plain ("Question: <<UNL>>t<</UNL>> q\nAnswer:"),
    paper (the authors' Llama-2 layout "[INST] <<UNL>>\nt\n<</UNL>>\n\nq [/INST]"), chat (the
    tokenizer's chat template), auto (chat if the tokenizer has a template, else plain)."""
    start_token: bool = True
    """Start every sequence (teaching, unlearning, evaluation) the way the tokenizer does
    (xlab.lm.sequence_start: Llama <s>); False: text tokens only."""


@dataclasses.dataclass
class LearnConfig:
    """Teaching the facts (plain questions of both sources) before unlearning."""

    steps: int = 20_000
    """Optimizer steps (0 = use model.ref as it is)."""
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    context_variants: int = 2
    """Also teach each fact this many times after an unrelated prefix (another subject's name or
    another answer, no tags), so recall survives extra text before the question, as a pretrained
    model's does; 0 = plain questions only."""


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


@dataclasses.dataclass
class Config(JobConfig):
    torch_threads: int = 1
    """Torch intra-op threads per process (1: tiny models gain nothing from more, and on a busy small
    machine spin-waiting threads make them 10-100x slower; 0 = torch's default)."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    learn: LearnConfig = dataclasses.field(default_factory=LearnConfig)
    unlearn: UnlearnConfig = dataclasses.field(default_factory=UnlearnConfig)

    def __post_init__(self) -> None:
        check(self.learn.steps >= 0, "learn.steps", f"must be >= 0, got {self.learn.steps}")
        check(self.learn.steps > 0 or self.model.ref is not None, "learn.steps",
              "0 skips teaching the facts, which only makes sense with --model.ref (a model that knows them)")


PRESETS = {
    # 2 CPU cores, ~10 minutes: 48 authors x 3 QA (train source), 12 companies x 3 QA (OOD), a 2-layer
    # width-64 GPT-2 that memorizes them, then LoRA and full fine-tune as two parallel Tune trials.
    # Departures from the spec's 7B recipe, because a 100k-parameter model trained here differs:
    # the forget target is the name (the simplest tag-matching rule); lr LoRA 1e-2 (2e-4 moves r=4
    # adapters on width 64 nowhere in a few hundred steps), full 1e-4 (1e-3 erases the facts, 2e-6
    # changes nothing); 20 epochs with fresh distractors (1-3 epochs of 288 examples teach nothing).
    "smoke": Config(
        data=DataConfig(n_subjects=48, ood_subjects=12, qa_per_subject=3, target="name"),
        # No start token for the model trained here (taught and tuned without one, so consistent): with
        # it, seed 0 measured in-domain forget accuracy 0.24 after full fine-tuning instead of >= 0.3.
        model=ModelConfig(size="tiny", vocab_size=600, n_ctx=64, start_token=False),
        learn=LearnConfig(steps=900, batch_size=32, lr=3e-3, warmup_steps=50),
        unlearn=UnlearnConfig(lora_lr=1e-2, full_lr=1e-4, epochs=20.0, lens_examples=32),
    ),
    # The published protocol (GPU cluster): TOFU scale (200 authors x 20 QA), spec hyper-parameters.
    # The authors used 7B-13B chat models: pass one with --model.ref (and --learn.steps to teach it the
    # fictitious facts first, as TOFU's fine-tuned models were).
    # Protocol details of the authors' code: their Llama-2 prompt layout, LoRA on q_proj/v_proj with the
    # tags untrained (lora_paper) reported beside xlab's LoRA, and the tag contents reported separately:
    # the answer (TOFU) and the person (AGE).
    "paper": Config(model=ModelConfig(prompt_format="paper"),
                    unlearn=UnlearnConfig(methods=("lora_paper", "lora", "full"), targets=("answer", "name"),
                                          fresh_distractors=False, gpus_per_trial=1.0), torch_threads=0),
}
KEY_METRICS = ["lora/in/forget_acc", "lora/in/retain_acc", "full/in/forget_acc", "full/in/retain_acc"]


def make_data(cfg: Config):
    """Facts of both sources and the unlearning splits (deterministic given cfg.seed)."""
    from xlab.data.tofu import build_unlearning_splits, make_facts

    d = cfg.data
    train_rows = make_facts(d.train_domain, d.n_subjects, d.qa_per_subject, seed=cfg.seed)
    ood_rows = make_facts(d.ood_domain, d.ood_subjects, d.qa_per_subject, seed=cfg.seed)
    splits = build_unlearning_splits(train_rows, ood_rows, d.train_frac, d.target, seed=cfg.seed)
    return train_rows, ood_rows, splits


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _log(msg: str) -> None:
    print(f"[icl_unlearning {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def teach_facts(cfg: Config, rows, tracker=None):
    """The subject model: a new BPE + causal LM (or model.ref) trained on the plain QA ``rows``."""
    import torch

    from xlab.analysis.unlearning import fact_pairs
    from xlab.analysis.unlearning_prompt import PromptStyle
    from xlab.data.tofu import FORGOT
    from xlab.lm import LMTrainConfig, build_causal_lm, load_causal_lm, train_bpe, train_on_pairs

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    if cfg.model.ref:
        model, tok = load_causal_lm(cfg.model.ref)
    else:
        # The tokenizer sees every fact text and the word "forgot", never the tags (added later, as the
        # study does with a pretrained model).
        text_style = PromptStyle("paper" if cfg.model.prompt_format == "paper" else "plain")
        texts = [p + c for p, c in fact_pairs(rows, text_style)] + [text_style("x") + f" {FORGOT}"] * 4
        tok = train_bpe(texts, cfg.model.vocab_size)
        model = build_causal_lm(cfg.model.arch, cfg.model.size, vocab_size=len(tok), n_ctx=cfg.model.n_ctx,
                                seed=cfg.seed)
    model.to(_device())
    style = PromptStyle.of(cfg.model.prompt_format, tok)
    pairs = fact_pairs(rows, style)
    rng = random.Random(f"context:{cfg.seed}")
    for _ in range(cfg.learn.context_variants):
        for r in rows:
            other = rng.choice(rows)
            while other.subject == r.subject and len({x.subject for x in rows}) > 1:
                other = rng.choice(rows)
            pairs.append((style(f"{rng.choice((other.subject, other.answer))} {r.question}"), f" {r.answer}"))
    history = []
    if cfg.learn.steps > 0:
        lcfg = LMTrainConfig(steps=cfg.learn.steps, batch_size=cfg.learn.batch_size, lr=cfg.learn.lr,
                             warmup_steps=cfg.learn.warmup_steps, weight_decay=0.0, block_size=cfg.model.n_ctx,
                             log_every=max(cfg.learn.steps // 20, 1), seed=cfg.seed)

        def log_fn(step: int, m: dict) -> None:
            _log(f"learning facts: step {step}/{cfg.learn.steps} loss {m['train/loss']:.3f}")
            if tracker is not None:
                tracker.log_metrics({f"learn/{k.split('/')[-1]}": v for k, v in m.items()}, step=step)

        history = train_on_pairs(model, tok, pairs, lcfg, log_fn=log_fn, start=cfg.model.start_token)
    model.eval()
    return model, tok, history


def _eval_split(model, tok, examples, max_new_tokens: int, style, start: bool) -> dict[str, float]:
    from xlab.analysis.unlearning import example_prompt, greedy_answers, unlearning_scores

    outs = greedy_answers(model, tok, [example_prompt(e, style) for e in examples], max_new_tokens, start=start)
    return unlearning_scores(examples, outs), outs


def _lens_sample(examples, k: int):
    forget = [e for e in examples if e.kind == "forget"][: k // 2]
    retain = [e for e in examples if e.kind == "retain"][: k // 2]
    return forget + retain


def trial(cfg: Config) -> dict:
    """One Tune trial: unlearning fine-tune of the subject model with ``cfg.unlearn.method``."""
    import torch

    from xlab.analysis.unlearning import (
        add_unlearning_tokens,
        example_prompt,
        logit_lens_curves,
        plot_logit_lens,
        unlearning_pairs,
        unwrap_lora,
        wrap_lora,
    )
    from xlab.analysis.unlearning_prompt import PromptStyle
    from xlab.lm import LMTrainConfig, load_causal_lm, train_on_pairs
    from xlab.track import Tracker

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    u = cfg.unlearn
    check(bool(u.base_model), "unlearn.base_model", "the trial needs the subject model's URI (set by main)")
    tracker = Tracker()
    _, _, splits = make_data(cfg)
    model, tok = load_causal_lm(u.base_model, device=_device())
    tag_ids = add_unlearning_tokens(model, tok, seed=cfg.seed)
    style, start = PromptStyle.of(cfg.model.prompt_format, tok), cfg.model.start_token
    evals = {"in": splits.test_in, "ood": splits.test_ood}
    metrics: dict[str, float] = {}
    lens_in = _lens_sample(splits.test_in, u.lens_examples)
    curves = {"before": logit_lens_curves(model, tok, lens_in, style=style, start=start)}
    for split, examples in evals.items():
        scores, _ = _eval_split(model, tok, examples, u.max_new_tokens, style, start)
        metrics.update({f"before/{split}/{k}": v for k, v in scores.items()})
    _log(f"{u.method}: before  in-domain forget {metrics['before/in/forget_acc']:.2f} "
         f"retain {metrics['before/in/retain_acc']:.2f}")

    lr = u.full_lr if u.method == "full" else u.lora_lr
    if u.method == "full":
        net = model
    elif u.method == "lora_paper":  # the authors' LoraConfig: peft's q/v default, tags untrained
        net = wrap_lora(model, [], u.lora_r, u.lora_alpha, u.lora_dropout, scope="qv")
    else:
        net = wrap_lora(model, tag_ids if u.lora_train_tags else [], u.lora_r, u.lora_alpha, u.lora_dropout)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    steps = max(1, round(u.epochs * len(splits.train) / u.batch_size))
    tcfg = LMTrainConfig(steps=steps, batch_size=u.batch_size, lr=lr, schedule="constant", weight_decay=0.0,
                         block_size=cfg.model.n_ctx, log_every=max(steps // 20, 1), seed=cfg.seed)

    def log_fn(step: int, m: dict) -> None:
        tracker.log_metrics({f"unlearn/{k.split('/')[-1]}": v for k, v in m.items()}, step=step)
        if step % max(steps // 5, 1) == 0 or step == steps:
            _log(f"{u.method}: unlearning step {step}/{steps} loss {m['train/loss']:.3f}")

    pairs = unlearning_pairs(splits.train, style)
    if u.fresh_distractors:
        from xlab.data.tofu import unlearning_examples

        rows = [e.qa for e in splits.train if e.kind == "forget"]
        pool = make_data(cfg)[0]
        for epoch in range(1, math.ceil(u.epochs)):
            pairs += unlearning_pairs(unlearning_examples(rows, cfg.data.target, seed=cfg.seed + 1000 * epoch,
                                                          pool=pool), style)
    t0 = time.perf_counter()
    history = train_on_pairs(net, tok, pairs, tcfg, log_fn=log_fn, start=start)
    metrics["train_seconds"] = time.perf_counter() - t0
    model = unwrap_lora(net)
    model.eval()
    samples = {}
    for split, examples in {**evals, "train": splits.train}.items():
        scores, outs = _eval_split(model, tok, examples, u.max_new_tokens, style, start)
        metrics.update({f"after/{split}/{k}": v for k, v in scores.items()})
        samples[split] = [{"kind": e.kind, "prompt": example_prompt(e, style), "gold": e.output, "output": o}
                          for e, o in list(zip(examples, outs, strict=True))[:40]]
    curves["after"] = logit_lens_curves(model, tok, lens_in, style=style, start=start)
    metrics.update({"trainable_params": float(trainable), "steps": float(steps), "lr": lr,
                    "final_loss": history[-1]["train/loss"] if history else float("nan")})
    _log(f"{u.method}: after   in-domain forget {metrics['after/in/forget_acc']:.2f} "
         f"retain {metrics['after/in/retain_acc']:.2f}; out-of-domain forget {metrics['after/ood/forget_acc']:.2f} "
         f"retain {metrics['after/ood/retain_acc']:.2f}")
    tracker.log_metrics(metrics)
    tracker.log_dict(curves, "logit_lens.json")
    tracker.log_dict(samples, "samples.json")
    tracker.log_figure(plot_logit_lens(curves, f"{u.method}: logit lens on in-domain test queries"),
                       "logit_lens.png")
    return {k.replace("/", "_"): v for k, v in metrics.items() if k.startswith("after/")}


def trial_label(method: str, target: str | None) -> str:
    """A trial's name in tables and metric keys: the method, with the tag contents when several are run."""
    return method if target is None else f"{method}[{target}]"


def results_table(children, by_target: bool = False) -> list[dict]:
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
                rows.append({"method": method, "target": target, "split": split, "stage": stage, "status": run.info.status,
                             **{k: m.get(f"{key}/{k}") for k in ("forget_acc", "retain_acc", "forget_leak",
                                                                  "retain_forgot")}})
    return rows


def comparison_figure(table):
    """Forget and retain accuracy, before vs after, per method and split (grouped bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
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
    fig.tight_layout()
    return fig


def main(cfg: Config) -> dict:
    import tempfile

    import mlflow
    import pandas as pd

    from xlab.analysis.unlearning import knowledge_accuracy, plot_logit_lens
    from xlab.analysis.unlearning_prompt import PromptStyle
    from xlab.config import apply_overrides
    from xlab.lm import save_causal_lm
    from xlab.session import job_session
    from xlab.track import Tracker, child_runs
    from xlab.tune import grid, raise_on_errors, run_sweep

    with job_session("icl_unlearning", cfg) as parent:
        tracker = Tracker()
        train_rows, ood_rows, splits = make_data(cfg)
        _log(f"{len(train_rows)} {cfg.data.train_domain} rows, {len(ood_rows)} {cfg.data.ood_domain} rows; "
             f"unlearning train/in/ood examples: {len(splits.train)}/{len(splits.test_in)}/{len(splits.test_ood)}")
        tracker.log_dict([dataclasses.asdict(r) for r in train_rows + ood_rows], "facts.json")
        model, tok, _ = teach_facts(cfg, train_rows + ood_rows, tracker)
        style = PromptStyle.of(cfg.model.prompt_format, tok)
        know = {f"knowledge/{cfg.data.train_domain}": knowledge_accuracy(model, tok, train_rows, start=cfg.model.start_token,
                                                                         style=style),
                f"knowledge/{cfg.data.ood_domain}": knowledge_accuracy(model, tok, ood_rows, start=cfg.model.start_token,
                                                                       style=style)}
        tracker.log_metrics(know)
        _log("subject model answers plain questions: " + ", ".join(f"{k} {v:.2f}" for k, v in know.items()))
        # The trials load the subject model by URI (any node of a cluster can).
        with tempfile.TemporaryDirectory() as d:
            save_causal_lm(model, tok, f"{d}/subject_model")
            mlflow.log_artifacts(f"{d}/subject_model", "subject_model")
        base = f"runs:/{parent.info.run_id}/subject_model"
        tcfg = apply_overrides(cfg, {"unlearn.base_model": base})
        axes = {"unlearn.method": list(cfg.unlearn.methods)}
        if cfg.unlearn.targets:
            axes["data.target"] = list(cfg.unlearn.targets)
        results = run_sweep(trial, tcfg, grid(axes),
                            parent_run_id=parent.info.run_id, metric="after_in_forget_acc", mode="max",
                            cpus_per_trial=cfg.unlearn.cpus_per_trial, gpus_per_trial=cfg.unlearn.gpus_per_trial)
        children = child_runs(parent.info.run_id)
        by_target = bool(cfg.unlearn.targets)
        table = pd.DataFrame(results_table(children, by_target))
        lens = {}
        for run in children:
            if run.info.status == "FINISHED":
                curves = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/logit_lens.json")
                lens.setdefault("before", curves["before"])
                label = trial_label(run.data.params.get("unlearn.method", "?"),
                                    run.data.params.get("data.target") if by_target else None)
                lens[f"after {label}"] = curves["after"]
        if lens:
            tracker.log_figure(plot_logit_lens(lens, "logit lens at the first answer position (in-domain test)"),
                               "logit_lens.png")
        if not table.empty:
            tracker.log_dict(table.to_dict(orient="records"), "results.json")
            tracker.log_figure(comparison_figure(table), "forget_retain.png")
            after = table[table.stage == "after"]
            tracker.log_metrics({f"{r.method}/{r.split}/{k}": getattr(r, k) for r in after.itertuples()
                                 for k in ("forget_acc", "retain_acc")})
            print(table.pivot_table(index=["method", "split"], columns="stage",
                                    values=["forget_acc", "retain_acc"]).round(3).to_string())
        raise_on_errors(results)
        return {"table": table, "knowledge": know, "run_id": parent.info.run_id}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("icl_unlearning")
