"""SAE polysemy study (PS-Eval): do SAE features separate word senses? A Ray Tune grid over SAE variants.

Minegishi et al. (ICLR 2025): SAEs that improve the MSE-L0 frontier do not necessarily extract
monosemantic features; deeper layers and attention outputs separate word senses better. The job

1. gets a subject causal LM: ``--subject.model PATH_OR_MLFLOW_URI`` (any GPT-2 / Llama / Mistral /
   GPT-NeoX model), or by default a small GPT-2 the platform trains here on offline English
   (the shipped polysemy sentences plus Python standard-library docstrings), logged to the run;
2. builds PS-Eval pairs: ``--data.pairs_file`` (real PS-Eval / WiC JSON, JSONL or TSV) or the shipped
   polysemy inventory (xlab/data/polysemy_senses.tsv), single-token filtered and class-balanced;
3. caches, once per (layer, module), the activations the SAEs train on (tokens of English text) and
   the PS-Eval activations, in the Ray object store;
4. runs one Tune trial per activation x expansion x layer x module: trains an SAE (standard recipe,
   :mod:`xlab.analysis.sae_train`), logs MSE / L0 / explained variance / dead fraction and the PS-Eval
   metrics to the trial's nested MLflow run;
5. logs the table and the plots (PS-Eval F1 / accuracy vs MSE and vs L0; per layer and module) to
   the parent run, with the dense baseline (arg-max of the raw activation).

    xlab run sae_polysemy --preset smoke
    xlab run sae_polysemy --preset paper --subject.model models:/pretrain-gpt2@best --data.pairs_file ps_eval.json

Protocol vs paper (what matches, what differs and why): docs/studies/sae_polysemy.md.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from xlab.analysis.sae_train import SAETrainConfig
from xlab.config import JobConfig, check

MODULES = ("resid", "mlp", "attn")


@dataclasses.dataclass
class SubjectConfig:
    """The language model under study."""

    model: str | None = None
    """Local save_pretrained dir or MLflow URI (models:/NAME@ALIAS, runs:/ID/PATH); default: train one here."""
    arch: str = "gpt2"
    """Family of the model trained here: gpt2, llama or gpt_neox."""
    size: str = "tiny"
    """xlab.lm size preset of the model trained here."""
    n_layer: int = 4
    """Blocks of the model trained here (overrides the size preset)."""
    vocab_size: int = 2048
    corpus_chars: int = 300_000
    """Characters of offline English text to train on."""
    inventory_repeats: int = 6
    """Times the polysemy sentences appear in that text (the model must learn the words' contexts)."""
    steps: int = 1200
    batch_size: int = 16
    lr: float = 2e-3
    block_size: int = 64
    log_model: bool = True
    """Log the trained model to the run (reload it with --subject.model runs:/<run id>/subject_model)."""
    torch_threads: int = 1
    """Intra-op threads of the job process (0 = torch's default). One avoids OpenMP threads spinning
    against each other on a small shared CPU; use 0 for large models."""

    def __post_init__(self) -> None:
        check(self.arch in ("gpt2", "llama", "gpt_neox"), "subject.arch", "use gpt2, llama or gpt_neox")
        check(self.n_layer >= 1 and self.steps >= 1, "subject.n_layer/subject.steps", "must be >= 1")
        check(self.vocab_size >= 300, "subject.vocab_size", f"must be >= 300, got {self.vocab_size}")


@dataclasses.dataclass
class DataConfig:
    """PS-Eval pairs and the SAE training activations."""

    pairs_file: str | None = None
    """Real PS-Eval / WiC file (fields context_1, context_2, target_word, label); default: shipped set."""
    max_pairs: int = 0
    """Cap on PS-Eval pairs after filtering and balancing (0 = all)."""
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
    subject: SubjectConfig = dataclasses.field(default_factory=SubjectConfig)
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
    # SAEs on 2M tokens each. Point --subject.model at a real model and --data.pairs_file at PS-Eval.
    "paper": Config(
        subject=SubjectConfig(
            size="smoke",
            n_layer=4,
            vocab_size=8192,
            corpus_chars=5_000_000,
            steps=20_000,
            batch_size=32,
            lr=6e-4,
            block_size=256,
            torch_threads=0,
        ),
        data=DataConfig(act_tokens=2_000_000, act_block=256, lemma_in_context=False),
        sae=SAETrainConfig(
            steps=30_000,
            batch_size=4096,
            lr=2e-4,
            l1_coeff=2.0,
            l0_coeff=0.5,
            dead_window=2_000_000,
            resample_every=5000,
        ),
        sweep=SweepConfig(expansions=(4, 8, 16, 32), layers=(0, 1, 2, 3)),
    ),
}
KEY_METRICS = ["best_f1", "best_accuracy", "best_f1_resid", "best_f1_mlp", "best_f1_attn"]


