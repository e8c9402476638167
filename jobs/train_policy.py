"""Train an RT-1-X policy on a weighted mixture of RLDS datasets with Ray Train (data-parallel DDP).

Ray Train workers stream the Ray Data mixture of tokenized RLDS windows, train with DDP, log loss and
per-dataset token accuracy to MLflow, checkpoint every ``train.checkpoint_every`` steps and resume
after a worker or node failure (the loop lives in :mod:`xlab.policies.training`). At the end the
driver loads the final checkpoint, logs the policy as an MLflow model (policy, config, action
bounds and the datasets' ``dataset_statistics.json``) and registers it as
``registry.model_name@registry.alias`` (:mod:`xlab.policies.mlflow_model`), ready for
``xlab run eval_policy --policy models:/rt1x-policy@latest-train``.

    xlab run collect_demos --preset smoke            # first: writes data/rlds/xlab_{sawyer,fetch}/0.1.0
    xlab run train_policy --preset smoke             # rt1x-tiny, 48 px, 2 CPU workers, 600 steps (~1 min)
    xlab run train_policy --preset demo              # what `make demo` trains: rt1x-demo, 3,000 steps, @best-sim
    xlab run train_policy --preset paper             # rt1x (RT-1-X's JAX setting) on GPU workers
    xlab run train_policy --train.steps 1000 --optim.name adopt --data.weights 1 3
"""

from __future__ import annotations

import dataclasses
import json

from robots.tasks import DEMO_TASKS
from xlab.config import check
from xlab.optim import OptimConfig
from xlab.policies.training import (
    DataConfig,
    PolicyConfig,
    PolicyJobConfig,
    RegistryConfig,
    build_dataset,
    check_dataset_dirs,
    fit_policy,
)
from xlab.policies.training import PolicyTrainConfig as TrainConfig


@dataclasses.dataclass
class Config(PolicyJobConfig):
    """The policy-training sections (data, policy, optim: RT-1-X's Adam, train) and the registry."""

    registry: RegistryConfig = dataclasses.field(default_factory=RegistryConfig)


PRESETS = {
    # About a minute on 2 cores: tiny policy, 48 px frames, 2 CPU workers sharing the machine with Ray
    # Data; 600 steps are enough for the easy tasks (see the README's success rates).
    "smoke": Config(
        policy=PolicyConfig(preset="rt1x-tiny", image_size=48),
        optim=OptimConfig(name="adamw", lr=1e-3, eps=1e-7, weight_decay=0.01),
        train=TrainConfig(steps=600, batch_size=16, num_workers=2, cpus_per_worker=0.5, log_every=10,
                          checkpoint_every=100),
    ),
    # `make demo` on 2 CPU cores (after `collect_demos --preset demo`): the recipe that worked in the probes
    # (docs/serving.md, "How the policy was made to work"): rt1x-demo (64 px, 2 frames, 4-step action chunks),
    # random-shift augmentation, AdamW with warm-up and cosine decay; success in simulation every 1,500 steps,
    # the best registered as @best-sim. 3,000 steps: the windows are decoded once (data.cache), so a step costs
    # what the model costs (~0.15 s on 2 quiet cores; the whole demo with 4,000 steps took 15.3 min there).
    "demo": Config(
        # Three Sawyer tasks and one Fetch task, each with ~2,000 steps of demonstrations: equal steps per task.
        # A shuffle buffer of ~2,000 windows: Ray Data streams the datasets shard by shard, and with 256 the
        # batches alternated between long runs of Sawyer and of Fetch windows (the loss swung 0.64 <-> 0.96).
        data=DataConfig(weights=(3.0, 1.0), shuffle_buffer=2048, cache=True),
        policy=PolicyConfig(preset="rt1x-demo"),
        optim=OptimConfig(name="adamw", lr=1e-3, eps=1e-7, weight_decay=0.01),
        train=TrainConfig(steps=3000, batch_size=32, num_workers=2, cpus_per_worker=0.5, log_every=25,
                          checkpoint_every=500, lr_schedule="cosine", warmup_steps=100, augment_shift=4,
                          eval_every=1500, eval_episodes=5, eval_tasks=DEMO_TASKS, eval_cpus=0.25),
    ),
    # RT-1-X as published: 15-frame history, 300 px, Adam 1e-4 (eps 1e-7), large global batch on GPU
    # workers (global batch 1024 and 1M+ steps in the paper: scale steps/batch to the cluster). For
    # policies that do not fit one GPU use --train.parallel_strategy fsdp.
    "paper": Config(
        policy=PolicyConfig(preset="rt1x"),
        optim=OptimConfig(name="adam", lr=1e-4, eps=1e-7),
        train=TrainConfig(steps=100_000, batch_size=256, num_workers=8, cpus_per_worker=4, threads_per_worker=0,
                          use_gpu=True, log_every=100, checkpoint_every=2000, max_failures=5),
    ),
}
KEY_METRICS = ["train/loss", "train/token_acc", "final_step"]


