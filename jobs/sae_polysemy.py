"""SAE polysemy study (PS-Eval): do SAE features separate word senses? A Ray Tune grid over SAE variants.

Minegishi et al. (ICLR 2025): SAEs that improve the MSE-L0 frontier do not necessarily extract
monosemantic features; deeper layers and attention outputs separate word senses better. The job

1. gets a subject causal LM (:mod:`xlab.lm.subject`): ``--subject.ref PATH_OR_MLFLOW_URI`` (any GPT-2 /
   Llama / Mistral / GPT-NeoX model), or by default a small model (``--subject.arch/size/n_layer``) the
   platform trains here on offline English (the shipped polysemy sentences plus Python standard-library
   docstrings), logged to the run as ``subject_model``;
2. builds PS-Eval pairs: ``--data.pairs_file`` (real PS-Eval / WiC JSON, JSONL or TSV) or the shipped
   polysemy inventory (xlab/studydata/polysemy_senses.tsv), single-token filtered and class-balanced;
3. caches, once per (layer, module), the activations the SAEs train on (tokens of English text) and
   the PS-Eval activations, in the Ray object store;
4. runs one Tune trial per activation x expansion x layer x module: trains an SAE (standard recipe,
   :mod:`xlab.analysis.sae_train`), logs MSE / L0 / explained variance / dead fraction and the PS-Eval
   metrics to the trial's nested MLflow run;
5. logs the table and the plots (PS-Eval F1 / accuracy vs MSE and vs L0; per layer and module) to
   the parent run, with the dense baseline (arg-max of the raw activation).

    xlab run sae_polysemy --preset smoke
    xlab run sae_polysemy --preset smoke --subject.arch llama
    xlab run sae_polysemy --preset paper --subject.ref models:/pretrain-gpt2@best --data.pairs_file ps_eval.json

Protocol vs paper (what matches, what differs and why): docs/studies/sae_polysemy.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xlab.analysis.ps_study import MODULES, point_name
from xlab.analysis.sae_train import SAETrainConfig
from xlab.config import JobConfig, check
from xlab.lm.loop import LMTrainConfig
from xlab.lm.subject import SubjectConfig


@dataclasses.dataclass
class DataConfig:
    """PS-Eval pairs, the subject's English text and the SAE training activations."""

    pairs_file: str | None = None
    """Real PS-Eval / WiC file (fields context_1, context_2, target_word, label); default: shipped set."""
    max_pairs: int = 0
    """Cap on PS-Eval pairs after filtering and balancing (0 = all)."""
    corpus_chars: int = 300_000
    """Characters of offline English text (a trained subject learns from it; the SAEs' activations come from it)."""
    inventory_repeats: int = 6
    """Times the polysemy sentences appear in that text (the model must learn the words' contexts)."""
    act_tokens: int = 30_000
    """Tokens of activations per (layer, module) the SAEs train on."""
    act_block: int = 64
    """Tokens per text when collecting activations."""
    start_token: bool = True
    """Start every sequence (SAE training texts and PS-Eval prompts alike) the way the subject's
    tokenizer does (xlab.lm.sequence_start: GPT-2 <|endoftext|> as TransformerLens prepends, Llama <s>);
    False: text tokens only."""
    lemma_in_context: bool = True
    """Also require the target word verbatim, as one token, in both contexts (an xlab filter: drops
    WiC pairs with inflected or capitalized forms); the paper preset turns it off (the paper's filter:
    the word is one token in the prompt's template)."""


@dataclasses.dataclass
class TargetConfig:
    """The hook point of one trial (set by the sweep)."""

    layer: int = -1
    """Block index (negative counts from the end)."""
    module: str = "resid"
    """resid (block output), mlp (MLP output) or attn (attention output)."""

    def __post_init__(self) -> None:
        check(self.module in MODULES, "target.module", f"use one of {MODULES}, got {self.module!r}")


@dataclasses.dataclass
class SweepConfig:
    """The Tune grid: activation x expansion x layer x module."""

    activations: tuple[str, ...] = ("relu", "topk", "jumprelu")
    expansions: tuple[int, ...] = (8,)
    layers: tuple[int, ...] = (0, -1)
    modules: tuple[str, ...] = MODULES
    cpus_per_trial: float = 1.0

    def __post_init__(self) -> None:
        check(all(m in MODULES for m in self.modules), "sweep.modules", f"use values from {MODULES}")