def point_name(module: str, layer: int) -> str:
    return f"{module}.{layer}"


# -- subject model and data ---------------------------------------------------------------------------


def subject_model(cfg: SubjectConfig, seed: int, log: Any = print) -> tuple[Any, Any, list[str]]:
    """(model, tokenizer, English texts for SAE activations): loaded, or trained here on offline text."""
    from xlab.data.polysemy import english_corpus

    texts = english_corpus(cfg.corpus_chars, seed=seed, inventory_repeats=cfg.inventory_repeats)
    if cfg.model:
        from xlab.lm import load_causal_lm

        model, tok = load_causal_lm(cfg.model)
        return model, tok, texts
    from xlab.lm import LMTrainConfig, build_causal_lm, train_bpe, train_on_texts

    t0 = time.time()
    tok = train_bpe(texts, cfg.vocab_size)
    model = build_causal_lm(
        cfg.arch,
        cfg.size,
        vocab_size=len(tok),
        n_ctx=max(128, cfg.block_size),
        seed=seed,
        **({"n_layer": cfg.n_layer} if cfg.arch == "gpt2" else {"num_hidden_layers": cfg.n_layer}),
    )
    train_cfg = LMTrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        block_size=cfg.block_size,
        warmup_steps=max(1, cfg.steps // 20),
        log_every=max(1, cfg.steps // 10),
        seed=seed,
    )

    def on_log(step: int, m: dict) -> None:
        log(step, m)

    history = train_on_texts(model, tok, texts, train_cfg, log_fn=on_log)
    model.eval()
    print(
        f"[sae_polysemy] subject model trained in {time.time() - t0:.0f}s, final loss "
        f"{history[-1].get('train/loss', float('nan')):.3f}"
    )
    return model, tok, texts


def ps_pairs(cfg: DataConfig, tok: Any, seed: int) -> tuple[list, dict[str, int]]:
    """PS-Eval pairs (file or shipped set), single-token filtered, balanced, capped; and their counts."""
    from xlab.analysis.ps_eval import balance_pairs, filter_single_token, load_pairs
    from xlab.data.polysemy import load_inventory, polysemy_pairs

    raw = load_pairs(cfg.pairs_file) if cfg.pairs_file else polysemy_pairs(load_inventory(), seed=seed)
    kept, dropped = filter_single_token(raw, tok, require_in_context=cfg.lemma_in_context)
    pairs = balance_pairs(kept, seed=seed)
    if cfg.max_pairs:
        pairs = balance_pairs(pairs[: cfg.max_pairs], seed=seed)
    check(
        len(pairs) >= 4,
        "data",
        f"only {len(pairs)} PS-Eval pairs survive the single-token filter "
        f"({dropped} of {len(raw)} dropped); use a larger vocabulary or another pairs file",
    )
    return pairs, {
        "pairs_raw": len(raw),
        "pairs_dropped_multi_token": dropped,
        "pairs_used": len(pairs),
        "words_used": len({p.target_word for p in pairs}),
    }


def cache_activations(
    model: Any, tok: Any, texts: list[str], pairs: list, points: list[str], cfg: DataConfig
) -> dict[str, dict[str, Any]]:
    """Per point: SAE training activations [n_tokens, d], PS-Eval activations [n_pairs, 2, d], labels."""
    from xlab.analysis.ps_eval import ps_activations
    from xlab.analysis.sae_train import token_activations

    def progress(n: int) -> None:
        # One line per ~10% (a carriage-return bar would flood captured logs).
        step = max(1, cfg.act_tokens // 10)
        if n // step != progress.last // step or n >= cfg.act_tokens:
            print(f"[sae_polysemy] caching activations: {min(n, cfg.act_tokens)}/{cfg.act_tokens} tokens")
        progress.last = n

    progress.last = 0

    train = token_activations(
        model, tok, texts, points, max_tokens=cfg.act_tokens, block_size=cfg.act_block, progress=progress,
        start=cfg.start_token,
    )
    ps = ps_activations(model, tok, pairs, points, start=cfg.start_token, require_in_context=cfg.lemma_in_context)
    labels = [p.label for p in pairs]
    return {p: {"train": train[p], "ps": ps[p], "labels": labels} for p in points}


# -- one trial ----------------------------------------------------------------------------------------


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

        result = train_sae(
            data["train"], cfg.sae, seed=cfg.seed, log_fn=log_fn, log_every=max(1, cfg.sae.steps // 20)
        )
        ps = ps_eval(result.sae, data["ps"], data["labels"])
        metrics = {**result.metrics, **{f"ps_{k}": v for k, v in ps.items()}, "layer_index": float(layer)}
        mlflow.log_metrics(metrics)
        mlflow.log_dict(result.history, "history.json")
        return {k: v for k, v in metrics.items() if v == v}  # drop NaN (no pairs of one class)

    return trial


# -- summary ------------------------------------------------------------------------------------------


def layer_label(layer: int, n_layers: int) -> str:
    """Plot label of block ``layer``'s output with its TransformerLens name, so plots compare with the paper's."""
    from xlab.analysis.ps_eval import tl_hook_name

    return f"layer {layer}\n(TL {tl_hook_name('resid', layer, n_layers).replace('.hook_', ' ')})"


def summary_plots(table: Any, dense: Any, n_layers: int) -> dict[str, Any]:
    """PS-Eval F1 / accuracy vs MSE and vs L0 (one colour per module, one marker per activation), and
    the best F1 per layer and module with the dense baseline. Layers are labelled with xlab's block
    index and the TransformerLens residual hook of the same activation (resid.L = blocks.{L+1}.hook_resid_pre)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"resid": "tab:blue", "mlp": "tab:green", "attn": "tab:red"}
    markers = {"relu": "o", "topk": "s", "jumprelu": "^"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for r, metric in enumerate(("ps_f1", "ps_accuracy")):
        for c, x in enumerate(("mse", "l0")):
            ax = axes[r][c]
            for row in table.itertuples():
                ax.scatter(
                    getattr(row, x),
                    getattr(row, metric),
                    c=colors.get(row.module, "k"),
                    marker=markers.get(row.activation, "x"),
                    s=20 + 6 * row.expansion**0.5 * 3,
                    alpha=0.8,
                )
            # Balanced classes: chance accuracy is 0.5, and always predicting "same sense" gives F1 = 2/3.
            ax.axhline(0.5 if metric == "ps_accuracy" else 2 / 3, color="k", lw=0.6, ls=":")
            ax.set_xlabel(x.upper() if x == "mse" else "L0")
            ax.set_ylabel(metric.replace("ps_", "PS-Eval "))
            if x == "l0":
                ax.set_xscale("log")
    handles = [plt.Line2D([], [], color=v, marker="o", ls="", label=k) for k, v in colors.items()]
    handles += [plt.Line2D([], [], color="gray", marker=v, ls="", label=k) for k, v in markers.items()]
    axes[0][0].legend(handles=handles, fontsize=8)
    fig.suptitle("PS-Eval vs reconstruction (MSE) and sparsity (L0); marker size = expansion")
    fig.tight_layout()

    fig2, axes2 = plt.subplots(1, 2, figsize=(12, 4))
    layers = sorted(table.layer.unique())
    width = 0.8 / max(1, len(MODULES))
    for ax, (metric, dense_col, chance) in zip(
        axes2, (("ps_accuracy", "accuracy", 0.5), ("ps_f1", "f1", 2 / 3)), strict=True
    ):
        best = table.groupby(["layer", "module"], as_index=False)[metric].max()
        for i, mod in enumerate(MODULES):
            sub = best[best.module == mod].set_index("layer")
            xs = [j + i * width for j in range(len(layers))]
            ax.bar(
                xs,
                [sub[metric].get(lay, float("nan")) for lay in layers],
                width,
                color=colors[mod],
                label=f"{mod} (best SAE)",
            )
            dsub = dense[dense.module == mod].set_index("layer")
            ax.scatter(
                xs,
                [dsub[dense_col].get(lay, float("nan")) for lay in layers],
                color="k",
                marker="_",
                s=200,
                label="dense arg-max" if i == 0 else None,
                zorder=3,
            )
        ax.axhline(chance, color="k", lw=0.6, ls=":")
        ax.set_xticks([j + width for j in range(len(layers))], [layer_label(lay, n_layers) for lay in layers])
        ax.set_ylabel(metric.replace("ps_", "PS-Eval "))
        ax.set_ylim(0, 1)
        ax.set_title(f"Best {metric.replace('ps_', 'PS-Eval ')} per layer and module")
    axes2[0].legend(fontsize=8)
    fig2.tight_layout()
    figs = {"ps_eval_vs_mse_l0.png": fig, "ps_eval_by_layer_module.png": fig2}
    if "cos_auc_centered" in dense:
        fig3, ax = plt.subplots(figsize=(7, 4))
        for mod in MODULES:
            sub = dense[dense.module == mod].sort_values("layer")
            ax.plot(sub.layer, sub.cos_auc_centered, marker="o", color=colors[mod], label=mod)
        ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.set_xlabel("layer (xlab block output = TransformerLens blocks.{L+1}.hook_resid_pre)")
        ax.set_ylabel("ROC AUC (same vs different sense)")
        ax.set_title("Sense signal in the raw activations (cosine of word-centred activations)")
        ax.legend(fontsize=8)
        fig3.tight_layout()
        figs["sense_signal_by_layer_module.png"] = fig3
    return figs


def dense_baseline(cache: dict[str, dict[str, Any]], words: list[str]) -> list[dict[str, Any]]:
    """Per point, without an SAE: PS-Eval with the raw activation's arg-max dimension as the 'feature',
    and the ROC AUC of the two contexts' cosine similarity for same- vs different-sense pairs: on the raw
    activations and after subtracting each word's mean activation (removes the word's identity). These
    say whether the model's activation carries the sense at all (0.5 = no)."""
    import torch
    from sklearn.metrics import roc_auc_score

    from xlab.analysis.ps_eval import ps_from_features

    rows = []
    for point, data in cache.items():
        module, layer = point.split(".")
        x, labels = data["ps"], data["labels"]
        m, _, _ = ps_from_features(x[:, 0], x[:, 1], labels)
        centered = x.clone()
        for w in set(words):
            idx = [i for i, v in enumerate(words) if v == w]
            centered[idx] -= x[idx].reshape(-1, x.shape[-1]).mean(0)
        row = {"module": module, "layer": int(layer), "f1": m["f1"], "accuracy": m["accuracy"]}
        for name, a in (("cos_auc", x), ("cos_auc_centered", centered)):
            cos = torch.nn.functional.cosine_similarity(a[:, 0], a[:, 1], dim=-1).numpy()
            row[name] = float(roc_auc_score(labels, cos)) if len(set(labels)) == 2 else float("nan")
        rows.append(row)
    return rows


def main(cfg: Config) -> dict:
    import pandas as pd
    import ray
    import torch
    from rich import print as rprint

    from xlab.analysis.hooks import module_map
    from xlab.analysis.ps_eval import tl_hook_name
    from xlab.session import job_session
    from xlab.track import Tracker, child_runs
    from xlab.tune import grid, raise_on_errors, run_sweep

    if cfg.subject.torch_threads:
        torch.set_num_threads(cfg.subject.torch_threads)
    with job_session("sae_polysemy", cfg) as parent:
        tracker = Tracker()

        def lm_log(step: int, m: dict) -> None:
            tracker.log_metrics(
                {f"subject/{k.split('/')[-1]}": v for k, v in m.items() if isinstance(v, int | float)},
                step=step,
            )
            print(f"[sae_polysemy] subject LM step {step}: loss {m.get('train/loss', float('nan')):.3f}")

        model, tok, texts = subject_model(cfg.subject, cfg.seed, log=lm_log)
        mm = module_map(model)
        if not cfg.subject.model and cfg.subject.log_model:
            import mlflow

            from xlab.lm import log_causal_lm

            uri = log_causal_lm(model, tok, "subject_model")
            mlflow.set_tag("xlab.subject_model", uri)
        pairs, counts = ps_pairs(cfg.data, tok, cfg.seed)
        tracker.log_metrics({f"data/{k}": v for k, v in counts.items()})
        print(f"[sae_polysemy] PS-Eval pairs: {counts}")
        layers = sorted({lay % mm.n_layers for lay in cfg.sweep.layers})
        points = [point_name(m, lay) for lay in layers for m in cfg.sweep.modules]
        cache = cache_activations(model, tok, texts, pairs, points, cfg.data)
        dense = pd.DataFrame(dense_baseline(cache, [p.target_word for p in pairs]))
        refs = {p: ray.put(v) for p, v in cache.items()}  # each trial fetches only its point
        space = grid(
            {
                "sae.activation": cfg.sweep.activations,
                "sae.expansion": cfg.sweep.expansions,
                "target.layer": layers,
                "target.module": cfg.sweep.modules,
            }
        )
        results = run_sweep(
            make_trial(refs, mm.n_layers),
            cfg,
            space,
            parent_run_id=parent.info.run_id,
            metric="ps_accuracy",
            mode="max",
            cpus_per_trial=cfg.sweep.cpus_per_trial,
        )
        rows = []
        for run in child_runs(parent.info.run_id, finished_only=True):
            p, m = run.data.params, run.data.metrics
            rows.append(
                {
                    "activation": p["sae.activation"],
                    "expansion": int(p["sae.expansion"]),
                    "layer": int(m["layer_index"]),
                    "module": p["target.module"],
                    "tl_hook": tl_hook_name(p["target.module"], int(m["layer_index"]), mm.n_layers),
                    **{k: m[k] for k in ("mse", "l0", "explained_variance", "dead_frac") if k in m},
                    **{k: v for k, v in m.items() if k.startswith("ps_")},
                }
            )
        table = pd.DataFrame(rows)
        out: dict[str, Any] = {"run_id": parent.info.run_id, "table": table, "dense": dense, "counts": counts}
        if not table.empty:
            table = table.sort_values(["layer", "module", "activation", "expansion"]).reset_index(drop=True)
            out["table"] = table
            tracker.log_table(table, "ps_eval_table.json")
            tracker.log_table(dense, "dense_baseline.json")
            for name, fig in summary_plots(table, dense, mm.n_layers).items():
                tracker.log_figure(fig, name)
            metrics = {
                "best_f1": table.ps_f1.max(),
                "best_accuracy": table.ps_accuracy.max(),
                "dense_best_f1": dense.f1.max(),
                "dense_best_cos_auc": dense.cos_auc.max(),
            }
            for mod in table.module.unique():
                metrics[f"best_f1_{mod}"] = table[table.module == mod].ps_f1.max()
            for lay in table.layer.unique():
                metrics[f"best_f1_layer{lay}"] = table[table.layer == lay].ps_f1.max()
            for act in table.activation.unique():
                sub = table[table.activation == act]
                metrics[f"mean_f1_{act}"] = sub.ps_f1.mean()
                metrics[f"mean_ev_{act}"] = sub.explained_variance.mean()
            # The paper's question in one number: does a better MSE go with a better PS-Eval F1?
            if len(table) >= 3:
                metrics["spearman_f1_vs_mse"] = float(table.ps_f1.corr(table.mse, method="spearman"))
                metrics["spearman_f1_vs_l0"] = float(table.ps_f1.corr(table.l0, method="spearman"))
            metrics = {k: float(v) for k, v in metrics.items() if v == v}
            tracker.log_metrics(metrics)
            out["metrics"] = metrics
            cols = [
                "layer",
                "module",
                "tl_hook",
                "activation",
                "expansion",
                "mse",
                "l0",
                "explained_variance",
                "dead_frac",
                "ps_accuracy",
                "ps_f1",
                "ps_precision",
                "ps_recall",
                "ps_specificity",
                "ps_cos_same",
                "ps_cos_diff",
            ]
            rprint(table[[c for c in cols if c in table]].round(3).to_string())
            rprint(dense.round(3).to_string())
        raise_on_errors(results)
        return out


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("sae_polysemy")
