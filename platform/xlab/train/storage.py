"""Where Ray Train and Tune keep checkpoints: resolved, checked before a run starts, searched for a run to resume.

On one machine the default, ``./ray_results``, works. On a cluster every node writes its workers'
checkpoints into the storage path, so it must be a path that every node mounts (NFS, EFS) or a
bucket (``s3://BUCKET/PREFIX``): set ``XLAB_STORAGE_PATH`` on every node (``cluster.yaml`` does).
Ray only finds out at the first checkpoint, minutes into a run; :func:`check_shared` asks every alive
node up front whether it sees the path and fails with a one-line fix otherwise.

    storage = storage_path(cfg.train.storage)
    check_shared(storage)
    name = find_resumable(storage, "train_policy-1a2b3c4d-")   # the latest run of that config, or None
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from xlab.errors import XlabError

# Ray Train V2 (2.60) writes this file into <storage>/<run name>/ once a checkpoint is registered, and
# restores the run's checkpoints from it when a trainer is started again with the same (storage, name).
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"

_checked: set[tuple[str, frozenset[str]]] = set()


def storage_path(override: str = "") -> str:
    """``override``, else ``$XLAB_STORAGE_PATH``, else ``./ray_results``; local paths made absolute."""
    path = override or os.environ.get("XLAB_STORAGE_PATH") or ""
    if "://" in path:
        return path
    return str(Path(path or "ray_results").expanduser().resolve())


def _sees(path: str, token: str) -> bool:
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def check_shared(storage: str, timeout_s: float = 120.0) -> None:
    """Raise a one-line :class:`XlabError` unless every alive Ray node sees the local path ``storage``.

    A no-op for URIs (``s3://``, ``gs://``: every node reaches them) and on a one-node cluster. Each
    node runs a zero-CPU task that reads a marker file the driver wrote.
    """
    if "://" in storage:
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes() if n.get("Alive")}
    key = (storage, frozenset(nodes))
    if len(nodes) <= 1 or key in _checked:
        return
    fix = (
        "set XLAB_STORAGE_PATH (or --train.storage) on every node to a directory all nodes mount "
        "(NFS/EFS) or to s3://BUCKET/PREFIX"
    )
    try:
        Path(storage).mkdir(parents=True, exist_ok=True)
        marker = Path(storage) / f".xlab-shared-{uuid.uuid4().hex[:12]}"
        token = uuid.uuid4().hex
        marker.write_text(token)
    except OSError as e:
        raise XlabError(f"cannot write to checkpoint storage {storage} ({e.strerror or e}); {fix}") from None
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(_sees)
        refs = {
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
                str(marker), token
            ): node
            for node in nodes
        }
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        blind = [nodes[refs[r]] for r in ready if not ray.get(r)]
        silent = [nodes[refs[r]] for r in refs if r not in ready]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise XlabError(
            f"checkpoint storage {storage} is on this node only: {len(blind)} of {len(nodes)} nodes "
            f"({', '.join(sorted(blind))}) cannot see it; {fix}"
        )
    if silent:
        raise XlabError(
            f"could not check checkpoint storage {storage} on {len(silent)} of {len(nodes)} nodes "
            f"({', '.join(sorted(silent))}) within {timeout_s:.0f} s; is the cluster healthy (`ray status`)?"
        )
    _checked.add(key)


def find_resumable(storage: str, prefix: str) -> str | None:
    """The name of the newest run under ``storage`` whose name starts with ``prefix`` and that holds a
    registered checkpoint, or None."""
    import pyarrow.fs as pafs

    if "://" in storage:
        fs, base = pafs.FileSystem.from_uri(storage)
    else:
        fs, base = pafs.LocalFileSystem(), storage
    best: tuple[object, str] | None = None
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith(prefix):
            continue
        snap = fs.get_file_info(f"{info.path}/{SNAPSHOT_FILE}")
        if snap.type == pafs.FileType.File and (best is None or snap.mtime > best[0]):
            best = (snap.mtime, info.base_name)
    return best[1] if best else None
