"""Pretrain one causal LM per corpus (code vs natural language) with Ray Train, then evaluate logic few-shot.

The study of ``shared/specs/lm-pretraining.md``: decoder-only models trained from scratch under
identical conditions on each corpus, compared on FLD-style deduction and bAbI-style questions.

1. Corpora (:mod:`xlab.corpora`, cached): built from files on this machine (or loaded from a
   saved Hugging Face dataset / ``hf:NAME`` when online); each card is logged to the parent run,
   with AST-depth statistics for code corpora.
2. Blocks (:func:`xlab.lm.blocks.prepare_blocks`, cached): a byte-level BPE trained on an
   equal-bytes mixture of the corpora (``--tokenizer.mode per_corpus``: one each; ``--tokenizer.path``:
   a saved tokenizer such as GPT-2's), documents with EOS in front packed into ``train.block_size``
   blocks, every corpus truncated to the same number of training tokens.
3. One Ray Tune trial per corpus (one MLflow child run each, under one parent): a Ray Train run
   (:func:`xlab.lm.pretrain.fit_pretrain`: DDP or FSDP, gradient accumulation, bf16 on GPU, warm-up +
   cosine, AdamW or ADOPT, checkpoints and resume, validation perplexity on every corpus, tokens/s and
   MFU), the best-validation weights saved with ``save_pretrained`` and logged (and registered) in
   MLflow, then the few-shot logic suite (:func:`xlab.evals.evaluate_logic`, the one a standalone
   evaluation runs): accuracy and valid-label rate on FLD-style and bAbI-style items.
4. The parent run gets the comparison table (corpus x task: accuracy, valid-label rate, validation
   perplexity), plots of accuracy per corpus per task and of the loss curves, and the relation between
   AST depth and logic accuracy.

    xlab run pretrain_lm --preset smoke          # python vs man-en, tiny GPT-2, 2 CPU cores, a few minutes
    xlab run pretrain_lm --preset cpu            # the spec's tiny CPU protocol (4 corpora, 4x256 GPT-2, ctx 512)
    xlab run pretrain_lm --preset paper          # 13 corpora, GPT-2 124M, ctx 2048, 200M tokens, 3 epochs, GPUs
    xlab run pretrain_lm --preset scale-paper    # GPT-2 774M / Llama 774M / GPT-2 1.5B on python vs fineweb
    xlab run pretrain_lm --data.corpora python --resume_from ray_results/pretrain-.../checkpoint_000003  # continue
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

from xlab.config import JobConfig, check
from xlab.evals.suite import LogicEvalConfig
from xlab.lm.pretrain import PretrainConfig


@dataclasses.dataclass
class DataConfig:
    corpora: tuple[str, ...] = ("python", "man-en")
    """Corpus names of xlab.corpora.CORPORA, directories of saved datasets, or hf:NAME[:CONFIG] (online)."""
    corpus: str = ""
    """The corpus of one trial (set by the sweep; empty in the parent)."""
    root: str = "data/corpora"
    """Where corpora are built (cached per corpus and parameters)."""
    max_bytes: int = 2_000_000
    """Raw text per corpus to build (train + test); must hold train_tokens."""
    train_tokens: int = 200_000_000
    """Identical training-token budget of every corpus (lowered to the smallest corpus if needed)."""
    val_tokens: int = 2_000_000
    """Validation tokens per corpus (from its 1% test split)."""
    seed: int = 42
    """Corpus shuffle seed (the study's 42)."""
    test_fraction: float = 0.01
    work_dir: str = "data/lm"
    """Tokenizers and packed blocks (cached by content); on a multi-node cluster put it on shared storage."""
    manifest: str = ""
    """The prepared blocks' manifest.json (set by the job before the sweep)."""

    def __post_init__(self) -> None:
        check(len(self.corpora) >= 1, "data.corpora", "name at least one corpus")
        check(len(set(self.corpora)) == len(self.corpora), "data.corpora", "corpus names must be unique")
        check(self.max_bytes > 0, "data.max_bytes", f"must be > 0, got {self.max_bytes}")
        check(0 < self.test_fraction < 1, "data.test_fraction", f"must be in (0, 1), got {self.test_fraction}")


@dataclasses.dataclass
class TokenizerConfig:
    mode: Literal["mixture", "per_corpus"] = "mixture"
    """One BPE on an equal-bytes mixture of all corpora, or one per corpus."""
    vocab_size: int = 4096
    train_bytes: int = 1_000_000
    """Text per corpus the BPE learns from."""
    min_frequency: int = 2
    path: str = ""
    """A saved Hugging Face tokenizer to use instead (e.g. GPT-2's files, as in the paper)."""


@dataclasses.dataclass
class ModelConfig:
    arch: str = "gpt2"
    """gpt2, llama or gpt_neox (xlab.lm.models.ARCHS)."""
    size: str = "tiny"
    """Size preset of xlab.lm.models.SIZES."""
    n_ctx: int = 0
    """Context length (0 = the preset's)."""
    dropout: float = 0.0


@dataclasses.dataclass
class RegistryConfig:
    model_prefix: str = ""
    """Register each final model as '<prefix>-<corpus>' ('' = log without registering)."""
    alias: str = "pretrained"
    """Alias set on each registered version ('latest' is reserved by MLflow)."""

    def __post_init__(self) -> None:
        check(self.alias.lower() != "latest", "registry.alias", "'latest' is reserved by MLflow; pick another name")


@dataclasses.dataclass
class Config(JobConfig):
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    eval: LogicEvalConfig = dataclasses.field(default_factory=LogicEvalConfig)
    registry: RegistryConfig = dataclasses.field(default_factory=RegistryConfig)
    resume_from: str = ""
    """A checkpoint directory of an earlier trial to continue (single-corpus runs)."""
    max_concurrent_trials: int = 0
    """Trials at once (0 = as the cluster's resources allow)."""

    def __post_init__(self) -> None:
        from xlab.lm.models import ARCHS, SIZES

        check(self.model.arch in ARCHS, "model.arch", f"choose one of {', '.join(ARCHS)}")
        check(self.model.size in SIZES, "model.size", f"choose one of {', '.join(SIZES)}")
        ctx = self.model.n_ctx or SIZES[self.model.size]["n_ctx"]
        check(self.train.block_size <= ctx, "train.block_size",
              f"{self.train.block_size} exceeds the model's context {ctx}; lower it or raise --model.n_ctx")
        check(not self.resume_from or len(self.data.corpora) == 1, "resume_from",
              "continue one corpus at a time: pass --data.corpora NAME with it")


# The study's ten Stack v1 languages are C, C++, Erlang, Haskell, HTML, Java, JavaScript, OCaml, Python and
# TypeScript, and its English sets C4, FineWeb and Wikipedia. Offline, HTML and OCaml have no Debian source
# here (Go and Rust stand in) and the English sets are manual pages, /usr/share/doc and GNU info. With the
# real data saved locally (e.g. Parquet of the first 500k files / documents), pass the directories instead:
# --data.corpora /data/stack/python /data/c4-500k ...
PAPER_CORPORA = ("c", "cpp", "erlang", "haskell", "go", "java", "javascript", "rust", "python", "typescript",
                 "man-en", "doc-en", "info-en")

PRESETS = {
    # 2 cores, a few minutes: the Python stdlib vs English man pages, a 2-layer GPT-2 (width 64, ctx 128)
    # on 600k tokens each, 2 trials side by side (one 0.9-CPU Ray Train worker each); loss and
    # validation perplexity fall several-fold; 60 FLD (depth 1-2) and 60 bAbI task-1 items 3-shot.
    "smoke": Config(
        data=DataConfig(corpora=("python", "man-en"), max_bytes=3_000_000, train_tokens=600_000, val_tokens=8_192),
        tokenizer=TokenizerConfig(vocab_size=2048, train_bytes=400_000),
        model=ModelConfig(arch="gpt2", size="tiny"),
        train=PretrainConfig(steps=0, epochs=1.0, batch_size=16, block_size=128, lr=3e-3, warmup_fraction=0.05,
                             min_lr=1e-4, weight_decay=0.01, log_every=10, eval_every=75, num_workers=1,
                             cpus_per_worker=0.9, threads_per_worker=1),
        eval=LogicEvalConfig(n=60, shots=3, fld_depth=(1, 2), fld_distractors=(0, 2), babi_tasks=(1,)),
    ),
    # The spec's tiny CPU protocol: four corpora of ~5M tokens, a 4-layer GPT-2 of width 256 and context
    # 512, one epoch, ~300 FLD (depth <= 2) and bAbI task-1 items. Hours on 2 cores; minutes on a node.
    "cpu": Config(
        data=DataConfig(corpora=("python", "c", "man-en", "info-en"), max_bytes=25_000_000, train_tokens=5_000_000,
                        val_tokens=100_000),
        tokenizer=TokenizerConfig(vocab_size=8192, train_bytes=3_000_000),
        model=ModelConfig(arch="gpt2", size="smoke"),
        train=PretrainConfig(steps=0, epochs=1.0, batch_size=16, block_size=512, lr=1e-3, warmup_fraction=0.05,
                             min_lr=3.3e-5, log_every=20, eval_every=100, num_workers=2, cpus_per_worker=1.0),
        eval=LogicEvalConfig(n=300, fld_depth=(1, 2), fld_distractors=(0, 5), babi_tasks=(1,)),
    ),
    # The published set-up: 13 corpora (offline stand-ins, see PAPER_CORPORA), the GPT-2 BPE
    # (--tokenizer.path gpt2-tokenizer-dir; else one 50257-token BPE on the mixture), GPT-2 124M with
    # context 2048, 200M tokens per corpus, AdamW 1e-4 (0.9/0.999, wd 0.01), 10% warm-up then cosine to
    # 3.3e-6, batch 24 x 2048, bf16, FSDP, 3 epochs, best-validation checkpoint; 3-shot FLD and bAbI.
    "paper": Config(
        data=DataConfig(corpora=PAPER_CORPORA, max_bytes=1_200_000_000, train_tokens=200_000_000,
                        val_tokens=2_000_000),
        tokenizer=TokenizerConfig(vocab_size=50257, train_bytes=100_000_000),
        model=ModelConfig(arch="gpt2", size="gpt2-small"),
        train=PretrainConfig(steps=0, epochs=3.0, batch_size=24, block_size=2048, lr=1e-4, beta1=0.9, beta2=0.999,
                             weight_decay=0.01, warmup_fraction=0.1, schedule="cosine", min_lr=3.3e-6,
                             grad_clip=1.0, precision="bf16", log_every=50, eval_every=1000, num_workers=8,
                             cpus_per_worker=4, use_gpu=True, parallel_strategy="fsdp", max_failures=3),
        eval=LogicEvalConfig(n=1000, fld_depth=(1, 3), fld_distractors=(0, 20)),
        registry=RegistryConfig(model_prefix="code-pretraining"),
    ),
    # The scale-up runs: Python vs FineWeb (English docs offline) with GPT-2 774M (--model.size gpt2-1.5b for GPT-2 XL,
    # --model.arch llama --model.size llama-774m for the Llama).
    "scale-paper": Config(
        data=DataConfig(corpora=("python", "doc-en"), max_bytes=1_200_000_000, train_tokens=200_000_000,
                        val_tokens=2_000_000),
        tokenizer=TokenizerConfig(vocab_size=50257, train_bytes=100_000_000),
        model=ModelConfig(arch="gpt2", size="gpt2-774m"),
        train=PretrainConfig(steps=0, epochs=3.0, batch_size=24, block_size=2048, lr=1e-4, weight_decay=0.01,
                             warmup_fraction=0.1, min_lr=3.3e-6, precision="bf16", log_every=50, eval_every=1000,
                             num_workers=8, cpus_per_worker=4, use_gpu=True, parallel_strategy="fsdp",
                             max_failures=3),
        eval=LogicEvalConfig(n=1000),
        registry=RegistryConfig(model_prefix="code-pretraining-scale"),
    ),
}
KEY_METRICS = ["fld_accuracy", "fld_valid_rate", "babi_accuracy", "babi_valid_rate", "val_ppl"]


def trial(cfg: Config) -> dict[str, float]:
    """One corpus: Ray Train pretraining, save/log the model, few-shot logic evaluation."""
    import numpy as np
    import torch

    from xlab.evals import HFGenerator, evaluate_logic
    from xlab.lm import report
    from xlab.lm.blocks import tokenizer_key
    from xlab.lm.io import log_causal_lm, save_causal_lm
    from xlab.lm.models import count_parameters
    from xlab.lm.pretrain import ModelSpec, fit_pretrain
    from xlab.lm.tokenizer import load_tokenizer
    from xlab.track import Tracker

    manifest = json.loads(Path(cfg.data.manifest).read_text())
    corpus = cfg.data.corpus
    entry = manifest["tokenizers"][tokenizer_key(corpus, manifest["tokenizer_mode"])]
    blocks = entry["blocks"]
    tok = load_tokenizer(entry["path"])
    n_train = int(np.load(blocks[corpus]["train"], mmap_mode="r").shape[0])
    tcfg = cfg.train.resolved(n_train)
    spec = ModelSpec(cfg.model.arch, cfg.model.size, vocab_size=len(tok), n_ctx=cfg.model.n_ctx or None,
                     dropout=cfg.model.dropout, seed=cfg.seed)
    tracker = Tracker()
    n_params = count_parameters(spec.build())
    tracker.log_params({"resolved.steps": tcfg.steps, "resolved.train_tokens": n_train * tcfg.block_size,
                        "resolved.parameters": n_params, "resolved.tokenizer": entry["path"]})
    print(f"[pretrain_lm] {corpus}: {n_params / 1e6:.2f}M parameters, {n_train} blocks of {tcfg.block_size}, "
          f"{tcfg.steps} steps of {tcfg.batch_size}", flush=True)
    val_paths = {corpus: blocks[corpus]["test"], **{n: b["test"] for n, b in blocks.items() if n != corpus}}
    result = fit_pretrain(spec, blocks[corpus]["train"], val_paths, tcfg, primary_val=corpus,
                          run_id=tracker.run_id, name=corpus, resume_from=cfg.resume_from or None)
    model = result.model()
    if cfg.train.threads_per_worker:
        torch.set_num_threads(cfg.train.threads_per_worker)
    device = "cuda" if cfg.train.use_gpu and torch.cuda.is_available() else "cpu"
    out_dir = save_causal_lm(model, tok, Path(manifest["dir"]) / "models" / f"{corpus}-{tracker.run_id[:8]}")
    registered = f"{cfg.registry.model_prefix}-{corpus}" if cfg.registry.model_prefix else None
    model_uri = log_causal_lm(model, tok, "model", registered_name=registered,
                              alias=cfg.registry.alias if registered else None)
    print(f"[pretrain_lm] {corpus}: model saved to {out_dir} and logged as {model_uri}", flush=True)
    # The suite a standalone evaluation runs (xlab.evals.logic_suite): same items, shots and scoring.
    logic = evaluate_logic(HFGenerator(model, tok, device=device, batch_size=cfg.eval.batch_size), cfg.eval)
    summary = report.trial_summary(result, corpus, logic)
    report.log_logic_results(tracker, logic)
    tracker.log_metrics(summary, step=result.step)
    tracker.log_dict({"history": result.history, "evals": result.evals, "model_uri": model_uri,
                      "checkpoint": result.checkpoint_path, "saved": str(out_dir)}, "history.json")
    tracker.log_figure(report.curves_figure(f"{corpus}: {cfg.model.arch} {cfg.model.size}", result.history, result.evals),
                       "curves.png")
    print(f"[pretrain_lm] {report.summary_line(corpus, summary)}", flush=True)
    return {k.replace("/", "_"): v for k, v in summary.items()}


def main(cfg: Config) -> dict:
    import mlflow

    from xlab.analysis.ast_depth import code_corpora_depth_stats
    from xlab.corpora.compare import corpus_kind, load_corpora
    from xlab.lm.blocks import prepare_blocks
    from xlab.lm.report import comparison_rows, log_comparison, markdown_table
    from xlab.session import job_session
    from xlab.track import Tracker, child_runs
    from xlab.tune import grid, raise_on_errors, run_sweep

    with job_session("pretrain_lm", cfg) as parent:
        tracker = Tracker()
        corpora = load_corpora(cfg.data.corpora, Path(cfg.data.root), max_bytes=cfg.data.max_bytes,
                               seed=cfg.data.seed, test_fraction=cfg.data.test_fraction,
                               on_card=lambda name, card: tracker.log_dict(card, f"corpora/{name}.json"))
        depth = code_corpora_depth_stats(corpora)
        if depth:
            tracker.log_dict(depth, "ast_depth.json")
        manifest = prepare_blocks(
            corpora, Path(cfg.data.work_dir).resolve(), block_size=cfg.train.block_size,
            train_tokens=cfg.data.train_tokens, val_tokens=cfg.data.val_tokens, vocab_size=cfg.tokenizer.vocab_size,
            tokenizer_mode=cfg.tokenizer.mode, tokenizer_bytes=cfg.tokenizer.train_bytes,
            tokenizer_path=cfg.tokenizer.path, min_frequency=cfg.tokenizer.min_frequency,
        )
        tracker.log_dict(manifest, "blocks_manifest.json")
        for key, entry in manifest["tokenizers"].items():
            tracker.log_artifact(entry["path"], f"tokenizer/{key}")
        tracker.log_metrics({"train_tokens_per_corpus": float(min(e["train_tokens"]
                                                                  for e in manifest["tokenizers"].values()))})
        base = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, manifest=str(Path(manifest["dir"]) / "manifest.json")))
        results = run_sweep(
            trial, base, grid({"data.corpus": list(corpora)}), parent_run_id=parent.info.run_id, metric="val_loss",
            mode="min", cpus_per_trial=0.1, gpus_per_trial=0.0,
            max_concurrent_trials=cfg.max_concurrent_trials or None,
        )
        runs = child_runs(parent.info.run_id)
        rows = comparison_rows(runs, depth, corpus_kind)
        curves = {run.data.params.get("data.corpus"): mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/history.json")
                  for run in runs if run.info.status == "FINISHED"}
        log_comparison(tracker, rows, curves, depth)
        print(markdown_table(rows))
        raise_on_errors(results)
        return {"rows": rows, "run_id": parent.info.run_id, "manifest": manifest, "depth": depth}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("pretrain_lm")
