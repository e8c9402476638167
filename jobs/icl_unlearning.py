"""In-context knowledge unlearning: teach a model TOFU-like facts, then tune it to forget on request.

Study: *Answer When Needed, Forget When Not* (Takashiro et al.). Steps:

1. **Facts**: fictitious authors (the training source) and fictitious companies (the out-of-domain
   source), generated with ``faker`` (:mod:`xlab.studydata.tofu`).
2. **Subject model** (:mod:`xlab.lm.subject`): a byte-level BPE and a new model (``--subject.arch``,
   default GPT-2) trained here on the plain QA of both sources until it answers them (``--subject.ref``
   starts from any HF causal LM instead, e.g. a 7B chat model on a GPU cluster; ``learn.steps 0``
   skips teaching). Logged to MLflow as ``subject_model``.
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
    xlab run icl_unlearning --preset smoke --subject.arch llama
    xlab run icl_unlearning --preset paper --subject.ref models:/llama2-7b-chat/1   # GPU cluster
    xlab run icl_unlearning --unlearn.methods lora --data.target name

Protocol vs paper (what matches, what differs and why): docs/studies/icl_unlearning.md.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

from xlab.analysis.unlearning_study import UnlearnConfig
from xlab.config import JobConfig, check
from xlab.lm.subject import SubjectConfig


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
        from xlab.studydata.tofu import DOMAINS

        for f in ("train_domain", "ood_domain"):
            check(getattr(self, f) in DOMAINS, f"data.{f}", f"must be one of {', '.join(DOMAINS)}, got {getattr(self, f)!r}")
        check(self.train_domain != self.ood_domain, "data.ood_domain",
              "must differ from data.train_domain (out-of-domain = another source)")
        check(self.n_subjects >= 2 and self.ood_subjects >= 2, "data.n_subjects/ood_subjects",
              "need at least 2 subjects per source (distractors are other subjects)")
        check(1 <= self.qa_per_subject <= 20, "data.qa_per_subject", f"must be in 1..20, got {self.qa_per_subject}")
        check(0 < self.train_frac < 1, "data.train_frac", f"must be in (0, 1), got {self.train_frac}")


@dataclasses.dataclass
class PromptConfig:
    """How questions are laid out and sequences start."""

    format: Literal["auto", "plain", "paper", "chat"] = "auto"
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
    """Optimizer steps (0 = use subject.ref as it is)."""
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    context_variants: int = 2
    """Also teach each fact this many times after an unrelated prefix (another subject's name or
    another answer, no tags), so recall survives extra text before the question, as a pretrained
    model's does; 0 = plain questions only."""


