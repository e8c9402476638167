"""RLDS writes are atomic: a writer SIGKILLed mid-write leaves the old dataset intact, and readers
refuse the partial one (and xlab datasets without a completion marker) in one line.

The writer runs in a child process (TensorFlow never loads in the pytest process); the checks here
use the readers' planning paths, which refuse before TensorFlow is imported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from xlab.errors import XlabError
from xlab.policies.training import check_dataset_dirs
from xlab.rlds import RLDSError, find_builder_dir, open_rlds
from xlab.rlds.complete import COMPLETE_MARKER, check_complete
from xlab.rlds.ray_source import RLDSSource, plan_local

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from xlab.rlds import Episode, write_rlds

    root = sys.argv[1]

    def episodes(n, slow):
        rng = np.random.default_rng(n)
        for i in range(n):
            if slow and i >= 3:
                time.sleep(0.5)
            t = 3
            yield Episode(images=rng.integers(0, 255, (t, 8, 8, 3), dtype=np.uint8),
                          states=np.zeros((t, 2), np.float32),
                          actions={"world_vector": np.zeros((t, 3), np.float32)},
                          instruction="pick", episode_id=f"ep{i}")

    write_rlds(root, list(episodes(2, False)), name="toy", max_episodes_per_shard=1,
               embedding_backend="hash-fallback")
    print("OLD_DONE", flush=True)
    write_rlds(root, episodes(10, True), name="toy", max_episodes_per_shard=1, overwrite=True,
               embedding_backend="hash-fallback")
    print("NEW_DONE", flush=True)
    """
)


def test_sigkilled_overwrite_keeps_old_dataset_and_partial_is_refused(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    builder = tmp_path / "toy" / "0.1.0"
    try:
        line = proc.stdout.readline()  # blocks until the old dataset is complete (or the child dies)
        assert line.strip() == "OLD_DONE", proc.communicate()[1][-3000:]
        deadline = time.monotonic() + 300
        while True:  # 3 of the new dataset's 10 shards exist (2 old shards + 3 new files, or 3+ listed)
            files = [*tmp_path.glob("toy/*/toy-train.tfrecord-*"), *tmp_path.glob("toy/.*/toy-train.tfrecord-*")]
            try:
                listed = len(json.loads((builder / "dataset_info.json").read_text())["splits"][0]["shardLengths"])
            except (OSError, ValueError, KeyError, IndexError):
                listed = 0
            if len(files) >= 5 or listed >= 3:
                break
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the writer never produced 3 shards"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The old dataset (2 episodes) is intact and complete, and still the one readers find.
    assert find_builder_dir(tmp_path, "toy") == builder
    plan = plan_local(RLDSSource(str(builder)))
    assert plan.shard_lengths == [1, 1] and (builder / COMPLETE_MARKER).exists()
    assert check_dataset_dirs([str(builder)]) == [builder]
    # The killed write's temporary directory is refused by every reader, naming it.
    (partial_dir,) = [p for p in (tmp_path / "toy").iterdir() if p.name.startswith(".")]
    for read in (lambda: open_rlds(partial_dir), lambda: plan_local(RLDSSource(str(partial_dir)))):
        with pytest.raises(RLDSError, match="incomplete") as e:
            read()
        assert str(partial_dir) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(XlabError, match="data.dataset_dirs: .*incomplete"):
        check_dataset_dirs([str(partial_dir)])
    assert "tensorflow" not in sys.modules


def test_xlab_dataset_without_marker_is_refused_foreign_one_accepted(tmp_path):
    legacy = tmp_path / "old" / "0.1.0"
    legacy.mkdir(parents=True)
    (legacy / "dataset_info.json").write_text("{}")
    (legacy / "metadata.json").write_text(json.dumps({"xlab": {"format": "xlab-rlds"}}))
    with pytest.raises(RLDSError, match="re-run collect_demos") as e:
        check_complete(legacy)
    assert str(legacy) in str(e.value)
    with pytest.raises(RLDSError, match="incomplete"):
        open_rlds(legacy)
    foreign = tmp_path / "fractal" / "0.1.0"  # TFDS-prepared data: no xlab metadata, no marker
    foreign.mkdir(parents=True)
    (foreign / "dataset_info.json").write_text("{}")
    check_complete(foreign)
    (legacy / COMPLETE_MARKER).write_text("{}")
    check_complete(legacy)
