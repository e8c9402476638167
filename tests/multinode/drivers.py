"""Driver processes for the two-node tests: each joins the cluster at $RAY_ADDRESS, runs one thing, writes JSON.

    python tests/multinode/drivers.py lm OUT.json --work DIR --storage DIR [--steps N ...]
    python tests/multinode/drivers.py policy OUT.json --work DIR --storage DIR
    python tests/multinode/drivers.py storage OUT.json --storage DIR
    python tests/multinode/drivers.py sweep OUT.json --cpus_per_trial N       # adopt_toy: 2 Tune trials
    python tests/multinode/drivers.py serve OUT.json --work DIR               # replica on one node, simulators on the other

They run as separate processes because the test process may already be the driver of another (local)
Ray cluster. The cluster's workers import this checkout: the driver's runtime env puts it first on
their PYTHONPATH (both nodes share this machine's disk; a real cluster gets it from `xlab submit`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "platform"), str(ROOT)]
ADDRESS = os.environ["RAY_ADDRESS"]  # read now: importing tests/conftest.py unsets it


def connect() -> None:
    from xlab.runtime import init_ray

    init_ray(ADDRESS, runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT / 'platform'}{os.pathsep}{ROOT}"}})


def lm(args: argparse.Namespace) -> dict:
    import mlflow
    import numpy as np

    from xlab.lm.packing import pack_blocks, save_blocks, tokenize_documents
    from xlab.lm.pretrain import ModelSpec, PretrainConfig, fit_pretrain
    from xlab.lm.tokenizer import train_bpe

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names, rooms = ["Mary", "John", "Sandra", "Daniel"], ["kitchen", "garden", "office", "hallway"]
    texts = [
        " ".join(f"{names[a]} went to the {rooms[b]}." for a, b in rng.integers(0, 4, (6, 2)))
        for _ in range(600)
    ]
    tok = train_bpe(texts, vocab_size=300)
    ids = list(tokenize_documents(tok, texts))
    save_blocks(pack_blocks(ids[:560], 32), work / "train.npy")
    save_blocks(pack_blocks(ids[560:], 32), work / "val.npy")
    cfg = PretrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=3e-3,
        warmup_steps=3,
        block_size=32,
        log_every=5,
        eval_every=args.steps,
        checkpoint_every=args.checkpoint_every,
        num_workers=2,
        cpus_per_worker=0.5,
        threads_per_worker=1,
        placement="SPREAD",
        max_failures=2,
        storage=args.storage,
        resume=args.resume,
    )
    connect()
    mlflow.set_experiment("two_node_lm")
    with mlflow.start_run() as run:
        res = fit_pretrain(
            ModelSpec("gpt2", "tiny", vocab_size=len(tok), n_ctx=32),
            work / "train.npy",
            {"toy": work / "val.npy"},
            cfg,
            run_id=run.info.run_id,
            name="lm-2node",
        )
    return {
        "run_id": run.info.run_id,
        "step": res.step,
        "restarts": res.restarts,
        "resumed_from": res.resumed_from,
        "worker_nodes": res.worker_nodes,
        "loss": [r["train/loss"] for r in res.history],
        "checkpoint": res.checkpoint_path,
    }


def policy(args: argparse.Namespace) -> dict:
    from conftest import write_fake_rlds
    from jobs import train_policy
    from xlab.config import apply_overrides

    connect()
    dirs = write_fake_rlds(str(Path(args.work) / "rlds"))
    cfg = apply_overrides(
        train_policy.PRESETS["smoke"],
        {
            "data.dataset_dirs": dirs,
            "data.embedding_backend": "hash-fallback",
            "data.shuffle_buffer": 64,
            "policy.preset": "rt1x-tiny",
            "policy.image_size": 32,
            "policy.history": 2,
            "train.steps": args.steps,
            "train.batch_size": 8,
            "train.num_workers": 2,
            "train.log_every": 5,
            "train.checkpoint_every": args.checkpoint_every,
            "train.placement": "SPREAD",
            "train.storage": args.storage,
            "train.cpus_per_worker": 0.5,
            "registry.model_name": "two-node-rt1x",
            "registry.alias": "smoke",
        },
    )
    out = train_policy.main(cfg)
    return {
        k: out[k] for k in ("run_id", "final_step", "restarts", "resumed_from", "worker_nodes", "model_uri")
    }


def storage(args: argparse.Namespace) -> dict:
    from xlab.errors import XlabError
    from xlab.train.storage import check_shared

    connect()
    try:
        check_shared(args.storage)
        return {"ok": True}
    except XlabError as e:
        return {"ok": False, "error": str(e)}


def node_ips() -> dict[str, str]:
    """Node id -> the address Ray registered (the second node's is 127.0.0.2; Ray gives the head this machine's)."""
    import ray

    return {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}


def sweep(args: argparse.Namespace) -> dict:
    """The adopt_toy job (its own Ray Tune sweep): Adam and ADOPT, one trial each, ``cpus_per_trial`` CPUs."""
    from jobs import adopt_toy
    from xlab.config import apply_overrides
    from xlab.track import child_runs

    connect()
    cfg = apply_overrides(
        adopt_toy.PRESETS["smoke"],
        {
            "toy.steps": 4000,
            "toy.runs": 8,
            "toy.log_every": 1000,
            "sweep.optimizers": ["adam", "adopt"],
            "sweep.beta2": [0.5],
            "sweep.cpus_per_trial": args.cpus_per_trial,
        },
    )
    out = adopt_toy.main(cfg)
    trials = [
        {
            "optimizer": r.data.params["toy.optimizer"],
            "status": r.info.status,
            "node_id": r.data.tags.get("ray.node_id"),
            "node_ip": r.data.tags.get("ray.node_ip"),
        }
        for r in child_runs(out["run_id"])
    ]
    return {"run_id": out["run_id"], "trials": trials, "nodes": node_ips()}


def serve_episodes(args: argparse.Namespace) -> dict:
    """A tiny policy served by one replica on the second node (``worker_node``), two simulator actors on the
    head (``head_node``): episodes stepped with the replica's actions."""
    import torch
    from ray import serve

    from xlab.policies import build_policy
    from xlab.serve import (
        SimulatorPool,
        make_specs,
        run_episodes,
        shutdown_policy_server,
        start_policy_server,
    )

    connect()
    torch.manual_seed(0)
    path = build_policy("rt1x-tiny", image_size=32).save_pretrained(Path(args.work) / "policy")
    app = "two-node-policy"
    handle = start_policy_server(
        str(path),
        name=app,
        max_batch_size=4,
        batch_wait_timeout_s=0.5,
        num_cpus=0.5,
        node_resource="worker_node",
    )
    try:
        pool = SimulatorPool(2, server_app=app, num_cpus=0.25, node_resource="head_node")
        try:
            specs = make_specs(["xlab/fetch-reach-v0"], 2, "policy", max_steps=args.steps)
            results, _ = run_episodes(pool, specs, episode_timeout_s=300)
            simulator_nodes = pool.node_ids()
        finally:
            pool.shutdown()
        info = handle.info.remote().result(timeout_s=60)
        stats = handle.stats.remote().result(timeout_s=60)
    finally:
        shutdown_policy_server(app)
        serve.shutdown()  # Serve's controller is detached: it would outlive this driver on the cluster
    return {
        "replica_node": info["node_id"],
        "simulator_nodes": simulator_nodes,
        "nodes": node_ips(),
        "episodes": [
            {"status": r.status, "steps": r.steps, "server_replies": len(r.server_ms), "error": r.error}
            for r in results
        ],
        "server_requests": stats["requests"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["lm", "policy", "storage", "sweep", "serve"])
    p.add_argument("out")
    p.add_argument("--work", default="")
    p.add_argument("--storage", default="")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--checkpoint_every", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--resume", default="")
    p.add_argument("--cpus_per_trial", type=float, default=1.0)
    args = p.parse_args()
    drivers = {"lm": lm, "policy": policy, "storage": storage, "sweep": sweep, "serve": serve_episodes}
    result = drivers[args.what](args)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