@dataclasses.dataclass
class Config(JobConfig):
    torch_threads: int = 1
    """Torch intra-op threads per process (1: tiny models gain nothing from more, and on a busy small
    machine spin-waiting threads make them 10-100x slower; 0 = torch's default)."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    subject: SubjectConfig = dataclasses.field(
        default_factory=lambda: SubjectConfig(size="gpt2-small", vocab_size=4096, n_ctx=128))
    """The subject; its n_ctx is also the block size of teaching and unlearning (also for a subject.ref)."""
    prompt: PromptConfig = dataclasses.field(default_factory=PromptConfig)
    learn: LearnConfig = dataclasses.field(default_factory=LearnConfig)
    unlearn: UnlearnConfig = dataclasses.field(default_factory=UnlearnConfig)

    def __post_init__(self) -> None:
        check(self.learn.steps >= 0, "learn.steps", f"must be >= 0, got {self.learn.steps}")
        check(self.learn.steps > 0 or not self.subject.trains, "learn.steps",
              "0 skips teaching the facts, which only makes sense with --subject.ref (a model that knows them)")
        check(self.subject.n_ctx >= 16, "subject.n_ctx", f"is the block size here: must be >= 16, got {self.subject.n_ctx}")


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
        subject=SubjectConfig(size="tiny", vocab_size=600, n_ctx=64),
        prompt=PromptConfig(start_token=False),
        learn=LearnConfig(steps=900, batch_size=32, lr=3e-3, warmup_steps=50),
        unlearn=UnlearnConfig(lora_lr=1e-2, full_lr=1e-4, epochs=20.0, lens_examples=32),
    ),
    # The published protocol (GPU cluster): TOFU scale (200 authors x 20 QA), spec hyper-parameters.
    # The authors used 7B-13B chat models: pass one with --subject.ref (and --learn.steps to teach it the
    # fictitious facts first, as TOFU's fine-tuned models were).
    # Protocol details of the authors' code: their Llama-2 prompt layout, LoRA on q_proj/v_proj with the
    # tags untrained (lora_paper) reported beside xlab's LoRA, and the tag contents reported separately:
    # the answer (TOFU) and the person (AGE).
    "paper": Config(prompt=PromptConfig(format="paper"),
                    unlearn=UnlearnConfig(methods=("lora_paper", "lora", "full"), targets=("answer", "name"),
                                          fresh_distractors=False, gpus_per_trial=1.0), torch_threads=0),
}
KEY_METRICS = ["lora/in/forget_acc", "lora/in/retain_acc", "full/in/forget_acc", "full/in/retain_acc"]


def make_data(cfg: Config):
    """Facts of both sources and the unlearning splits (deterministic given cfg.seed)."""
    from xlab.studydata.tofu import build_unlearning_splits, make_facts

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
    """The subject model (a new BPE + causal LM, or subject.ref) trained on the plain QA ``rows``."""
    import torch

    from xlab.analysis.unlearning_prompt import PromptStyle
    from xlab.analysis.unlearning_study import teaching_pairs
    from xlab.lm import LMTrainConfig, train_on_pairs
    from xlab.lm.subject import subject_lm
    from xlab.studydata.tofu import FORGOT

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    # A new tokenizer sees every fact text and the word "forgot", never the tags (added later, as the
    # study does with a pretrained model).
    text_style = PromptStyle("paper" if cfg.prompt.format == "paper" else "plain")
    texts = [p + c for p, c in teaching_pairs(rows, text_style)] + [text_style("x") + f" {FORGOT}"] * 4
    model, tok = subject_lm(cfg.subject, texts=texts, seed=cfg.seed, device=_device())
    pairs = teaching_pairs(rows, PromptStyle.of(cfg.prompt.format, tok), context_variants=cfg.learn.context_variants,
                           seed=cfg.seed)
    history = []
    if cfg.learn.steps > 0:
        lcfg = LMTrainConfig(steps=cfg.learn.steps, batch_size=cfg.learn.batch_size, lr=cfg.learn.lr,
                             warmup_steps=cfg.learn.warmup_steps, weight_decay=0.0, block_size=cfg.subject.n_ctx,
                             log_every=max(cfg.learn.steps // 20, 1), seed=cfg.seed)

        def log_fn(step: int, m: dict) -> None:
            _log(f"learning facts: step {step}/{cfg.learn.steps} loss {m['train/loss']:.3f}")
            if tracker is not None:
                tracker.log_metrics({f"learn/{k.split('/')[-1]}": v for k, v in m.items()}, step=step)

        history = train_on_pairs(model, tok, pairs, lcfg, log_fn=log_fn, start=cfg.prompt.start_token)
    model.eval()
    return model, tok, history


def trial(cfg: Config) -> dict:
    """One Tune trial: unlearning fine-tune of the subject model with ``cfg.unlearn.method``."""
    import torch

    from xlab.analysis.unlearning import plot_logit_lens
    from xlab.analysis.unlearning_prompt import PromptStyle
    from xlab.analysis.unlearning_study import unlearning_trial
    from xlab.lm import load_causal_lm
    from xlab.track import Tracker

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    u = cfg.unlearn
    check(bool(u.base_model), "unlearn.base_model", "the trial needs the subject model's URI (set by main)")
    tracker = Tracker()
    rows, _, splits = make_data(cfg)
    model, tok = load_causal_lm(u.base_model, device=_device())

    def log_fn(step: int, m: dict) -> None:
        tracker.log_metrics({f"unlearn/{k.split('/')[-1]}": v for k, v in m.items()}, step=step)

    metrics, samples, curves = unlearning_trial(
        model, tok, splits, rows, u, target=cfg.data.target, style=PromptStyle.of(cfg.prompt.format, tok),
        start=cfg.prompt.start_token, block_size=cfg.subject.n_ctx, seed=cfg.seed, log_fn=log_fn, log=_log)
    tracker.log_metrics(metrics)
    tracker.log_dict(curves, "logit_lens.json")
    tracker.log_dict(samples, "samples.json")
    tracker.log_figure(plot_logit_lens(curves, f"{u.method}: logit lens on in-domain test queries"), "logit_lens.png")
    return {k.replace("/", "_"): v for k, v in metrics.items() if k.startswith("after/")}


def main(cfg: Config) -> dict:
    import pandas as pd

    from xlab.analysis.unlearning import knowledge_accuracy, plot_logit_lens
    from xlab.analysis.unlearning_prompt import PromptStyle
    from xlab.analysis.unlearning_study import comparison_figure, results_table, trials_logit_lens
    from xlab.config import apply_overrides
    from xlab.lm.subject import log_subject
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
        style = PromptStyle.of(cfg.prompt.format, tok)
        know = {f"knowledge/{domain}": knowledge_accuracy(model, tok, rows, start=cfg.prompt.start_token, style=style)
                for domain, rows in ((cfg.data.train_domain, train_rows), (cfg.data.ood_domain, ood_rows))}
        tracker.log_metrics(know)
        _log("subject model answers plain questions: " + ", ".join(f"{k} {v:.2f}" for k, v in know.items()))
        # The trials load the subject model by URI (any node of a cluster can).
        base = log_subject(model, tok, cfg.subject)
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
        lens = trials_logit_lens(children, by_target)
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
