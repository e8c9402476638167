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
  template sentences, solved recovery prompts and solved QA items (``xlab.studydata.scramble_texts``), and
  a reference of the same size on the sentences alone ("nl-only"), which never saw the task.

Data: template sentences and QA items written for the platform (see ``xlab.studydata.scramble_texts``), or
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
from typing import Any

from xlab.analysis.scramble_bench import EvalConfig
from xlab.config import JobConfig, check
from xlab.lm.loop import LMTrainConfig
from xlab.lm.subject import SubjectConfig as LMSubjectConfig


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
class SubjectConfig(LMSubjectConfig):
    """A causal LM (``ref``), a hosted model (``endpoint_url``), or neither: the platform's own subjects."""

    endpoint_url: str = ""
    """OpenAI-compatible base URL (e.g. http://localhost:8000/v1) of a hosted model to evaluate."""
    endpoint_model: str = ""
    """Model name sent to the endpoint."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the endpoint's API key (may be unset for local servers)."""
    reference: bool = True
    """Also train the nl-only reference (same size, sentences only) when training a subject."""


@dataclasses.dataclass
class Config(JobConfig):
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    subject: SubjectConfig = dataclasses.field(
        default_factory=lambda: SubjectConfig(n_ctx=256, vocab_size=1024, d_model=128))
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
KEY_METRICS = ["recovery/random_1/0shot", "recovery/keep_first_last_1/0shot", "qa/rpg/random_1"]


def _log(msg: str) -> None:
    print(f"[scrambled_bench] {msg}", flush=True)


def build_data(cfg: Config) -> dict[str, Any]:
    """Evaluation sentences/items, training sentences/items and recovery demos (all disjoint)."""
    from xlab.analysis.scramble_bench import bench_data

    d = cfg.data
    return bench_data(d.source, n_eval=d.n_eval, n_qa=d.n_qa, n_train=d.n_train, n_train_qa=d.n_train_qa,
                      qa_shots=cfg.eval.qa_shots, seed=cfg.seed)


def train_subject(cfg: Config, data: dict[str, Any], kind: str, log_fn=None) -> tuple[Any, Any, list[dict]]:
    """Train the platform's subject ("demo-trained": sentences + solved prompts) or reference ("nl-only")."""
    import random

    from xlab.lm import train_on_texts
    from xlab.lm.subject import subject_lm
    from xlab.studydata.scramble_texts import qa_documents, recovery_documents

    sents = data["train_sentences"]
    docs = list(sents)
    if kind == "demo-trained":
        docs += recovery_documents(sents, seed=cfg.seed)
        docs += recovery_documents(sents[: len(sents) // 4], seed=cfg.seed + 1, shots=max(cfg.eval.shots))
        docs += qa_documents(data["train_items"], seed=cfg.seed, scrambled_share=0.3)
    random.Random(cfg.seed).shuffle(docs)
    # The tokenizer sees the task wording for both subjects, so they differ only in what they trained on.
    model, tok = subject_lm(cfg.subject, texts=docs + recovery_documents(sents[:200], seed=cfg.seed), seed=cfg.seed)
    history = train_on_texts(model, tok, docs, cfg.train, log_fn=log_fn)
    return model, tok, history


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
            from xlab.lm.subject import log_subject

            out["model_uri"] = log_subject(model, tok, cfg.subject)
    return out


def _run_subject(cfg: Config, spec: dict[str, str], data: dict[str, Any]) -> dict[str, Any]:
    import time

    from xlab.analysis.scramble_bench import evaluate_subject
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
            from xlab.lm.subject import subject_lm

            model, tok = subject_lm(cfg.subject, device=cfg.eval.device)
        else:
            def log_fn(step: int, m: dict) -> None:
                _log(f"{spec['name']} step {step} loss {m.get('train/loss', float('nan')):.3f}")

            model, tok, history = train_subject(cfg, data, spec["kind"], log_fn=log_fn)
        gen = HFGenerator(model, tok, device=cfg.eval.device, batch_size=cfg.eval.batch_size,
                          start=cfg.eval.start_token)
    metrics, samples = evaluate_subject(gen, cfg.eval, data, seed=cfg.seed, log=_log)
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


def main(cfg: Config) -> dict:
    import ray

    from xlab.analysis.scramble_bench import comparison_figure
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
        tracker.log_figure(comparison_figure(results, cfg.eval), "comparison.png")
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
