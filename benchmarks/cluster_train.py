"""Policy training samples/s across nodes: Ray Train, 2 workers on 2 nodes vs 2 workers on 1 node vs a bare loop.

The two nodes are the test suite's real two-node cluster on this machine (``tests/cluster.py``: a head
and a second ``ray start --address`` node on 127.0.0.2 with its own view of the Ray temp dir). All runs
train the same policy on the same synthetic windows with the train_policy job's own worker loop
(:func:`xlab.policies.training.fit_policy`, DDP over gloo), keeping the bare loop's per-worker batch:

* **bare**: one process, pre-made batches (``benchmarks/policy_train.py``'s loop);
* **1 node**: ``train.placement STRICT_PACK``, both workers on the head;
* **2 nodes**: ``train.placement STRICT_SPREAD``, one worker per node (gradients cross nodes over TCP).

On one machine both "nodes" share its cores and loopback network, so 2 nodes / 1 node measures
what crossing a node boundary costs (the object-store transfers of the data shards and the gloo
traffic between raylets), not the speed-up of adding a host. Ratios are printed last::

    python benchmarks/cluster_train.py                      # rt1x-tiny, 32 px, batch 16 per worker, 60 steps
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("RAY_AUTH_MODE", "token")


def main() -> None:
    from policy_train import add_arguments, baseline, ray_train

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--cpus-per-node", type=int, default=2)
    args = p.parse_args()

    from cluster import TwoNodeCluster

    from xlab.runtime import init_ray, shutdown_ray

    rows, overrides, bare = baseline(args)
    cluster = TwoNodeCluster(cpus_per_node=args.cpus_per_node)
    try:
        cluster.start()
        print(f"two-node cluster up ({cluster.isolation})", flush=True)
        init_ray(
            cluster.address,
            runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT / 'platform'}{os.pathsep}{ROOT}"}},
        )
        one = ray_train(rows, args, 2, overrides, placement="STRICT_PACK")
        print(f"1 node  : {one:8.1f} samples/s (2 workers)", flush=True)
        two = ray_train(rows, args, 2, overrides, placement="STRICT_SPREAD")
        print(f"2 nodes : {two:8.1f} samples/s (2 workers)", flush=True)
    finally:
        shutdown_ray()
        cluster.stop()
    print(
        f"ratios: 2 nodes / 1 node {two / one:.2f}  2 nodes / bare {two / bare:.2f}  1 node / bare {one / bare:.2f}"
    )


if __name__ == "__main__":
    main()
