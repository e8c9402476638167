"""Training throughput across nodes: Ray Train, 2 workers on 2 nodes vs 2 workers on 1 node vs a bare loop.

The two nodes are the test suite's real two-node cluster on this machine (``tests/cluster.py``: a head
and a second ``ray start --address`` node on 127.0.0.2 with its own view of the Ray temp dir). Two
trainers, each through the one Ray Train harness (:mod:`xlab.train.distributed`, DDP over gloo):

* **policy samples/s**: the train_policy job's worker loop (:func:`xlab.policies.training.fit_policy`) on
  synthetic RLDS windows; bare: ``benchmarks/policy_train.py``'s loop over pre-made batches;
* **LM tokens/s**: LM pretraining (:func:`xlab.lm.pretrain.fit_pretrain`, a tiny GPT-2 on random token
  blocks); bare: ``benchmarks/lm_train.py``'s loop (forward, backward, clip, step, schedule).

Each worker keeps the bare loop's batch (2 workers: twice the global batch) and its one thread, so
"/ bare" near 2 means linear scaling. Placement:

* **1 node**: ``train.placement STRICT_PACK``, both workers on the head;
* **2 nodes**: ``train.placement STRICT_SPREAD``, one worker per node (gradients cross nodes over TCP).

On one machine both "nodes" share its cores and loopback network, so 2 nodes / 1 node measures
what crossing a node boundary costs (the object-store transfers of the data shards and the gloo
traffic between raylets), not the speed-up of adding a host. Ratios are printed last::

    python benchmarks/cluster_train.py         # rt1x-tiny 32 px batch 16/worker; GPT-2 tiny 8 x 128 tokens/worker
    python benchmarks/cluster_train.py --lm-size smoke --lm-block 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("RAY_AUTH_MODE", "token")


class LMBench:
    """The LM half: random token blocks, the bare loop's tokens/s, and Ray Train runs of the same model."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        import numpy as np

        from xlab.lm.packing import save_blocks
        from xlab.lm.pretrain import ModelSpec, PretrainConfig

        self.args, self.warmup = args, max(args.lm_steps // 6, 1)
        self.spec = ModelSpec("gpt2", args.lm_size, vocab_size=args.lm_vocab, n_ctx=args.lm_block)
        steps, batch = args.lm_steps, args.lm_batch
        # Random tokens: throughput does not depend on the text. Enough blocks for 2 workers' batches.
        blocks = np.random.default_rng(0).integers(1, args.lm_vocab, (2 * batch * (steps + 2), args.lm_block))
        self.blocks = blocks.astype(np.int32)
        self.train_path = save_blocks(self.blocks, work / "train.npy")
        self.val_path = save_blocks(self.blocks[:batch], work / "val.npy")
        self.cfg = PretrainConfig(
            steps=steps, batch_size=batch, block_size=args.lm_block, lr=1e-3, warmup_steps=5,
            log_every=self.warmup, eval_every=10**9, max_failures=0, threads_per_worker=args.threads,
            cpus_per_worker=args.cpus_per_worker, storage=str(work / "ray_results"),
        )  # fmt: skip

    def bare(self) -> float:
        from lm_train import bare_loop

        return bare_loop(self.spec, self.blocks, self.cfg, "cpu", self.warmup)

    def ray(self, placement: str) -> float:
        """Steady tokens/s of 2 workers (both ranks' tokens; start-up and the first logging window excluded)."""
        import dataclasses

        from lm_train import ray_loop

        cfg = dataclasses.replace(
            self.cfg, num_workers=2, batch_size=2 * self.cfg.batch_size, placement=placement
        )
        return ray_loop(self.spec, self.train_path, self.val_path, cfg)[0]


def main() -> None:
    from policy_train import add_arguments, baseline, ray_train

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--cpus-per-node", type=int, default=2)
    p.add_argument("--lm-size", default="tiny", help="xlab.lm.models.SIZES preset (GPT-2 family)")
    p.add_argument("--lm-block", type=int, default=128)
    p.add_argument("--lm-batch", type=int, default=8, help="sequences per worker (bare loop: per step)")
    p.add_argument("--lm-steps", type=int, default=60)
    p.add_argument("--lm-vocab", type=int, default=4096)
    args = p.parse_args()

    from cluster import TwoNodeCluster

    from xlab.runtime import init_ray, shutdown_ray

    rows, overrides, bare = baseline(args)
    # Blocks and checkpoints: a directory both nodes see (not under a Ray temp dir).
    work = Path(tempfile.mkdtemp(prefix="xlab-cluster-bench-"))
    os.environ["XLAB_STORAGE_PATH"] = str(work / "ray_results")
    lm = LMBench(args, work)
    lm_bare = lm.bare()
    print(
        f"LM bare : {lm_bare:8.1f} tokens/s (gpt2 {args.lm_size}, {args.lm_batch} x {args.lm_block})",
        flush=True,
    )
    cluster = TwoNodeCluster(cpus_per_node=args.cpus_per_node)
    try:
        cluster.start()
        print(f"two-node cluster up ({cluster.isolation})", flush=True)
        init_ray(
            cluster.address,
            runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT / 'platform'}{os.pathsep}{ROOT}"}},
        )
        one = ray_train(rows, args, 2, overrides, placement="STRICT_PACK")
        print(f"policy 1 node  : {one:8.1f} samples/s (2 workers)", flush=True)
        two = ray_train(rows, args, 2, overrides, placement="STRICT_SPREAD")
        print(f"policy 2 nodes : {two:8.1f} samples/s (2 workers)", flush=True)
        lm_one = lm.ray("STRICT_PACK")
        print(f"LM 1 node      : {lm_one:8.1f} tokens/s (2 workers)", flush=True)
        lm_two = lm.ray("STRICT_SPREAD")
        print(f"LM 2 nodes     : {lm_two:8.1f} tokens/s (2 workers)", flush=True)
    finally:
        shutdown_ray()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    for what, b, o, t in (("policy samples/s", bare, one, two), ("LM tokens/s", lm_bare, lm_one, lm_two)):
        print(
            f"ratios {what}: 2 nodes / 1 node {t / o:.2f}  2 nodes / bare {t / b:.2f}  1 node / bare {o / b:.2f}"
        )


if __name__ == "__main__":
    main()