@dataclasses.dataclass
class Config(JobConfig):
    torch_threads: int = 1
    """Intra-op threads of the job process (0 = torch's default). One avoids OpenMP threads spinning
    against each other on a small shared CPU; use 0 for large models."""
    subject: SubjectConfig = dataclasses.field(default_factory=lambda: SubjectConfig(n_layer=4, vocab_size=2048))
    train: LMTrainConfig = dataclasses.field(
        default_factory=lambda: LMTrainConfig(steps=1200, batch_size=16, lr=2e-3, block_size=64, warmup_steps=60,
                                              log_every=120))
    """Training of a new subject (with no --subject.ref)."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    sae: SAETrainConfig = dataclasses.field(
        default_factory=lambda: SAETrainConfig(steps=400, batch_size=256, l1_coeff=2.0, l0_coeff=0.5)
    )
    target: TargetConfig = dataclasses.field(default_factory=TargetConfig)
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)


PRESETS = {
    # A few minutes on 2 idle cores: a 4-block GPT-2 (width 64) trained here, 18 small SAEs.
    "smoke": Config(),
    # Published scale: a platform-pretrained (or any HF) model, all layers, four expansion ratios,
    # SAEs on 2M tokens each. Point --subject.ref at a real model and --data.pairs_file at PS-Eval.
    "paper": Config(
        torch_threads=0,
        subject=SubjectConfig(size="smoke", n_layer=4, vocab_size=8192),
        train=LMTrainConfig(steps=20_000, batch_size=32, lr=6e-4, block_size=256, warmup_steps=1000, log_every=2000),
        data=DataConfig(corpus_chars=5_000_000, act_tokens=2_000_000, act_block=256, lemma_in_context=False),
        sae=SAETrainConfig(steps=30_000, batch_size=4096, lr=2e-4, l1_coeff=2.0, l0_coeff=0.5,
                           dead_window=2_000_000, resample_every=5000),
        sweep=SweepConfig(expansions=(4, 8, 16, 32), layers=(0, 1, 2, 3)),
    ),
}
KEY_METRICS = ["best_f1", "best_accuracy", "best_f1_resid", "best_f1_mlp", "best_f1_attn"]
TABLE_COLUMNS = ["layer", "module", "tl_hook", "activation", "expansion", "mse", "l0", "explained_variance",
                 "dead_frac", "ps_accuracy", "ps_f1", "ps_precision", "ps_recall", "ps_specificity", "ps_cos_same",
                 "ps_cos_diff"]


def _log(msg: str) -> None:
    print(f"[sae_polysemy] {msg}", flush=True)


def subject_and_texts(cfg: Config, log_fn: Any = None) -> tuple[Any, Any, list[str]]:
    """(model, tokenizer, English texts for SAE activations): ``subject.ref`` loaded, or a new subject
    trained here on those texts."""
    from xlab.lm import train_on_texts
    from xlab.lm.subject import subject_lm
    from xlab.studydata.polysemy import english_corpus

    texts = english_corpus(cfg.data.corpus_chars, seed=cfg.seed, inventory_repeats=cfg.data.inventory_repeats)
    model, tok = subject_lm(cfg.subject, texts=texts, seed=cfg.seed)
    if cfg.subject.trains:
        history = train_on_texts(model, tok, texts, dataclasses.replace(cfg.train, seed=cfg.seed), log_fn=log_fn)
        _log(f"subject trained, final loss {history[-1].get('train/loss', float('nan')):.3f}")
        model.eval()
    return model, tok, texts


def make_trial(refs: dict[str, Any], n_layers: int):
    """The Tune trial: train one SAE on the cached activations of its point and run PS-Eval."""

    def trial(cfg: Config) -> dict[str, float]:
        import mlflow
        import ray
        import torch

        from xlab.analysis.ps_eval import ps_eval
        from xlab.analysis.sae_train import train_sae

        torch.set_num_threads(1)  # tiny matmuls; threads only fight the other trials for cores
        layer = cfg.target.layer % n_layers
        data = refs[point_name(cfg.target.module, layer)]
        if isinstance(data, ray.ObjectRef):
            data = ray.get(data)

        def log_fn(step: int, row: dict) -> None:
            mlflow.log_metrics({f"train/{k}": v for k, v in row.items() if k != "step"}, step=step)

        result = train_sae(data["train"], cfg.sae, seed=cfg.seed, log_fn=log_fn, log_every=max(1, cfg.sae.steps // 20))
        ps = ps_eval(result.sae, data["ps"], data["labels"])
        metrics = {**result.metrics, **{f"ps_{k}": v for k, v in ps.items()}, "layer_index": float(layer)}
        mlflow.log_metrics(metrics)
        mlflow.log_dict(result.history, "history.json")
        return {k: v for k, v in metrics.items() if v == v}  # drop NaN (no pairs of one class)

    return trial


def trial_rows(runs: list, n_layers: int) -> list[dict[str, Any]]:
    """One table row per finished trial run: its SAE variant, hook point and metrics."""
    from xlab.analysis.ps_eval import tl_hook_name

    rows = []
    for run in runs:
        p, m = run.data.params, run.data.metrics
        rows.append({"activation": p["sae.activation"], "expansion": int(p["sae.expansion"]),
                     "layer": int(m["layer_index"]), "module": p["target.module"],
                     "tl_hook": tl_hook_name(p["target.module"], int(m["layer_index"]), n_layers),
                     **{k: m[k] for k in ("mse", "l0", "explained_variance", "dead_frac") if k in m},
                     **{k: v for k, v in m.items() if k.startswith("ps_")}})
    return rows


def main(cfg: Config) -> dict:
    import pandas as pd
    import ray
    import torch

    from xlab.analysis.hooks import module_map
    from xlab.analysis.ps_plots import summary_plots
    from xlab.analysis.ps_study import cache_activations, dense_baseline, ps_pairs, summary_metrics
    from xlab.lm.subject import log_subject
    from xlab.session import job_session
    from xlab.track import Tracker, child_runs
    from xlab.tune import grid, raise_on_errors, run_sweep

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    with job_session("sae_polysemy", cfg) as parent:
        tracker = Tracker()

        def lm_log(step: int, m: dict) -> None:
            tracker.log_metrics({f"subject/{k.split('/')[-1]}": v for k, v in m.items() if isinstance(v, int | float)},
                                step=step)
            _log(f"subject LM step {step}: loss {m.get('train/loss', float('nan')):.3f}")

        model, tok, texts = subject_and_texts(cfg, log_fn=lm_log)
        if cfg.subject.trains:
            log_subject(model, tok, cfg.subject)
        mm = module_map(model)
        d = cfg.data
        pairs, counts = ps_pairs(tok, pairs_file=d.pairs_file, seed=cfg.seed, lemma_in_context=d.lemma_in_context,
                                 max_pairs=d.max_pairs)
        tracker.log_metrics({f"data/{k}": v for k, v in counts.items()})
        _log(f"PS-Eval pairs: {counts}")
        layers = sorted({lay % mm.n_layers for lay in cfg.sweep.layers})
        points = [point_name(m, lay) for lay in layers for m in cfg.sweep.modules]
        cache = cache_activations(model, tok, texts, pairs, points, act_tokens=d.act_tokens, act_block=d.act_block,
                                  start=d.start_token, lemma_in_context=d.lemma_in_context, log=_log)
        dense = pd.DataFrame(dense_baseline(cache, [p.target_word for p in pairs]))
        refs = {p: ray.put(v) for p, v in cache.items()}  # each trial fetches only its point
        space = grid({"sae.activation": cfg.sweep.activations, "sae.expansion": cfg.sweep.expansions,
                      "target.layer": layers, "target.module": cfg.sweep.modules})
        results = run_sweep(make_trial(refs, mm.n_layers), cfg, space, parent_run_id=parent.info.run_id,
                            metric="ps_accuracy", mode="max", cpus_per_trial=cfg.sweep.cpus_per_trial)
        table = pd.DataFrame(trial_rows(child_runs(parent.info.run_id, finished_only=True), mm.n_layers))
        out: dict[str, Any] = {"run_id": parent.info.run_id, "table": table, "dense": dense, "counts": counts}
        if not table.empty:
            table = table.sort_values(["layer", "module", "activation", "expansion"]).reset_index(drop=True)
            out["table"] = table
            tracker.log_table(table, "ps_eval_table.json")
            tracker.log_table(dense, "dense_baseline.json")
            for name, fig in summary_plots(table, dense, mm.n_layers).items():
                tracker.log_figure(fig, name)
            out["metrics"] = summary_metrics(table, dense)
            tracker.log_metrics(out["metrics"])
            print(table[[c for c in TABLE_COLUMNS if c in table]].round(3).to_string())
            print(dense.round(3).to_string())
        raise_on_errors(results)
        return out


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("sae_polysemy")
