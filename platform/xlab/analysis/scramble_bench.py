"""Scrambled Bench (Cao et al., EMNLP 2023) as a study: its data, its evaluation of one subject, its plot.

:mod:`xlab.analysis.scramble` holds the two tasks (scrambled sentence recovery, scrambled QA); this
module runs every condition of the benchmark on one generator (``xlab.evals.HFGenerator`` or an
OpenAI-compatible endpoint), as ``jobs/scrambled_bench.py`` does per subject::

    data = bench_data("templates", n_eval=40, n_qa=60, n_train=2000, n_train_qa=2000)
    metrics, samples = evaluate_subject(HFGenerator(model, tok), EvalConfig(), data, seed=0)
    fig = comparison_figure([{"name": "mine", "metrics": metrics}], EvalConfig())
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from xlab.analysis.scramble import MODES, evaluate_qa, evaluate_recovery, relative_performance_gain, scramble
from xlab.analysis.scramble_paper import DEMO_RATE, RECOVERY_DEMOS
from xlab.config import check

CONDITIONS = ("random:0.2", "random:0.5", "random:1.0", "keep_first:1.0", "keep_first_last:1.0", "substitute:1.0")
"""The recovery task's scramble conditions MODE:RATE."""


@dataclasses.dataclass
class EvalConfig:
    """How a subject is evaluated: conditions, shots, QA scoring, protocol, where it runs."""

    conditions: tuple[str, ...] = CONDITIONS
    """Scramble conditions MODE:RATE for the recovery task."""
    shots: tuple[int, ...] = (0, 1)
    """Numbers of solved examples before the query (0 = zero-shot)."""
    qa_conditions: tuple[str, ...] = ("random:1.0", "keep_first_last:1.0")
    """Scrambled-evidence conditions for QA (original and substitute are always run, for the RPG)."""
    qa_scoring: str = "loglikelihood"
    """loglikelihood (option continuation scores), generate (parse the option letter) or paper (the
    authors' prompt, generation and answer parsing; implied by protocol paper)."""
    protocol: Literal["xlab", "paper"] = "xlab"
    """paper: the authors' format throughout (xlab.analysis.scramble_paper): letters scrambled inside any
    word token (digits stay), their recovery prompts (few-shot: their three fixed sentences scrambled at
    50%, no instruction), their QA prompt "... among A through D, the answer is" with generation and
    answer parsing. xlab: all-letter tokens only, xlab's few-shot layout, qa_scoring as set."""
    qa_shots: int = 0
    max_new_tokens: int = 48
    batch_size: int = 16
    start_token: bool = True
    """Start prompts of a Hugging Face subject the way its tokenizer starts a sequence
    (xlab.lm.sequence_start: Llama <s>, as the authors' tokenizer(prompt) does); False: text tokens only."""
    device: str = "cpu"
    cpus_per_subject: float = 1.0

    def __post_init__(self) -> None:
        for c in (*self.conditions, *self.qa_conditions):
            mode, _, rate = c.partition(":")
            check(mode in MODES and rate.replace(".", "", 1).isdigit() and 0 <= float(rate) <= 1,
                  "eval.conditions", f"{c!r} is not MODE:RATE with MODE in {MODES} and RATE in [0, 1]")
        check(all(s >= 0 for s in self.shots), "eval.shots", "must be >= 0")
        check(self.qa_scoring in ("loglikelihood", "generate", "paper"), "eval.qa_scoring",
              "use loglikelihood, generate or paper")
        check(self.protocol != "paper" or max(self.shots, default=0) <= 3, "eval.shots",
              "the paper protocol has three fixed demonstrations: use shots <= 3")

def condition(c: str) -> tuple[str, float]:
    """``"random:0.5"`` -> ``("random", 0.5)``."""
    mode, _, rate = c.partition(":")
    return mode, float(rate)


def condition_key(c: str) -> str:
    """Metric-name form of a condition: ``"random:1.0"`` -> ``"random_1"``."""
    mode, rate = condition(c)
    return f"{mode}_{rate:g}"

def bench_data(source: str = "templates", *, n_eval: int, n_qa: int, n_train: int, n_train_qa: int, qa_shots: int = 0,
               seed: int = 0) -> dict[str, Any]:
    """Evaluation sentences/items, training sentences/items and recovery demos (all disjoint). ``source``:
    templates (:mod:`xlab.studydata.scramble_texts`) or gettext (English messages of the system's catalogs)."""
    from xlab.studydata.scramble_texts import qa_items, template_sentences

    if source == "gettext":
        from xlab.studydata.multilingual import REQUIRED_DOMAINS, load_multilingual

        pool = [s.text for s in load_multilingual(n_eval + 8, languages=("en",), source="gettext",
                                                  domains=REQUIRED_DOMAINS, seed=seed)]
        eval_sents, demo_pool = pool[: n_eval], pool[n_eval :]
    else:
        eval_sents = template_sentences(n_eval, seed=10_000 + seed)
        demo_pool = template_sentences(8, seed=20_000 + seed, exclude=set(eval_sents))
    train_sents = template_sentences(n_train, seed=seed, exclude=set(eval_sents) | set(demo_pool))
    return {
        "eval_sentences": eval_sents,
        "demo_sentences": demo_pool,
        "train_sentences": train_sents,
        "eval_items": qa_items(n_qa, seed=10_000 + seed),
        "demo_items": qa_items(max(qa_shots, 1), seed=30_000 + seed),
        "train_items": qa_items(n_train_qa, seed=seed),
    }