def main(cfg: Config) -> dict:
    from xlab.session import job_session
    from xlab.track import Tracker
    from xlab.track.store import resolve_tracking_uri

    check_dataset_dirs(cfg.data.dataset_dirs)  # before Ray starts: a one-line error
    from xlab.policies import build_policy
    from xlab.policies.encoder import encoder_record

    with job_session("train_policy", cfg) as run:
        tracker = Tracker()
        policy = build_policy(cfg.policy.preset, **cfg.policy.overrides())
        pcfg = policy.config
        window = cfg.data.window or int(pcfg.history)
        image_size = cfg.data.image_size or int(pcfg.image_size)
        check(window == int(pcfg.history), "data.window",
              f"must equal the policy history ({pcfg.history}); set --policy.history instead")
        check(image_size == int(pcfg.image_size), "data.image_size",
              f"must equal the policy image size ({pcfg.image_size}): frames are resized once, the same way "
              "in training and evaluation; set --policy.image_size instead")
        n_params = sum(p.numel() for p in policy.parameters())
        tracker.log_params({"policy.parameters": n_params, "policy.resolved_config": json.dumps(
            dataclasses.asdict(pcfg) if dataclasses.is_dataclass(pcfg) else str(pcfg), default=str)[:6000]})
        print(f"[train_policy] {cfg.policy.preset}: {n_params / 1e6:.2f}M parameters, window {window}, "
              f"{image_size}px, {cfg.train.num_workers} workers x batch {cfg.train.batch_size // cfg.train.num_workers}")
        ds, names, dirs = build_dataset(cfg.data, pcfg, seed=cfg.seed)
        out = fit_policy(cfg, ds, names, run_id=run.info.run_id, tracking_uri=resolve_tracking_uri(cfg.tracking.uri))
        state, metrics = out["state"], out["metrics"]
        policy.load_state_dict(state["policy"])
        encoder = encoder_record(cfg.data.embedding_backend)  # saved with the policy: serving uses the same one
        policy.instruction_encoder = encoder
        summary = {
            "final_step": int(state["step"]), "restarts": int(state.get("restarts", 0)),
            "resumed_from": list(state.get("resumed_from", [])), "seconds": out["seconds"],
            "train/loss": metrics.get("train_loss"), "train/token_acc": metrics.get("train_token_acc"),
            "checkpoint": out["checkpoint_path"], "worker_nodes": list(state.get("worker_nodes", [])),
        }
        tracker.log_metrics({"final_step": summary["final_step"], "restarts": summary["restarts"],
                             "train_seconds": out["seconds"]})
        best = state.get("best_sim") or {}
        if best:
            summary |= {"best_sim/step": int(best["step"]), "best_sim/success": float(best["success"])}
            tracker.log_metrics({"best_sim/step": summary["best_sim/step"],
                                 "best_sim/success": summary["best_sim/success"]})
        model_uri = best_uri = None
        if cfg.registry.model_name:
            from xlab.policies.mlflow_model import log_policy

            stats = {n: d / "dataset_statistics.json" for n, d in zip(names, dirs, strict=True)}
            model_uri = log_policy(policy, name="policy", registered_model_name=cfg.registry.model_name,
                                   alias=cfg.registry.alias, stats_paths=stats, run_id=run.info.run_id)
            if best and cfg.registry.best_alias:
                best_policy = build_policy(cfg.policy.preset, **cfg.policy.overrides())
                best_policy.load_state_dict(best["policy"])
                best_policy.instruction_encoder = encoder
                best_uri = log_policy(best_policy, name="policy_best_sim",
                                      registered_model_name=cfg.registry.model_name, alias=cfg.registry.best_alias,
                                      stats_paths=stats, run_id=run.info.run_id)
        summary["model_uri"], summary["best_sim_uri"] = model_uri, best_uri
        tracker.log_dict(summary, "train_summary.json")
        print(f"[train_policy] done: step {summary['final_step']}/{cfg.train.steps} in {out['seconds']:.0f}s "
              f"(restarts {summary['restarts']}), loss {summary['train/loss']}, token_acc {summary['train/token_acc']}")
        print(f"[train_policy] checkpoint: {out['checkpoint_path']}")
        if model_uri:
            print(f"[train_policy] registered policy: {model_uri}  "
                  f"(load: xlab.policies.mlflow_model.load_registered_policy({model_uri!r}))")
        if best_uri:
            print(f"[train_policy] best in simulation: step {best['step']}, success {best['success']:.2f} "
                  f"-> {best_uri}")
        return {**summary, "run_id": run.info.run_id, "metrics": metrics}


if __name__ == "__main__":
    from xlab.cli import job_entry

    job_entry("train_policy")
