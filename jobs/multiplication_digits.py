"""Multiplication digits: first- vs last-digit confidence of n x m products, with Monte-Carlo dropout.

Study: *Language Models Do Hard Arithmetic Tasks Easily and Hardly Do Easy Arithmetic Tasks*
(Gambardella, Iwasawa, Matsuo, ACL 2024). For ``"{a} * {b} = "`` with n, m in 1..5 digits it measures
p(first digit | prompt), the last digit's probability after the model's own greedy higher digits
(unconditioned) and after the gold higher digits (conditioned), the accuracy of each, and their
Monte-Carlo dropout mean and spread (:mod:`xlab.analysis.digits`).

The subject model (:mod:`xlab.lm.subject`) is a new model (``--subject.arch``, default GPT-2) trained
here on ``"a * b = c"`` lines (digit-level tokenizer by default; ``subject.tokenizer bpe`` trains a
byte-level BPE that merges digit runs), or any HF causal LM given with ``--subject.ref`` (a
save_pretrained directory or an MLflow URI). Evaluation runs as Ray tasks, one per
group of (n, m) cells, each loading the model by URI. The MLflow run gets per-(n, m) heatmaps
(confidence, accuracy, MC dropout), the per-cell table and per-problem records, and summary metrics
for the largest cell.

    xlab run multiplication_digits --preset smoke
    xlab run multiplication_digits --preset paper                        # GPU cluster
    xlab run multiplication_digits --preset smoke --subject.arch llama
    xlab run multiplication_digits --subject.ref models:/arith-gpt2/1 --eval.mc_passes 100

Protocol vs paper (what matches, what differs and why): docs/studies/multiplication_digits.md.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

from xlab.config import JobConfig, check
from xlab.lm.loop import LMTrainConfig
from xlab.lm.models import SIZES
from xlab.lm.subject import SubjectConfig as LMSubjectConfig


@dataclasses.dataclass
class DataConfig:
    max_digits: int = 5
    """Operands have 1..max_digits digits (spec: 5)."""
    eval_per_cell: int = 100
    """Evaluation problems per (n, m) cell (never seen in training)."""
    train_problems: int = 500_000
    """Training pool of a new subject (uniform over (n, m) cells, evaluation problems excluded)."""


@dataclasses.dataclass
class SubjectConfig(LMSubjectConfig):
    """The model under study; a new one has its own tokenizer."""

    tokenizer: Literal["digit", "bpe"] = "digit"
    """digit: one token per character; bpe: byte-level BPE of subject.vocab_size trained on the arithmetic
    text (merges digits)."""


@dataclasses.dataclass
class EvalConfig:
    mc_passes: int = 50
    """Monte-Carlo dropout passes (spec: 30-100; 0 = off)."""
    mc_p: float = 0.1
    """Dropout probability at inference."""
    mc_sites: tuple[str, ...] = ("native",)
    """Where MC dropout acts (xlab.analysis.mc_dropout): native (the model's own dropout: on Llama/Mistral
    attention-weight dropout only), resid (every block's output, by hook), mlp (every MLP output, by hook).
    The active sites are logged (mc_active_sites.json)."""
    start_token: bool = True
    """Start every sequence the way the model's tokenizer does (xlab.lm.sequence_start: Llama/Mistral <s>,
    GPT-2 <|endoftext|>); the subject trained here learns with the same start. False: text tokens only."""
    tasks: int = 2
    """Ray tasks the (n, m) cells are spread over."""
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    """GPUs each evaluation task reserves (models run on CUDA whenever the process sees one)."""

    def __post_init__(self) -> None:
        check(self.mc_passes >= 0, "eval.mc_passes", f"must be >= 0, got {self.mc_passes}")
        check(0.0 <= self.mc_p < 1.0, "eval.mc_p", f"must be in [0, 1), got {self.mc_p}")
        check(self.tasks >= 1, "eval.tasks", f"must be >= 1, got {self.tasks}")
        from xlab.analysis.mc_dropout import SITES

        check(bool(self.mc_sites) and set(self.mc_sites) <= set(SITES), "eval.mc_sites",
              f"name one or more of {', '.join(SITES)}, got {self.mc_sites}")


@dataclasses.dataclass
class Config(JobConfig):
    torch_threads: int = 1
    """Torch intra-op threads per process (1: tiny models gain nothing from more, and on a busy small
    machine spin-waiting threads make them 10-100x slower; 0 = torch's default)."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    subject: SubjectConfig = dataclasses.field(
        default_factory=lambda: SubjectConfig(size="smoke", vocab_size=512, dropout=0.1, n_ctx=48))
    """The subject; a new one trains with dropout (MC dropout at inference uses eval.mc_p)."""
    train: LMTrainConfig = dataclasses.field(
        default_factory=lambda: LMTrainConfig(steps=20_000, batch_size=64, lr=1e-3, warmup_steps=200,
                                              weight_decay=0.0, block_size=48, log_every=800))
    """Training of a new subject (loss on the product digits and EOS)."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check(1 <= self.data.max_digits <= 9, "data.max_digits", f"must be in 1..9, got {self.data.max_digits}")
        check(self.data.eval_per_cell >= 1, "data.eval_per_cell", f"must be >= 1, got {self.data.eval_per_cell}")
        need = 4 * self.data.max_digits + 8  # "a * b = " + product + EOS
        ctx = self.subject.n_ctx or SIZES[self.subject.size]["n_ctx"]  # 0: the size preset's
        check(not self.subject.trains or ctx >= need, "subject.n_ctx",
              f"must be >= {need} for {self.data.max_digits}-digit operands, got {ctx}")
        check(self.train.block_size >= need, "train.block_size", f"must be >= {need} for {self.data.max_digits}-digit operands")


PRESETS = {
    # 2 CPU cores, a few minutes: a 2-layer GPT-2 (width 64) on 1..5-digit products, 12 problems per
    # cell, 20 MC dropout passes.
    "smoke": Config(
        data=DataConfig(eval_per_cell=12, train_problems=100_000),
        subject=SubjectConfig(size="tiny", vocab_size=512, dropout=0.1, n_ctx=32),
        train=LMTrainConfig(steps=2000, batch_size=32, lr=3e-3, warmup_steps=50, weight_decay=0.0, block_size=32,
                            log_every=80),
        eval=EvalConfig(mc_passes=20),
    ),
    # GPU cluster: GPT-2 small on 5M lines, 100 problems per cell, 100 MC passes.
    "paper": Config(
        data=DataConfig(train_problems=5_000_000),
        subject=SubjectConfig(size="gpt2-small", vocab_size=512, dropout=0.1, n_ctx=48),
        train=LMTrainConfig(steps=100_000, batch_size=256, lr=3e-4, warmup_steps=2000, weight_decay=0.0,
                            block_size=48, log_every=4000),
        eval=EvalConfig(mc_passes=100, tasks=8, gpus_per_task=1.0),
        torch_threads=0,
    ),
}
KEY_METRICS = ["largest/first_conf", "largest/last_uncond_conf", "largest/last_cond_conf", "first_minus_last_conf"]


def _log(msg: str) -> None:
    print(f"[multiplication_digits {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_subject(cfg: Config, exclude, tracker=None):
    """A new causal LM trained on ``"a * b = c"`` (loss on the product digits and EOS)."""
    import torch

    from xlab.lm import train_on_pairs
    from xlab.lm.subject import subject_lm
    from xlab.studydata.arithmetic import digit_tokenizer, training_problems

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    problems = training_problems(cfg.data.max_digits, cfg.data.train_problems, seed=cfg.seed, exclude=exclude)
    tok = digit_tokenizer() if cfg.subject.tokenizer == "digit" else None
    model, tok = subject_lm(cfg.subject, texts=(p.text for p in problems[:50_000]), tokenizer=tok, seed=cfg.seed,
                            device="cuda" if torch.cuda.is_available() else "cpu")
    steps = cfg.train.steps

    def log_fn(step: int, m: dict) -> None:
        if step % max(steps // 10, 1) == 0 or step == steps:
            _log(f"training: step {step}/{steps} loss {m['train/loss']:.3f}")
        if tracker is not None:
            tracker.log_metrics({f"subject/{k.split('/')[-1]}": v for k, v in m.items()}, step=step)

    history = train_on_pairs(model, tok, [(p.prompt, p.answer) for p in problems],
                             dataclasses.replace(cfg.train, seed=cfg.seed), log_fn=log_fn, start=cfg.eval.start_token)
    model.eval()
    return model, tok, history


def evaluate_cells(model_ref: str, problems: list, ev: EvalConfig, seed: int,
                   threads: int = 1) -> tuple[list[dict], list[str]]:
    """Load the model by reference and evaluate ``problems`` (one Ray task runs this); returns the
    records and the MC dropout sites that were active."""
    import torch

    from xlab.analysis.digits import evaluate_digits
    from xlab.analysis.mc_dropout import mc_dropout
    from xlab.lm import load_causal_lm

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, tok = load_causal_lm(model_ref, device="cuda" if torch.cuda.is_available() else "cpu")
    with mc_dropout(model, ev.mc_p, ev.mc_sites) as active:
        pass
    model.eval()
    records = evaluate_digits(model, tok, problems, mc_passes=ev.mc_passes, mc_p=ev.mc_p, start=ev.start_token,
                              mc_sites=ev.mc_sites)
    return records, active


def summary_metrics(table, max_digits: int) -> dict[str, float]:
    """Means over all cells, the largest cell, and the study's two contrasts.

    ``first_minus_last_conf``: first-digit minus unconditioned last-digit confidence on the cells
    with n + m >= 2 * max_digits - 2 (the larger problems: 8 for 5-digit operands); ``cond_gain_largest``: conditioned minus
    unconditioned last-digit confidence on the largest cell.
    """
    cols = [c for c in table.columns if c.endswith(("_conf", "_correct", "_mc_mean", "_mc_std"))]
    out = {f"all/{c}": float(table[c].mean()) for c in cols}
    largest = table[(table.n == max_digits) & (table.m == max_digits)]
    out.update({f"largest/{c}": float(largest[c].mean()) for c in cols})
    big = table[table.n + table.m >= max(2, 2 * max_digits - 2)]
    out["first_minus_last_conf"] = float((big.first_conf - big.last_uncond_conf).mean())
    out["first_minus_last_acc"] = float((big.first_correct - big.last_uncond_correct).mean())
    out["cond_gain_largest"] = out["largest/last_cond_conf"] - out["largest/last_uncond_conf"]
    out["cond_gain_big"] = float((big.last_cond_conf - big.last_uncond_conf).mean())
    return out


def main(cfg: Config) -> dict:
    import ray

    from xlab.analysis.digits import cell_table, heatmaps
    from xlab.lm.subject import check_ref, log_subject
    from xlab.session import job_session
    from xlab.studydata.arithmetic import make_problems
    from xlab.track import Tracker

    check_ref(cfg.subject)  # a missing directory fails before starting Ray, not inside every Ray task
    with job_session("multiplication_digits", cfg) as parent:
        tracker = Tracker()
        digits = range(1, cfg.data.max_digits + 1)
        problems = make_problems(digits, digits, cfg.data.eval_per_cell, seed=cfg.seed)
        if cfg.subject.trains:
            model, tok, _ = train_subject(cfg, problems, tracker)
            ref = log_subject(model, tok, cfg.subject)
        else:
            ref = cfg.subject.ref
            _log(f"analysing {ref}")
        tracker.log_params({"subject_ref": ref})
        # Spread the cells over Ray tasks (whole cells per task, interleaved so sizes balance).
        cells = sorted({(p.n, p.m) for p in problems})
        groups = [cells[i::cfg.eval.tasks] for i in range(min(cfg.eval.tasks, len(cells)))]
        remote = ray.remote(num_cpus=cfg.eval.cpus_per_task, num_gpus=cfg.eval.gpus_per_task)(evaluate_cells)
        futures = [remote.remote(ref, [p for p in problems if (p.n, p.m) in set(g)], cfg.eval,
                                 cfg.seed + i, cfg.torch_threads) for i, g in enumerate(groups)]
        _log(f"evaluating {len(problems)} problems in {len(futures)} Ray tasks ({cfg.eval.mc_passes} MC passes)")
        results = ray.get(futures)
        records = [r for chunk, _ in results for r in chunk]
        active = results[0][1]
        tracker.log_dict({"sites": cfg.eval.mc_sites, "active": active}, "mc_active_sites.json")
        tracker.log_metrics({"mc_active_sites": float(len(active))})
        _log(f"MC dropout sites {cfg.eval.mc_sites}: {len(active)} active ({', '.join(active[:4])}"
             f"{', ...' if len(active) > 4 else ''})")
        table = cell_table(records)
        metrics = summary_metrics(table, cfg.data.max_digits)
        tracker.log_metrics(metrics)
        for r in table.itertuples():
            tracker.log_metrics({f"cell/{r.n}x{r.m}/{k}": getattr(r, k) for k in
                                 ("first_conf", "last_uncond_conf", "last_cond_conf")})
        tracker.log_dict(table.to_dict(orient="records"), "cells.json")
        tracker.log_dict(records, "records.json")
        title = f"{ref}"
        tracker.log_figure(heatmaps(table, ["first_conf", "last_uncond_conf", "last_cond_conf"], title),
                           "heatmap_confidence.png")
        tracker.log_figure(heatmaps(table, ["first_correct", "last_uncond_correct", "last_cond_correct"], title),
                           "heatmap_accuracy.png")
        if cfg.eval.mc_passes > 0:
            tracker.log_figure(heatmaps(table, [f"{m}_mc_{s}" for s in ("mean", "std")
                                                for m in ("first", "last_uncond", "last_cond")], title),
                               "heatmap_mc_dropout.png")
        cols = ["n", "m", "first_conf", "last_uncond_conf", "last_cond_conf", "first_correct",
                "last_uncond_correct", "last_cond_correct"]
        print(table[cols].round(3).to_string(index=False))
        _log("largest cell: first {:.3f}, last uncond {:.3f}, last cond {:.3f}; first-last (big cells) {:+.3f}".format(
            metrics["largest/first_conf"], metrics["largest/last_uncond_conf"], metrics["largest/last_cond_conf"],
            metrics["first_minus_last_conf"]))
        return {"table": table, "metrics": metrics, "run_id": parent.info.run_id, "model": ref}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("multiplication_digits")
