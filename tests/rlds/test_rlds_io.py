"""RLDS writing and reading with TensorFlow: round trip, TFDS compatibility, published layouts, broken shards.

TensorFlow must never load in a process that renders MuJoCo, and the test session may render
later (robot tests), so every case here runs in ONE child Python process: the module re-runs
itself as a script (``python test_rlds_io.py RESULTS ROOT CASE...``), runs the cases, and writes
each case's traceback (or null) to a JSON file; each pytest test below reports one case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

CASES: dict[str, Callable[[Path], None]] = {}


def case(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    CASES[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------- helpers (run in the child)


def sim_episodes(n: int = 7, seed: int = 0, hw: tuple[int, int] = (24, 32)):
    from xlab.rlds import Episode

    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        t = int(rng.integers(4, 12))
        actions = {
            "world_vector": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
            "rotation_delta": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
            "gripper_closedness_action": rng.uniform(-1, 1, (t, 1)).astype(np.float32),
        }
        if i == 1:  # a mobile base and an explicit terminate signal on one episode
            actions["base_displacement_vector"] = rng.uniform(-1, 1, (t, 2)).astype(np.float32)
            actions["terminate_episode"] = np.tile(np.array([0, 0, 1], np.int32), (t, 1))
        eps.append(
            Episode(
                images=rng.integers(0, 256, (t, *hw, 3), dtype=np.uint8),
                states=rng.normal(size=(t, 5)).astype(np.float32),
                actions=actions,
                instruction=["open the drawer", "pick up the cube"][i % 2],
                rewards=rng.random(t).astype(np.float32),
                discounts=np.full(t, 0.99, np.float32) if i == 2 else None,
                is_terminal=(np.arange(t) == t - 1) if i == 3 else None,
                embodiment="sawyer",
                task=["drawer-open-v3", "pick-place-v3"][i % 2],
                episode_id=f"ep-{i}",
                success=i % 3 == 0,
                seed=100 + i,
            )
        )
    return eps


def write_sim(root: Path, name: str = "sim_roundtrip", **kw) -> tuple[Path, list]:
    from xlab.rlds import write_rlds

    eps = sim_episodes()
    kw.setdefault("max_episodes_per_shard", 3)
    kw.setdefault("embedding_backend", "hash-fallback")  # no model load in this process
    return write_rlds(root, eps, name=name, **kw), eps


def expect_shard_error(fn: Callable[[], object], path: str, words: str) -> str:
    from xlab.errors import XlabError
    from xlab.rlds import RLDSShardError

    try:
        fn()
    except RLDSShardError as e:
        assert isinstance(e, XlabError)
        assert e.path == path, (e.path, path)
        assert path in str(e) and words in str(e), str(e)
        return str(e)
    raise AssertionError(f"no RLDSShardError for {path}")


# ---------------------------------------------------------------- cases


@case
def write_read_roundtrip(tmp: Path) -> None:
    from xlab.rlds import ACTION_DIM, complete_action, find_builder_dir, flatten_action, open_rlds
    from xlab.rlds.text_embed import hash_embed

    path, eps = write_sim(tmp)
    assert path == tmp / "sim_roundtrip" / "0.1.0" and find_builder_dir(tmp, "sim_roundtrip") == path
    names = sorted(p.name for p in path.iterdir())
    for f in ("dataset_info.json", "features.json", "metadata.json", "dataset_statistics.json"):
        assert f in names, names
    assert [n for n in names if ".tfrecord-" in n] == [
        f"sim_roundtrip-train.tfrecord-{i:05d}" for i in range(3)
    ]

    ds = open_rlds(path)
    assert (ds.name, ds.version, ds.split, ds.transform) == ("sim_roundtrip", "0.1.0", "train", "xlab")
    assert ds.shard_lengths == [3, 3, 1] and ds.num_episodes == 7
    assert ds.embedding_model == "hash-fallback" and ds.metadata["xlab"]["state_dim"] == 5

    raws = list(ds.iter_raw_episodes())
    assert len(raws) == 7
    for ep, raw in zip(eps, raws, strict=True):
        t = len(ep)
        steps, obs = raw["steps"], raw["steps"]["observation"]
        np.testing.assert_array_equal(obs["image"], ep.images)
        np.testing.assert_array_equal(obs["state"], ep.states)
        assert [s.decode() for s in obs["natural_language_instruction"]] == [ep.instruction] * t
        assert [s.decode() for s in steps["language_instruction"]] == [ep.instruction] * t
        np.testing.assert_array_equal(
            obs["natural_language_embedding"], np.tile(hash_embed(ep.instruction), (t, 1))
        )
        full = complete_action(ep.actions, t)
        assert set(steps["action"]) == set(full)
        for k, v in full.items():
            np.testing.assert_array_equal(steps["action"][k], v, err_msg=k)
            assert steps["action"][k].dtype == v.dtype, k
        np.testing.assert_array_equal(steps["reward"], ep.rewards)
        np.testing.assert_array_equal(
            steps["discount"], ep.discounts if ep.discounts is not None else np.ones(t)
        )
        idx = np.arange(t)
        np.testing.assert_array_equal(steps["is_first"], idx == 0)
        np.testing.assert_array_equal(steps["is_last"], idx == t - 1)
        terminal = ep.is_terminal if ep.is_terminal is not None else (idx == t - 1) & ep.success
        np.testing.assert_array_equal(steps["is_terminal"], terminal)
        meta = raw["episode_metadata"]
        assert meta["embodiment"].decode() == "sawyer" and meta["task"].decode() == ep.task
        assert meta["episode_id"].decode() == ep.episode_id
        assert bool(meta["success"]) == ep.success and int(meta["seed"]) == ep.seed

    # The standardized view (the loader's output) carries the same data, resized on request.
    trajs = list(open_rlds(path, image_size=(12, 16)).iter_episodes())
    assert trajs[1].actions["terminate_episode"][0].tolist() == [0, 0, 1]
    assert trajs[0].images.shape == (len(eps[0]), 12, 16, 3) and trajs[0].instruction == eps[0].instruction
    assert trajs[0].metadata["episode_id"] == "ep-0" and trajs[0].embedding.shape == (384,)
    np.testing.assert_array_equal(next(ds.iter_episodes()).images, eps[0].images)

    # dataset_statistics.json: per-dimension action statistics over the flat RT-1 vector.
    stats = json.loads((path / "dataset_statistics.json").read_text())
    flat = np.concatenate([flatten_action(complete_action(e.actions, len(e))) for e in eps])
    states = np.concatenate([e.states for e in eps])
    assert stats["num_episodes"] == 7 and stats["num_steps"] == flat.shape[0]
    assert stats["action"]["dim"] == ACTION_DIM and len(stats["action"]["names"]) == ACTION_DIM
    for key, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
        np.testing.assert_allclose(stats["action"][key], fn(flat, axis=0), rtol=1e-5, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(stats["state"][key], fn(states, axis=0), rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(stats["action"]["q01"], np.quantile(flat, 0.01, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["q99"], np.quantile(flat, 0.99, axis=0), rtol=1e-5, atol=1e-6)
    assert stats["xlab"]["embedding_model"] == "hash-fallback"


@case
def tfds_builder_from_directory_reads_it(tmp: Path) -> None:
    import tensorflow_datasets as tfds

    path, eps = write_sim(tmp, name="sim_tfds")
    builder = tfds.builder_from_directory(str(path))
    assert builder.info.name == "sim_tfds" and builder.info.splits["train"].num_examples == 7
    features = builder.info.features
    assert isinstance(features["steps"], tfds.features.Dataset)
    step = features["steps"].feature
    assert set(step.keys()) >= {
        "observation",
        "action",
        "reward",
        "discount",
        "is_first",
        "is_last",
        "is_terminal",
    }
    assert set(step["observation"].keys()) == {
        "image",
        "state",
        "natural_language_instruction",
        "natural_language_embedding",
    }
    assert set(features["episode_metadata"].keys()) == {"embodiment", "task", "episode_id", "success", "seed"}
    # Plain TFDS iteration (nested steps datasets), as any RLDS consumer would do it.
    for ep, episode in zip(eps, builder.as_dataset(split="train", shuffle_files=False), strict=True):
        steps = list(tfds.as_numpy(episode["steps"]))
        assert len(steps) == len(ep)
        np.testing.assert_array_equal(steps[-1]["observation"]["image"], ep.images[-1])
        np.testing.assert_array_equal(steps[0]["action"]["world_vector"], ep.actions["world_vector"][0])
        assert steps[0]["is_first"] and steps[-1]["is_last"]


@case
def fractal_layout_through_loader(tmp: Path) -> None:
    from xlab.rlds import (
        ActionTokenizer,
        complete_action,
        iter_windows,
        load_or_compute_statistics,
        open_rlds,
    )
    from xlab.rlds.layouts import fractal_dataset_config, synthetic_fractal_example
    from xlab.rlds.writer import write_rlds_examples

    rng = np.random.default_rng(5)
    examples = [synthetic_fractal_example(rng, length=n) for n in (6, 3, 8)]
    path = write_rlds_examples(
        tmp, "fractal20220817_data", fractal_dataset_config(), examples, max_episodes_per_shard=2
    )
    ds = open_rlds(path, image_size=(64, 80))
    assert (
        ds.transform == "fractal20220817_data" and ds.shard_lengths == [2, 1] and ds.embedding_model is None
    )
    obs_spec = ds.builder.info.features["steps"].feature["observation"]
    assert obs_spec["image"].shape == (256, 320, 3) and obs_spec["natural_language_embedding"].shape == (512,)
    assert ds.builder.info.features["steps"].feature["action"]["terminate_episode"].dtype.name == "int32"

    trajs = list(ds.iter_episodes())
    for ex, traj in zip(examples, trajs, strict=True):
        n = len(ex["steps"]["is_first"])
        assert traj.images.shape == (n, 64, 80, 3) and traj.images.dtype == np.uint8
        obs = ex["steps"]["observation"]
        np.testing.assert_array_equal(
            traj.states, np.concatenate([obs["base_pose_tool_reached"], obs["gripper_closed"]], axis=1)
        )
        for k, v in complete_action(ex["steps"]["action"], n).items():
            np.testing.assert_array_equal(traj.actions[k], v, err_msg=k)
        assert traj.instruction == "pick coke can" and traj.embedding.shape == (512,)
        assert (
            traj.metadata["attributes"]["env_name"] == "kitchen"
            and traj.metadata["aspects"]["success"] is True
        )
    # JPEG (as in the published data) decodes close to the original frames.
    raw = next(ds.iter_raw_episodes())
    err = np.abs(
        raw["steps"]["observation"]["image"].astype(int) - examples[0]["steps"]["observation"]["image"]
    )
    assert err.mean() < 4, err.mean()

    # Windows: the stored 512-d USE embedding is foreign, so "auto" recomputes one in our space.
    tok = ActionTokenizer()
    # One window per step but the last (its action is not valid in RLDS): episodes of 6, 3, 8 steps.
    cols = list(iter_windows(ds, window=4, tokenizer=tok, embedding_backend="hash-fallback"))
    assert [c["image"].shape for c in cols] == [(5, 4, 64, 80, 3), (2, 4, 64, 80, 3), (7, 4, 64, 80, 3)]
    assert cols[0]["embedding"].shape == (5, 384) and cols[2]["episode"][0] == 2
    assert cols[0]["dataset"][0] == "fractal20220817_data"
    np.testing.assert_array_equal(cols[1]["tokens"], tok.tokenize(trajs[1].actions)[:-1])
    every = list(iter_windows(ds, window=4, tokenizer=tok, embedding_backend="hash-fallback", drop_last=False))
    assert [len(c["step"]) for c in every] == [6, 3, 8]
    stored = next(iter_windows(ds, window=2, embedding="stored"))
    assert stored["embedding"].shape == (5, 512)

    # A renamed copy keeps the transform of the layout it was written in.
    renamed = open_rlds(path, name="fractal_subset")
    assert (
        renamed.transform == "fractal20220817_data"
        and next(renamed.iter_episodes()).dataset == "fractal_subset"
    )

    stats = load_or_compute_statistics(ds)
    assert stats["num_episodes"] == 3 and stats["num_steps"] == 17 and stats["state"]["dim"] == 8
    assert (path / "dataset_statistics.json").exists()


@case
def bridge_layout_through_loader(tmp: Path) -> None:
    from xlab.rlds import open_rlds
    from xlab.rlds.layouts import bridge_dataset_config, synthetic_bridge_example
    from xlab.rlds.writer import write_rlds_examples

    rng = np.random.default_rng(2)
    ex = synthetic_bridge_example(rng, length=5)
    ex["steps"]["action"]["world_vector"][0] = [0.05, -0.05, 0.0]  # the ends of Bridge's range
    path = write_rlds_examples(tmp, "bridge", bridge_dataset_config(), [ex])
    traj = next(open_rlds(path, image_size=(32, 40)).iter_episodes())
    act = ex["steps"]["action"]
    # +-0.05 m -> +-1.75 (RT-1-X), clipped 0.01 inside; rotation +-0.25 -> +-1.4.
    np.testing.assert_allclose(traj.actions["world_vector"][0], [1.74, -1.74, 0.0], atol=1e-5)
    np.testing.assert_allclose(
        traj.actions["rotation_delta"], np.clip(act["rotation_delta"] / 0.25 * 1.4, -1.39, 1.39), atol=1e-5
    )
    np.testing.assert_array_equal(
        traj.actions["gripper_closedness_action"][:, 0], np.where(act["open_gripper"], -1, 1)
    )
    assert traj.actions["terminate_episode"].tolist() == [[0, 1, 0]] * 4 + [[1, 0, 0]]
    assert not traj.actions["base_displacement_vector"].any()
    assert traj.images.shape == (5, 32, 40, 3) and traj.states.shape == (5, 7)
    assert traj.instruction == "put the spoon in the pot"


@case
def corrupt_shard_names_the_file(tmp: Path) -> None:
    from xlab.rlds import open_rlds

    path, _ = write_sim(tmp, name="sim_corrupt")
    shard = path / "sim_corrupt-train.tfrecord-00001"
    data = bytearray(shard.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)  # garbled bytes inside a record: the CRC check fails
    shard.write_bytes(bytes(data))
    msg = expect_shard_error(lambda: list(open_rlds(path).iter_episodes()), str(shard), "corrupt")
    assert "DataLossError" in msg, msg
    # A garbled header is reported the same way.
    first = path / "sim_corrupt-train.tfrecord-00000"
    first.write_bytes(b"\xff" * 16 + first.read_bytes()[16:])
    expect_shard_error(lambda: list(open_rlds(path).iter_raw_episodes()), str(first), "corrupt")


@case
def truncated_shard_names_the_file(tmp: Path) -> None:
    from xlab.rlds import open_rlds

    path, _ = write_sim(tmp, name="sim_trunc")
    shard = path / "sim_trunc-train.tfrecord-00001"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    # TF silently stops at a cut-off record; the episode count against dataset_info.json catches it.
    expect_shard_error(lambda: list(open_rlds(path).iter_episodes()), str(shard), "truncated")


@case
def missing_shard_names_the_file(tmp: Path) -> None:
    from xlab.rlds import RLDSError, open_rlds
    from xlab.rlds.ray_source import RLDSSource, plan_local

    path, _ = write_sim(tmp, name="sim_missing")
    shard = path / "sim_missing-train.tfrecord-00002"
    shard.unlink()
    expect_shard_error(lambda: open_rlds(path), str(shard), "missing")
    ds = open_rlds(path, check_shards=False)  # the lazy check (the path taken for gs:// data)
    expect_shard_error(lambda: list(ds.iter_episodes()), str(shard), "missing")
    expect_shard_error(lambda: plan_local(RLDSSource(str(path))), str(shard), "missing")  # Ray planning
    try:
        open_rlds(tmp / "nowhere")
    except RLDSError as e:
        assert "dataset_info.json missing" in str(e), str(e)
    else:
        raise AssertionError("opening a directory without a dataset did not fail")


@case
def writer_shards_validates_and_overwrites(tmp: Path) -> None:
    from xlab.rlds import RLDSError, open_rlds, write_rlds

    eps = sim_episodes()
    path = write_rlds(tmp, eps, name="sim_w", num_shards=2, embedding_backend="hash-fallback")
    assert open_rlds(path).shard_lengths == [4, 3]
    for kwargs, words in (
        ({}, "already exists"),
        ({"overwrite": True, "num_shards": 0}, "num_shards must be"),
    ):
        try:
            write_rlds(tmp, eps, name="sim_w", embedding_backend="hash-fallback", **kwargs)
        except RLDSError as e:
            assert words in str(e), str(e)
        else:
            raise AssertionError(f"expected an error containing {words!r}")
    path = write_rlds(tmp, eps[:2], name="sim_w", overwrite=True, embedding_backend="hash-fallback")
    assert open_rlds(path).shard_lengths == [2]
    assert sorted(p.name for p in path.glob("*.tfrecord-*")) == ["sim_w-train.tfrecord-00000"]
    stateless = sim_episodes(2)
    for ep in stateless:
        ep.states = np.zeros((len(ep), 0), np.float32)
    try:  # TF would crash (SIGFPE) reading a zero-size feature back: refuse to write it
        write_rlds(tmp, stateless, name="sim_nostate", embedding_backend="hash-fallback")
    except RLDSError as e:
        assert "state_dim must be >= 1" in str(e), str(e)
    else:
        raise AssertionError("an empty state was accepted")
    bad = sim_episodes(3)
    bad[2].images = bad[2].images[:, :10]
    try:
        write_rlds(tmp, bad, name="sim_bad", embedding_backend="hash-fallback")
    except RLDSError as e:
        assert "episode 2" in str(e) and "images must be uint8" in str(e), str(e)
    else:
        raise AssertionError("a wrongly sized image was accepted")
    assert not (tmp / "sim_bad" / "0.1.0").exists()  # a failed write leaves nothing behind


# ---------------------------------------------------------------- child entry point and pytest side


def _run_cases(results_path: Path, root: Path, names: list[str]) -> None:
    results: dict[str, str | None] = {}
    for name in names:
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        try:
            CASES[name](d)
            results[name] = None
        except BaseException:  # report everything, keep running the other cases
            results[name] = traceback.format_exc()
    results_path.write_text(json.dumps(results))


if __name__ == "__main__":
    _run_cases(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
    sys.exit(0)


@pytest.fixture(scope="module")
def tf_results(tmp_path_factory) -> dict[str, str | None]:
    root = tmp_path_factory.mktemp("rlds_tf")
    out = root / "results.json"
    proc = subprocess.run(
        [sys.executable, __file__, str(out), str(root), *CASES],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if not out.exists():
        pytest.fail(
            f"the TensorFlow case runner died (rc={proc.returncode}):\n{proc.stderr[-6000:]}", pytrace=False
        )
    return json.loads(out.read_text())


def check(results: dict[str, str | None], name: str) -> None:
    assert name in results, f"case {name} did not run"
    if results[name] is not None:
        pytest.fail(f"{name} failed in the TensorFlow subprocess:\n{results[name]}", pytrace=False)


def test_write_then_read_compares_every_field(tf_results):
    check(tf_results, "write_read_roundtrip")


def test_tfds_builder_from_directory_reads_what_we_wrote(tf_results):
    check(tf_results, "tfds_builder_from_directory_reads_it")


def test_fractal_layout_through_loader_and_transform(tf_results):
    check(tf_results, "fractal_layout_through_loader")


def test_bridge_layout_through_loader_and_transform(tf_results):
    check(tf_results, "bridge_layout_through_loader")


def test_corrupt_shard_error_names_the_file(tf_results):
    check(tf_results, "corrupt_shard_names_the_file")


def test_truncated_shard_error_names_the_file(tf_results):
    check(tf_results, "truncated_shard_names_the_file")


def test_missing_shard_error_names_the_file(tf_results):
    check(tf_results, "missing_shard_names_the_file")


def test_writer_shards_validates_and_overwrites(tf_results):
    check(tf_results, "writer_shards_validates_and_overwrites")
