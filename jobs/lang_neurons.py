"""Language-specific neurons (Kojima et al., NAACL 2024): find them by average precision, tamper with them.

Protocol (``llm-analysis.md`` section 2): every output channel of every linear layer except the
unembedding is a unit; its response to a sentence is the mean over the sentence's tokens; for each
target language (en, de, fr, es, zh, ja) a unit's score is the average precision of its response as
a classifier of "the sentence is in the target language" (positives: the language's sentences,
negatives: the other five languages'); the top N/2 and bottom N/2 units are selected. Tampering fixes
each selected unit to its median response on target-language sentences at every position, and the
effect is the share of unconditional generations (from the tokenizer's sequence start, temperature 0.8) that py3langid,
restricted to the six languages, assigns to the target language, before and after, for each N of a
sweep. The parent MLflow run gets the AP-selected units, the overlap matrix and per-layer
distribution plots and the share-vs-N plot; each N is a Ray task with its own nested MLflow run.

Sentences come from the machine's gettext catalogs (``xlab.studydata.multilingual``: parallel English
messages and their de/fr/es/zh/ja translations; wordfreq pseudo-sentences top up a language with too
few). Subject (:mod:`xlab.lm.subject`): ``--subject.ref PATH_OR_MLFLOW_URI`` (any Hugging Face causal
LM, e.g. a local xglm-564M), else the platform trains one with ``xlab.lm`` (byte-level BPE + a tiny model
of family ``--subject.arch`` on the six-language mix), logs it to the run as ``subject_model`` and
analyses it.

    xlab run lang_neurons --preset smoke          # trains a tiny multilingual GPT-2 (minutes on CPU)
    xlab run lang_neurons --preset smoke --subject.arch llama
    xlab run lang_neurons --preset paper --subject.ref /models/xglm-564M
    xlab run lang_neurons --analysis.n_values 100 1000 2000 --subject.ref models:/multilingual-lm@prod

Protocol vs paper (what matches, what differs and why): docs/studies/lang_neurons.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xlab.config import JobConfig, check
from xlab.lm.loop import LMTrainConfig
from xlab.lm.subject import SubjectConfig


@dataclasses.dataclass
class DataConfig:
    languages: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ja")
    per_language: int = 100
    """Sentences per language for scoring (positives; the other languages' are the negatives)."""
    train_per_language: int = 1200
    """Sentences per language for training the platform's subject (disjoint from the scored ones)."""
    source: str = "auto"
    """auto (gettext catalogs, topped up from wordfreq), gettext or wordfreq (see xlab.studydata.multilingual)."""
    domains: str = "required"
    """required: catalogs every Debian system has; all: every catalog under /usr/share/locale."""
    sentences_per_doc: int = 4
    """Same-language sentences per training document of the platform's subject."""


@dataclasses.dataclass
class AnalysisConfig:
    n_values: tuple[int, ...] = (20, 100, 400)
    """Sweep of N (units tampered per language: N/2 top + N/2 bottom)."""
    batch_size: int = 16
    max_length: int = 128
    """Tokens per sentence when scoring."""
    start_token: bool = True
    """Start scored sentences and generations the way the subject's tokenizer starts a sequence
    (xlab.lm.sequence_start: XGLM </s>, as the authors' tokenizer("") does; Llama <s>; GPT-2
    <|endoftext|>); False: scored sentences without it and generation from BOS (else EOS)."""


@dataclasses.dataclass
class GenerationConfig:
    n_samples: int = 40
    """Unconditional generations per condition (spec: 100, one seed each)."""
    max_new_tokens: int = 32
    """Tokens per generation (spec: 64)."""
    temperature: float = 0.8
    batch_size: int = 50
    device: str = "cpu"
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0


@dataclasses.dataclass
class Config(JobConfig):
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    subject: SubjectConfig = dataclasses.field(default_factory=lambda: SubjectConfig(n_ctx=128, vocab_size=2000))
    train: LMTrainConfig = dataclasses.field(
        default_factory=lambda: LMTrainConfig(steps=600, batch_size=16, lr=3e-3, warmup_steps=30, block_size=64,
                                              log_every=50))
    analysis: AnalysisConfig = dataclasses.field(default_factory=AnalysisConfig)
    generation: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        from xlab.studydata.multilingual import LANGUAGES, SOURCES

        check(len(self.data.languages) >= 2 and set(self.data.languages) <= set(LANGUAGES), "data.languages",
              f"name two or more of {', '.join(LANGUAGES)}")
        check(self.data.source in SOURCES, "data.source", f"choose one of {', '.join(SOURCES)}")
        check(self.data.domains in ("required", "all"), "data.domains", "use required or all")
        check(self.data.per_language >= 2, "data.per_language", "need at least 2 sentences per language")
        check(bool(self.analysis.n_values) and all(n >= 1 for n in self.analysis.n_values), "analysis.n_values",
              "give one or more N >= 1")
        check(self.generation.n_samples >= 1, "generation.n_samples", "must be >= 1")
        check(self.generation.temperature > 0, "generation.temperature", "must be > 0")


PRESETS = {
    # A tiny GPT-2 (2 layers, width 64: 1,152 units) trained on 1,200 sentences per language (300 documents).
    "smoke": Config(),
    # The paper: 500 positives / 2,500 negatives, N up to 2,000, 100 generations of 64 tokens; bring a
    # model (--subject.ref, e.g. xglm-564M) or train the "smoke"-size GPT-2 on every catalog.
    "paper": Config(
        data=DataConfig(per_language=500, train_per_language=15_000, domains="all"),
        subject=SubjectConfig(size="smoke", n_ctx=256, vocab_size=16_000),
        train=LMTrainConfig(steps=20_000, batch_size=64, lr=1e-3, warmup_fraction=0.05, block_size=256),
        analysis=AnalysisConfig(n_values=(100, 500, 1000, 2000, 4000), batch_size=64),
        generation=GenerationConfig(n_samples=100, max_new_tokens=64, device="cuda", gpus_per_task=0.2),
    ),
}
KEY_METRICS = ["share_gain_mean", "share_gain_max", "overlap_mean"]


def _log(msg: str) -> None:
    print(f"[lang_neurons] {msg}", flush=True)


def load_sentences(cfg: Config) -> tuple[list[Any], list[str]]:
    """(scored sentences, training texts): disjoint, per language."""
    import random

    from xlab.studydata.multilingual import REQUIRED_DOMAINS, group_by_language, load_multilingual

    d = cfg.data
    need = d.per_language + (d.train_per_language if cfg.subject.trains else 0)
    sents = load_multilingual(need, languages=d.languages, source=d.source, seed=cfg.seed,
                              domains=REQUIRED_DOMAINS if d.domains == "required" else None,
                              min_per_language=d.per_language)
    scored, train = [], []
    for lang, group in group_by_language(sents).items():
        scored += group[: d.per_language]
        rest = [s.text for s in group[d.per_language :]]
        # Training documents of a few same-language sentences: the model learns to stay in one language,
        # so an unconditional sample is one language (as in real pretraining text).
        joiner = "" if lang in ("zh", "ja") else " "
        train += [joiner.join(rest[i : i + d.sentences_per_doc]) for i in range(0, len(rest), d.sentences_per_doc)]
    random.Random(cfg.seed).shuffle(train)
    return scored, train


def subject(cfg: Config, texts: list[str], log_fn: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer): ``subject.ref`` loaded, or a new subject trained here on ``texts``."""
    from xlab.lm import train_on_texts
    from xlab.lm.subject import subject_lm

    model, tok = subject_lm(cfg.subject, texts=texts, seed=cfg.seed, device=cfg.generation.device)
    if cfg.subject.trains:
        train_on_texts(model, tok, texts, cfg.train, log_fn=log_fn)
        model.eval()
    return model, tok


def _generation_task(
    cfg: Config, model: Any, tok: Any, layout: Any, n: int | None, tampering: dict[str, tuple],
    parent_run_id: str, tracking_uri: str,
) -> dict[str, Any]:
    """Generations under each language's tampering at one N (``n=None``: no tampering), in a nested run."""
    import torch

    from xlab.analysis.hooks import intervene
    from xlab.analysis.lang_neurons import generate_unconditional, language_shares, tamper_edits
    from xlab.track import Tracker
    from xlab.track.run import child_run

    torch.set_num_threads(max(1, int(cfg.generation.cpus_per_task)))
    g = cfg.generation
    model = model.to(g.device)
    langs = list(cfg.data.languages)
    name = "baseline" if n is None else f"N={n}"
    out: dict[str, Any] = {"n": n, "shares": {}, "samples": {}}
    with child_run(parent_run_id, name, params={"N": n if n is not None else 0}, tracking_uri=tracking_uri):
        for target in langs if n is not None else [None]:
            if target is None:
                texts = generate_unconditional(model, tok, g.n_samples, max_new_tokens=g.max_new_tokens,
                                               temperature=g.temperature, seed=cfg.seed, batch_size=g.batch_size,
                                               start=cfg.analysis.start_token)
            else:
                units, values = tampering[target]
                with intervene(model, tamper_edits(layout, units, values)):
                    texts = generate_unconditional(model, tok, g.n_samples, max_new_tokens=g.max_new_tokens,
                                                   temperature=g.temperature, seed=cfg.seed, batch_size=g.batch_size,
                                                   start=cfg.analysis.start_token)
            key = target or "none"
            out["shares"][key] = language_shares(texts, langs)
            out["samples"][key] = texts[:8]
        tracker = Tracker()
        if n is None:
            tracker.log_metrics({f"share/{lang}": out["shares"]["none"][lang] for lang in [*langs, "und"]})
        else:
            tracker.log_metrics({f"share/{lang}": out["shares"][lang][lang] for lang in langs})
        tracker.log_dict(out, "generations.json")
    return out


def main(cfg: Config) -> dict:
    import time

    import numpy as np
    import ray

    from xlab.analysis.lang_neurons import (
        select_per_language,
        selection_record,
        tampering_summary,
        unit_layout,
        unit_responses,
    )
    from xlab.analysis.lang_neurons_plots import plots
    from xlab.lm.subject import log_subject
    from xlab.session import job_session
    from xlab.studydata.multilingual import provenance
    from xlab.track import Tracker
    from xlab.track.store import resolve_tracking_uri

    with job_session("lang_neurons", cfg) as parent:
        t0 = time.time()
        tracker = Tracker()
        langs = list(cfg.data.languages)
        scored, train_texts = load_sentences(cfg)
        tracker.log_dict({"scored": provenance(scored), "train_sentences": len(train_texts)}, "data_provenance.json")
        _log(f"{len(scored)} scored sentences, {len(train_texts)} training documents ({time.time() - t0:.0f}s)")

        def log_fn(step: int, m: dict) -> None:
            tracker.log_metrics({k: v for k, v in m.items() if k != "step"}, step=step)
            _log(f"train step {step} loss {m.get('train/loss', float('nan')):.3f}")

        model, tok = subject(cfg, train_texts, log_fn=log_fn)
        if cfg.subject.trains:
            _log(f"subject logged as {log_subject(model, tok, cfg.subject)} ({time.time() - t0:.0f}s)")
        layout = unit_layout(model)
        check(max(cfg.analysis.n_values) <= layout.n_units, "analysis.n_values",
              f"N must not exceed the model's {layout.n_units} units")
        labels = np.array([s.lang for s in scored])
        resp = unit_responses(model, tok, [s.text for s in scored], layout, batch_size=cfg.analysis.batch_size,
                              max_length=cfg.analysis.max_length, progress=True, start=cfg.analysis.start_token)
        ap, selected = select_per_language(resp, labels, langs, cfg.analysis.n_values)
        _log(f"{layout.n_units} units scored ({time.time() - t0:.0f}s)")
        tracker.log_dict(selection_record(layout, ap, selected), "selected_units.json")
        tracker.log_metrics({f"ap_max/{lang}": float(ap[lang].max()) for lang in langs}
                            | {f"ap_min/{lang}": float(ap[lang].min()) for lang in langs} | {"n_units": layout.n_units})

        # One Ray task per N (plus the untampered baseline), each with its nested MLflow run.
        g = cfg.generation
        task = ray.remote(_generation_task).options(num_cpus=g.cpus_per_task, num_gpus=g.gpus_per_task)
        model_ref, tok_ref = ray.put(model.cpu()), ray.put(tok)
        uri = resolve_tracking_uri(cfg.tracking.uri)
        futures = [task.remote(cfg, model_ref, tok_ref, layout, None, {}, parent.info.run_id, uri)]
        futures += [task.remote(cfg, model_ref, tok_ref, layout, n, selected[n], parent.info.run_id, uri)
                    for n in selected]
        outs = ray.get(futures)
        baseline = outs[0]["shares"]["none"]
        results = {o["n"]: o["shares"] for o in outs[1:]}
        _log(f"generations done ({time.time() - t0:.0f}s)")

        for name, fig in plots(layout, selected, results, baseline, langs).items():
            tracker.log_figure(fig, name)
        metrics, table = tampering_summary(layout, selected, baseline, results, langs)
        tracker.log_metrics(metrics)
        tracker.log_dict({"shares": table, "baseline_distribution": baseline}, "summary.json")
        _log("share of generations in the target language, before and after tampering:")
        for lang, row in table.items():
            print(f"  {lang}: " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()))
        _log(f"mean overlap between languages at N={metrics['N_top']}: {metrics['overlap_mean']:.3f} "
             f"({time.time() - t0:.0f}s)")
        return {"run_id": parent.info.run_id, "shares": table, "metrics": metrics}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("lang_neurons")
