"""Scrambled Bench (Cao et al., EMNLP 2023): can a model read and repair text with scrambled letters?

Two tasks, the spec's protocol (``llm-analysis.md`` section 5):

* **Scrambled Sentence Recovery**: sentences scrambled at 20/50/100 % (random), keep-first,
  keep-first-and-last and substitute; the model gets the published prompt (zero- and few-shot) and
  the recovery rate ``(ED(orig, scr) - ED(orig, rec)) / ED(orig, scr)`` is averaged per condition.
* **Scrambled QA**: multiple choice whose evidence is original, scrambled or substituted; accuracy and
  the relative performance gain ``RPG = (acc_scr - acc_sub) / (acc_orig - acc_sub)``.

Subjects (each one Ray task, each with its nested MLflow run; the parent run gets the comparison
plots and ``summary.json``):

* ``--subject.ref PATH_OR_MLFLOW_URI``: any Hugging Face causal LM (a local ``save_pretrained``
  directory or ``models:/NAME@ALIAS``, ``runs:/RUN_ID/model``), through ``xlab.evals.HFGenerator``;
* ``--subject.endpoint_url http://host:8000/v1 --subject.endpoint_model NAME``: a hosted model behind an
  OpenAI-compatible completions API (key from ``$OPENAI_API_KEY`` or ``--subject.api_key_env``); use
  ``--eval.qa_scoring generate`` if the server returns no echoed log-probabilities;
* neither: the platform trains its own subject with ``xlab.lm`` (a tiny GPT-2 + byte-level BPE) on
  template sentences, solved recovery prompts and solved QA items (``xlab.data.scramble_texts``), and
  a reference of the same size on the sentences alone ("nl-only"), which never saw the task.

Data: template sentences and QA items written for the platform (see ``xlab.data.scramble_texts``), or
real English sentences from the system's gettext catalogs (``--data.source gettext``). Evaluation
sentences and items are disjoint from the training ones.

    xlab run scrambled_bench --preset smoke       # trains the tiny subject + reference (~minutes on CPU)
    xlab run scrambled_bench --preset paper --subject.ref models:/my-llm@prod
    xlab run scrambled_bench --preset paper --subject.endpoint_url http://localhost:8000/v1 \\
        --subject.endpoint_model meta-llama/Llama-3.1-8B

Protocol vs paper (what matches, what differs and why): docs/studies/scrambled_bench.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from xlab.config import JobConfig, check
from xlab.lm.loop import LMTrainConfig

CONDITIONS = ("random:0.2", "random:0.5", "random:1.0", "keep_first:1.0", "keep_first_last:1.0", "substitute:1.0")


@dataclasses.dataclass
class DataConfig:
    source: str = "templates"
    """templates (shipped generator) or gettext (English messages of the system's catalogs)."""
    n_eval: int = 40
    """Sentences for the recovery task."""
    n_qa: int = 60
    """QA items."""
    n_train: int = 2000
    """Training sentences (and solved recovery prompts) for the platform-trained subject."""
    n_train_qa: int = 2000
    """Solved QA items for the platform-trained subject."""


@dataclasses.dataclass
class SubjectConfig:
    ref: str = ""
    """A causal LM to evaluate: local directory or MLflow URI (empty: train the platform's subjects)."""
    endpoint_url: str = ""
    """OpenAI-compatible base URL (e.g. http://localhost:8000/v1) of a hosted model to evaluate."""
    endpoint_model: str = ""
    """Model name sent to the endpoint."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the endpoint's API key (may be unset for local servers)."""
    reference: bool = True
    """Also train the nl-only reference (same size, sentences only) when training a subject."""
    arch: str = "gpt2"
    size: str = "tiny"
    n_ctx: int = 256
    vocab_size: int = 1024
    d_model: int = 128
    """Width override of the size preset (0 = keep the preset's)."""
    n_layer: int = 0
    """Depth override of the size preset (0 = keep the preset's)."""


@dataclasses.dataclass
class EvalConfig:
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
        from xlab.analysis.scramble import MODES

        for c in (*self.conditions, *self.qa_conditions):
            mode, _, rate = c.partition(":")
            check(mode in MODES and rate.replace(".", "", 1).isdigit() and 0 <= float(rate) <= 1,
                  "eval.conditions", f"{c!r} is not MODE:RATE with MODE in {MODES} and RATE in [0, 1]")
        check(all(s >= 0 for s in self.shots), "eval.shots", "must be >= 0")
        check(self.qa_scoring in ("loglikelihood", "generate", "paper"), "eval.qa_scoring",
              "use loglikelihood, generate or paper")
        check(self.protocol != "paper" or max(self.shots, default=0) <= 3, "eval.shots",
              "the paper protocol has three fixed demonstrations: use shots <= 3")


@dataclasses.dataclass
class Config(JobConfig):
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    subject: SubjectConfig = dataclasses.field(default_factory=SubjectConfig)
    train: LMTrainConfig = dataclasses.field(
        default_factory=lambda: LMTrainConfig(steps=600, batch_size=16, lr=3e-3, warmup_steps=30, block_size=192,
                                              log_every=100))
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check(self.data.source in ("templates", "gettext"), "data.source", "use templates or gettext")
        check(self.data.n_eval > 0 and self.data.n_qa > 0, "data.n_eval/n_qa", "must be > 0")
        check(not self.subject.endpoint_url or bool(self.subject.endpoint_model), "subject.endpoint_model",
              "name the endpoint's model (--subject.endpoint_model NAME) along with --subject.endpoint_url")


PRESETS = {
    # A 2-layer, width-128 GPT-2 trained for 600 steps on sentences + solved recovery/QA prompts, vs an
    # nl-only reference of the same size trained on the sentences alone.
    "smoke": Config(),
    # Published scale: 300 sentences per condition, 3-shot as well, every QA condition; bring a model.
    "paper": Config(
        data=DataConfig(n_eval=300, n_qa=500),
        subject=SubjectConfig(reference=False, size="smoke", n_ctx=1024, vocab_size=8192, d_model=0),
        train=LMTrainConfig(steps=20_000, batch_size=64, lr=1e-3, warmup_fraction=0.05, block_size=1024),
        eval=EvalConfig(shots=(0, 3), qa_conditions=("random:0.2", "random:0.5", "random:1.0", "keep_first:1.0",
                                                      "keep_first_last:1.0"), max_new_tokens=128, device="cuda",
                        protocol="paper"),
    ),
}
KEY_METRICS = ["recovery/random_1.0/0shot", "recovery/keep_first_last_1.0/0shot", "qa/rpg/random_1.0"]


def _cond(c: str) -> tuple[str, float]:
    mode, _, rate = c.partition(":")
    return mode, float(rate)


def _key(c: str) -> str:
    mode, rate = _cond(c)
    return f"{mode}_{rate:g}"


def build_data(cfg: Config) -> dict[str, Any]:
    """Evaluation sentences/items, training sentences/items and recovery demos (all disjoint)."""
    from xlab.data.scramble_texts import qa_items, template_sentences

    if cfg.data.source == "gettext":
        from xlab.data.multilingual import REQUIRED_DOMAINS, load_multilingual

        pool = [s.text for s in load_multilingual(cfg.data.n_eval + 8, languages=("en",), source="gettext",
                                                  domains=REQUIRED_DOMAINS, seed=cfg.seed)]
        eval_sents, demo_pool = pool[: cfg.data.n_eval], pool[cfg.data.n_eval :]
    else:
        eval_sents = template_sentences(cfg.data.n_eval, seed=10_000 + cfg.seed)
        demo_pool = template_sentences(8, seed=20_000 + cfg.seed, exclude=set(eval_sents))
    train_sents = template_sentences(cfg.data.n_train, seed=cfg.seed, exclude=set(eval_sents) | set(demo_pool))
    return {
        "eval_sentences": eval_sents,
        "demo_sentences": demo_pool,
        "train_sentences": train_sents,
        "eval_items": qa_items(cfg.data.n_qa, seed=10_000 + cfg.seed),
        "demo_items": qa_items(max(cfg.eval.qa_shots, 1), seed=30_000 + cfg.seed),
        "train_items": qa_items(cfg.data.n_train_qa, seed=cfg.seed),
    }


def train_subject(cfg: Config, data: dict[str, Any], kind: str, log_fn=None) -> tuple[Any, Any, list[dict]]:
    """Train the platform's subject ("demo-trained": sentences + solved prompts) or reference ("nl-only")."""
    import random

    from xlab.data.scramble_texts import qa_documents, recovery_documents
    from xlab.lm import build_causal_lm, train_bpe, train_on_texts

    sents = data["train_sentences"]
    docs = list(sents)
    if kind == "demo-trained":
        docs += recovery_documents(sents, seed=cfg.seed)
        docs += recovery_documents(sents[: len(sents) // 4], seed=cfg.seed + 1, shots=max(cfg.eval.shots))
        docs += qa_documents(data["train_items"], seed=cfg.seed, scrambled_share=0.3)
    random.Random(cfg.seed).shuffle(docs)
    # The tokenizer sees the task wording for both subjects, so they differ only in what they trained on.
    tok = train_bpe(docs + recovery_documents(sents[:200], seed=cfg.seed), vocab_size=cfg.subject.vocab_size)
    s = cfg.subject
    overrides = {k: v for k, v in (("n_embd", s.d_model), ("n_layer", s.n_layer)) if v}
    model = build_causal_lm(s.arch, s.size, vocab_size=len(tok), n_ctx=s.n_ctx, seed=cfg.seed, **overrides)
    history = train_on_texts(model, tok, docs, cfg.train, log_fn=log_fn)
    return model, tok, history


def evaluate_subject(generator: Any, cfg: Config, data: dict[str, Any]) -> tuple[dict[str, float], dict]:
    """Every recovery condition x shots and every QA condition; returns metrics and sample rows."""
    from xlab.analysis.scramble import evaluate_qa, evaluate_recovery, relative_performance_gain, scramble
    from xlab.analysis.scramble_paper import DEMO_RATE, RECOVERY_DEMOS

    paper = cfg.eval.protocol == "paper"
    rule = "paper" if paper else "xlab"
    metrics: dict[str, float] = {}
    samples: dict[str, Any] = {}
    for shots in cfg.eval.shots:
        for c in cfg.eval.conditions:
            mode, rate = _cond(c)
            if paper:  # the authors' fixed demonstrations, 50 % random scrambling whatever the condition
                demos = [(scramble(d, "random", DEMO_RATE, seed=cfg.seed, rule=rule), d) for d in RECOVERY_DEMOS[:shots]]
            else:
                demos = [(scramble(d, mode, rate, seed=cfg.seed + 7 + i), d)
                         for i, d in enumerate(data["demo_sentences"][:shots])]
            res = evaluate_recovery(generator, data["eval_sentences"], mode=mode, rate=rate, seed=cfg.seed,
                                    demos=demos, max_new_tokens=cfg.eval.max_new_tokens, style=rule, rule=rule)
            key = f"{_key(c)}/{shots}shot"
            metrics[f"recovery/{key}"] = res["recovery_rate"]
            metrics[f"recovery_corpus/{key}"] = res["recovery_rate_corpus"]
            metrics[f"recovery_exact/{key}"] = res["exact"]
            metrics[f"ed_recovered/{key}"] = res["ed_recovered"]
            metrics[f"ed_scrambled/{key}"] = res["ed_scrambled"]
            samples[f"recovery/{key}"] = res["rows"][:10]
            print(f"[scrambled_bench] recovery {key}: {res['recovery_rate']:.3f}", flush=True)
    demos = data["demo_items"][: cfg.eval.qa_shots]
    acc = {}
    for c in ("original", "substitute:1.0", *cfg.eval.qa_conditions):
        mode, rate = (None, 1.0) if c == "original" else _cond(c)
        acc[c] = evaluate_qa(generator, data["eval_items"], mode=mode, rate=rate, seed=cfg.seed,
                             scoring="paper" if paper else cfg.eval.qa_scoring, demos=demos, rule=rule)["accuracy"]
        metrics[f"qa/acc/{'original' if mode is None else _key(c)}"] = acc[c]
    for c in cfg.eval.qa_conditions:
        metrics[f"qa/rpg/{_key(c)}"] = relative_performance_gain(acc["original"], acc[c], acc["substitute:1.0"])
    return metrics, samples


def _subject_task(cfg: Config, spec: dict[str, str], data: dict[str, Any], parent_run_id: str,
                  tracking_uri: str) -> dict[str, Any]:
    """One subject as a Ray task: build or load it, evaluate it, log it to its nested MLflow run."""
    from xlab.track import Tracker
    from xlab.track.run import child_run

    with child_run(parent_run_id, spec["name"], params={"subject": spec["name"], "kind": spec["kind"]},
                   tracking_uri=tracking_uri):
        out = _run_subject(cfg, spec, data)
        tracker = Tracker()
        for row in out.pop("history"):
            tracker.log_metrics({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))
        tracker.log_metrics({**out["metrics"], "seconds": out["seconds"]})
        tracker.log_dict(out["samples"], "samples.json")
        model, tok = out.pop("model"), out.pop("tokenizer")
        if model is not None:
            from xlab.lm import log_causal_lm

            out["model_uri"] = log_causal_lm(model, tok, "model")
    return out


def _run_subject(cfg: Config, spec: dict[str, str], data: dict[str, Any]) -> dict[str, Any]:
    import time

    from xlab.evals.generators import HFGenerator

    t0 = time.time()
    model = tok = None
    history: list[dict] = []
    if spec["kind"] == "endpoint":
        import os

        from xlab.evals.openai_api import OpenAICompatibleGenerator

        gen = OpenAICompatibleGenerator(cfg.subject.endpoint_url, cfg.subject.endpoint_model,
                                        api_key=os.environ.get(cfg.subject.api_key_env))
    else:
        if spec["kind"] == "ref":
            from xlab.lm import load_causal_lm

            model, tok = load_causal_lm(cfg.subject.ref, device=cfg.eval.device)
        else:
            def log_fn(step: int, m: dict) -> None:
                print(f"[scrambled_bench] {spec['name']} step {step} loss {m.get('train/loss', float('nan')):.3f}",
                      flush=True)

            model, tok, history = train_subject(cfg, data, spec["kind"], log_fn=log_fn)
        gen = HFGenerator(model, tok, device=cfg.eval.device, batch_size=cfg.eval.batch_size,
                          start=cfg.eval.start_token)
    metrics, samples = evaluate_subject(gen, cfg, data)
    return {**spec, "metrics": metrics, "samples": samples, "history": history, "seconds": time.time() - t0,
            "model": model if spec["kind"] == "demo-trained" else None, "tokenizer": tok}


def subjects(cfg: Config) -> list[dict[str, str]]:
    out = []
    if cfg.subject.endpoint_url:
        out.append({"name": f"endpoint:{cfg.subject.endpoint_model}", "kind": "endpoint"})
    if cfg.subject.ref:
        out.append({"name": f"model:{cfg.subject.ref}", "kind": "ref"})
    if not out:
        out.append({"name": "demo-trained", "kind": "demo-trained"})
        if cfg.subject.reference:
            out.append({"name": "nl-only", "kind": "nl-only"})
    return out


def comparison_figure(results: list[dict], cfg: Config):
    """Recovery rate per condition (bars per subject x shots) and QA accuracy per evidence condition."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    series = [(r["name"], s) for r in results for s in cfg.eval.shots]
    width = 0.8 / max(len(series), 1)
    for j, (name, shots) in enumerate(series):
        m = next(r["metrics"] for r in results if r["name"] == name)
        vals = [m[f"recovery/{_key(c)}/{shots}shot"] for c in cfg.eval.conditions]
        ax.bar([i + j * width for i in range(len(vals))], vals, width, label=f"{name} {shots}-shot")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cfg.eval.conditions))],
                  [c.replace(":", "\n") for c in cfg.eval.conditions], fontsize=7)
    ax.set_ylabel("recovery rate")
    ax.set_title("Scrambled sentence recovery")
    ax.legend(fontsize=7)
    qa = ["original", *[_key(c) for c in cfg.eval.qa_conditions], "substitute_1"]
    width = 0.8 / max(len(results), 1)
    for j, r in enumerate(results):
        ax2.bar([i + j * width for i in range(len(qa))], [r["metrics"][f"qa/acc/{k}"] for k in qa], width,
                label=r["name"])
    ax2.set_xticks([i + 0.4 - width / 2 for i in range(len(qa))], [k.replace("_", "\n", 1) for k in qa], fontsize=7)
    ax2.set_ylim(0, 1)
    ax2.set_title("Scrambled QA accuracy")
    ax2.legend(fontsize=7)
    return fig


def main(cfg: Config) -> dict:
    import ray

    from xlab.session import job_session
    from xlab.track import Tracker
    from xlab.track.store import resolve_tracking_uri

    with job_session("scrambled_bench", cfg) as parent:
        data = build_data(cfg)
        specs = subjects(cfg)
        print(f"[scrambled_bench] subjects: {', '.join(s['name'] for s in specs)}; "
              f"{len(data['eval_sentences'])} sentences x {len(cfg.eval.conditions)} conditions x "
              f"shots {cfg.eval.shots}; {len(data['eval_items'])} QA items", flush=True)
        task = ray.remote(_subject_task).options(num_cpus=cfg.eval.cpus_per_subject,
                                                 num_gpus=1 if cfg.eval.device.startswith("cuda") else 0)
        data_ref = ray.put(data)
        uri = resolve_tracking_uri(cfg.tracking.uri)
        results = ray.get([task.remote(cfg, s, data_ref, parent.info.run_id, uri) for s in specs])
        tracker = Tracker()
        tracker.log_figure(comparison_figure(results, cfg), "comparison.png")
        summary = {r["name"]: r["metrics"] for r in results}
        tracker.log_dict(summary, "summary.json")
        first = results[0]["metrics"]
        tracker.log_metrics({k: first[k] for k in KEY_METRICS if k in first})
        for r in results:
            m = r["metrics"]
            print(f"[scrambled_bench] {r['name']}: " + ", ".join(
                f"{k}={m[k]:.3f}" for k in m if k.startswith(("recovery/", "qa/"))), flush=True)
        return {"run_id": parent.info.run_id, "summary": summary}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("scrambled_bench")
