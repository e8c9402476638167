"""Ray Data streams tokenized windows from a weighted mixture of RLDS datasets into iter_torch_batches.

TensorFlow only ever loads in Ray workers started with the TF runtime env: the datasets are
written by a Ray task, read by Ray Data read tasks, and this (driver) process stays TF-free.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

SIZES = {"sim_reach": (12, 10), "sim_push": (4, 10)}  # episodes x steps
FRACTAL_EPISODES = (4, 6)  # steps of each synthetic fractal-layout episode


@pytest.fixture(scope="module")
def rlds_dirs(ray_local, tmp_path_factory) -> dict[str, str]:
    import ray

    from xlab.rlds import TF_WORKER_ENV

    root = str(tmp_path_factory.mktemp("rlds_ray"))

    # Defined here so cloudpickle ships it by value (test modules are not importable in workers).
    def write_all(root: str, sizes: dict, fractal_lengths: tuple) -> dict[str, str]:
        import numpy as np

        from xlab.rlds import Episode, write_rlds
        from xlab.rlds.layouts import fractal_dataset_config, synthetic_fractal_example
        from xlab.rlds.writer import write_rlds_examples

        rng = np.random.default_rng(0)
        out = {}
        for name, (n, t) in sizes.items():
            eps = [
                Episode(
                    images=rng.integers(0, 256, (t, 32, 32, 3), dtype=np.uint8),
                    states=rng.normal(size=(t, 4)).astype(np.float32),
                    actions={
                        "world_vector": rng.uniform(-1, 1, (t, 3)),
                        "rotation_delta": rng.uniform(-1, 1, (t, 3)),
                    },
                    instruction=name.replace("_", " "),
                    episode_id=str(i),
                )
                for i in range(n)
            ]
            out[name] = str(
                write_rlds(root, eps, name=name, max_episodes_per_shard=3, embedding_backend="hash-fallback")
            )
        examples = [synthetic_fractal_example(rng, length=t) for t in fractal_lengths]
        # No dataset_statistics.json: the mixture planner must count its steps in a TF worker.
        out["fractal20220817_data"] = str(
            write_rlds_examples(root, "fractal20220817_data", fractal_dataset_config(), examples)
        )
        return out

    task = ray.remote(write_all).options(runtime_env={"env_vars": TF_WORKER_ENV}, num_cpus=1)
    return ray.get(task.remote(root, SIZES, FRACTAL_EPISODES))


def read(dirs, mixture=None, concurrency=None, **options):
    """``read_rlds_windows`` with this file's small windows; ``options`` are :class:`WindowOptions` fields."""
    from xlab.rlds import WindowOptions, read_rlds_windows

    options = {"window": 4, "image_size": (32, 32), "embedding_backend": "hash-fallback", **options}
    return read_rlds_windows(dirs, WindowOptions(**options), mixture=mixture, concurrency=concurrency)


def test_mixture_streams_tokenized_windows_into_torch_batches(rlds_dirs):
    import ray

    from xlab.rlds import iter_torch_window_batches

    weights = {"sim_reach": 1.0, "sim_push": 2.0, "fractal20220817_data": 1.0}
    ds = read(rlds_dirs, mixture=list(weights.items()), seed=7)
    names = list(rlds_dirs)  # dataset_id = position of the source
    counts = np.zeros(3)
    n_rows = 0
    for batch in iter_torch_window_batches(
        ds, batch_size=16, local_shuffle_buffer_size=48, local_shuffle_seed=0
    ):
        b = len(batch["tokens"])
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (b, 4, 32, 32, 3)
        assert batch["tokens"].dtype == torch.long and batch["tokens"].shape == (b, 11)
        assert batch["window_tokens"].shape == (b, 4, 11) and batch["pad_mask"].dtype == torch.bool
        assert batch["embedding"].shape == (b, 384) and batch["action"].shape == (b, 13)
        assert int(batch["tokens"].min()) >= 0 and int(batch["tokens"].max()) <= 255
        # Front padding: a window ending at step s has min(s + 1, 4) real steps, the last one real.
        np.testing.assert_array_equal(
            batch["pad_mask"].sum(1).numpy(), np.minimum(batch["step"].numpy() + 1, 4)
        )
        assert bool(batch["pad_mask"][:, -1].all())
        assert torch.equal(batch["window_tokens"][:, -1], batch["tokens"])
        assert not batch["image"][~batch["pad_mask"]].any()
        counts += np.bincount(batch["dataset_id"].numpy(), minlength=3)
        n_rows += b

    windows = {n: e * (t - 1) for n, (e, t) in SIZES.items()} | {
        "fractal20220817_data": sum(t - 1 for t in FRACTAL_EPISODES)}
    total = sum(windows.values())
    # One pass has about as many rows as the data has windows, shared out by weight.
    assert abs(n_rows - total) < 0.15 * total, (n_rows, total)
    shares = counts / counts.sum()
    expected = np.array([weights[n] for n in names]) / sum(weights.values())
    assert np.all(np.abs(shares - expected) < 0.1), (dict(zip(names, shares, strict=True)), expected)
    assert counts[names.index("fractal20220817_data")] > windows["fractal20220817_data"]  # upsampled

    # TensorFlow stayed in the TF workers: not in this driver, not in plain task workers.
    assert "tensorflow" not in sys.modules

    @ray.remote
    def tf_loaded() -> bool:
        import sys

        return "tensorflow" in sys.modules

    assert not any(ray.get([tf_loaded.remote() for _ in range(4)]))


def test_sampling_is_deterministic_by_seed_and_varies_by_epoch(rlds_dirs):
    mix = [("sim_reach", 1.0), ("sim_push", 3.0)]
    dirs = {k: rlds_dirs[k] for k in ("sim_reach", "sim_push")}

    def rows(**kw) -> list[tuple[int, int, int]]:
        out = read(dirs, mixture=mix, **kw).select_columns(["dataset_id", "episode", "step"]).take_all()
        return sorted((r["dataset_id"], r["episode"], r["step"]) for r in out)

    first = rows(seed=3)
    assert rows(seed=3) == first
    assert rows(seed=3, epoch=1) != first
    # sim_push: rate = 3/4 * 160 steps / 40 steps = 3 exactly, so every push window appears 3 times; its
    # 4 episodes of 10 steps have 9 windows each (none ends on the last step, whose action is not valid).
    push = [r for r in first if r[0] == 1]
    assert len(push) == 3 * 36 and len(set(push)) == 36


def test_bad_mixture_is_a_user_error(rlds_dirs):
    from xlab.rlds import RLDSError

    with pytest.raises(RLDSError, match="without a source: \\['bridge'\\]"):
        read({"sim_reach": rlds_dirs["sim_reach"]}, mixture=[("sim_reach", 1.0), ("bridge", 1.0)])


def test_corrupt_shard_error_reaches_the_driver_naming_the_file(rlds_dirs, tmp_path):
    import shutil

    from xlab.rlds import RLDSShardError

    copy = tmp_path / "sim_push" / "0.1.0"
    shutil.copytree(rlds_dirs["sim_push"], copy)
    shard = copy / "sim_push-train.tfrecord-00001"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    shard.write_bytes(bytes(data))
    with pytest.raises(RLDSShardError) as info:  # Ray re-raises the read task's error type
        read({"sim_push": str(copy)}).take_all()
    assert str(shard) in str(info.value) and "corrupt" in str(info.value)