def evaluate_subject(generator: Any, cfg: EvalConfig, data: dict[str, Any], seed: int = 0,
                     log: Any = print) -> tuple[dict[str, float], dict]:
    """Every recovery condition x shots and every QA condition on ``data`` (:func:`bench_data`); returns
    metrics and sample rows."""
    paper = cfg.protocol == "paper"
    rule = "paper" if paper else "xlab"
    metrics: dict[str, float] = {}
    samples: dict[str, Any] = {}
    for shots in cfg.shots:
        for c in cfg.conditions:
            mode, rate = condition(c)
            if paper:  # the authors' fixed demonstrations, 50 % random scrambling whatever the condition
                demos = [(scramble(d, "random", DEMO_RATE, seed=seed, rule=rule), d) for d in RECOVERY_DEMOS[:shots]]
            else:
                demos = [(scramble(d, mode, rate, seed=seed + 7 + i), d)
                         for i, d in enumerate(data["demo_sentences"][:shots])]
            res = evaluate_recovery(generator, data["eval_sentences"], mode=mode, rate=rate, seed=seed,
                                    demos=demos, max_new_tokens=cfg.max_new_tokens, style=rule, rule=rule)
            key = f"{condition_key(c)}/{shots}shot"
            metrics[f"recovery/{key}"] = res["recovery_rate"]
            metrics[f"recovery_corpus/{key}"] = res["recovery_rate_corpus"]
            metrics[f"recovery_exact/{key}"] = res["exact"]
            metrics[f"ed_recovered/{key}"] = res["ed_recovered"]
            metrics[f"ed_scrambled/{key}"] = res["ed_scrambled"]
            samples[f"recovery/{key}"] = res["rows"][:10]
            log(f"recovery {key}: {res['recovery_rate']:.3f}")
    demos = data["demo_items"][: cfg.qa_shots]
    acc = {}
    for c in ("original", "substitute:1.0", *cfg.qa_conditions):
        mode, rate = (None, 1.0) if c == "original" else condition(c)
        acc[c] = evaluate_qa(generator, data["eval_items"], mode=mode, rate=rate, seed=seed,
                             scoring="paper" if paper else cfg.qa_scoring, demos=demos, rule=rule)["accuracy"]
        metrics[f"qa/acc/{'original' if mode is None else condition_key(c)}"] = acc[c]
    for c in cfg.qa_conditions:
        metrics[f"qa/rpg/{condition_key(c)}"] = relative_performance_gain(acc["original"], acc[c], acc["substitute:1.0"])
    return metrics, samples

def comparison_figure(results: list[dict], cfg: EvalConfig) -> Any:
    """Recovery rate per condition (bars per subject x shots) and QA accuracy per evidence condition."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    series = [(r["name"], s) for r in results for s in cfg.shots]
    width = 0.8 / max(len(series), 1)
    for j, (name, shots) in enumerate(series):
        m = next(r["metrics"] for r in results if r["name"] == name)
        vals = [m[f"recovery/{condition_key(c)}/{shots}shot"] for c in cfg.conditions]
        ax.bar([i + j * width for i in range(len(vals))], vals, width, label=f"{name} {shots}-shot")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cfg.conditions))],
                  [c.replace(":", "\n") for c in cfg.conditions], fontsize=7)
    ax.set_ylabel("recovery rate")
    ax.set_title("Scrambled sentence recovery")
    ax.legend(fontsize=7)
    qa = ["original", *[condition_key(c) for c in cfg.qa_conditions], "substitute_1"]
    width = 0.8 / max(len(results), 1)
    for j, r in enumerate(results):
        ax2.bar([i + j * width for i in range(len(qa))], [r["metrics"][f"qa/acc/{k}"] for k in qa], width,
                label=r["name"])
    ax2.set_xticks([i + 0.4 - width / 2 for i in range(len(qa))], [k.replace("_", "\n", 1) for k in qa], fontsize=7)
    ax2.set_ylim(0, 1)
    ax2.set_title("Scrambled QA accuracy")
    ax2.legend(fontsize=7)
    return fig
