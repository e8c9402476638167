"""The one Ray Train harness (xlab.train.distributed): shared scaling fields, run names that resume, a worker
group restarted from its checkpoint, and a driver restart with ``--train.resume auto``."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest

from xlab.config import parse_config
from xlab.errors import XlabError
from xlab.train.distributed import CHECKPOINT_FILE, launch, resolve_run
from xlab.train.scale import ScaleConfig, run_key
from xlab.train.storage import SNAPSHOT_FILE, find_resumable


@pytest.mark.parametrize("job", ["grokking", "train_policy", "pretrain_lm"])
def test_every_trainer_takes_the_same_dotted_scaling_names(job):
    import importlib

    mod = importlib.import_module(f"jobs.{job}")
    cfg = parse_config(
        mod.Config,
        mod.PRESETS,
        [
            "--train.num_workers",
            "2",
            "--train.resume",
            "auto",
            "--train.placement",
            "SPREAD",
            "--train.max_failures",
            "3",
            "--train.storage",
            "s3://bucket/x",
            "--train.inject_failure_at",
            "7",
        ],
        prog=f"xlab run {job}",
    )
    assert isinstance(cfg.train, ScaleConfig)
    assert (cfg.train.num_workers, cfg.train.resume, cfg.train.placement, cfg.train.max_failures) == (
        2,
        "auto",
        "SPREAD",
        3,
    )
    with pytest.raises(XlabError, match="train.placement"):
        parse_config(mod.Config, mod.PRESETS, ["--train.placement", "ANYWHERE"], prog=f"xlab run {job}")


def test_run_key_names_what_is_trained_not_how_it_runs():
    from jobs import grokking

    base = grokking.PRESETS["smoke"]
    same = dataclasses.replace(
        base,
        train=dataclasses.replace(base.train, resume="auto", max_failures=0, storage="/elsewhere"),
        preset="other",
    )
    other = dataclasses.replace(base, optim=dataclasses.replace(base.optim, lr=0.5))
    assert run_key(base) == run_key(same) != run_key(other)
    assert len(run_key(base)) == 8


def _fake_run(storage, name: str, age_s: float, snapshot: bool = True) -> None:
    d = storage / name
    d.mkdir(parents=True)
    if snapshot:
        (d / SNAPSHOT_FILE).write_text(json.dumps({}))
        t = time.time() - age_s
        os.utime(d / SNAPSHOT_FILE, (t, t))


def test_resume_auto_finds_the_newest_run_of_the_same_config(tmp_path, capsys):
    _fake_run(tmp_path, "toy-abcd1234-20260101-000000-aaaa", age_s=100)
    _fake_run(tmp_path, "toy-abcd1234-20260102-000000-bbbb", age_s=10)
    _fake_run(
        tmp_path, "toy-abcd1234-20260103-000000-cccc", age_s=1, snapshot=False
    )  # no checkpoint registered
    _fake_run(tmp_path, "toy-ffff0000-20260104-000000-dddd", age_s=0)  # another config
    assert find_resumable(str(tmp_path), "toy-abcd1234-") == "toy-abcd1234-20260102-000000-bbbb"
    auto = ScaleConfig(resume="auto")
    assert resolve_run(auto, str(tmp_path), "toy", "abcd1234") == ("toy-abcd1234-20260102-000000-bbbb", None)
    name, start = resolve_run(auto, str(tmp_path), "toy", "00000000")
    assert name.startswith("toy-00000000-") and start is None
    assert "no earlier run of this config" in capsys.readouterr().out
    fresh, _ = resolve_run(ScaleConfig(), str(tmp_path), "toy", "abcd1234")
    assert fresh.startswith("toy-abcd1234-") and not (tmp_path / fresh).exists()  # never reuses a name
    with pytest.raises(XlabError, match=f"no checkpoint at .*{CHECKPOINT_FILE} missing"):
        resolve_run(ScaleConfig(resume=str(tmp_path / "nope")), str(tmp_path), "toy", "abcd1234")


def test_scale_config_refuses_bad_values():
    with pytest.raises(XlabError, match="train.max_failures: must be >= 0, got -1"):
        ScaleConfig(max_failures=-1)
    with pytest.raises(XlabError, match="train.parallel_strategy"):
        ScaleConfig(parallel_strategy="zero3")
    from xlab.train import TrainConfig

    with pytest.raises(XlabError, match="train.parallel_strategy"):
        TrainConfig(parallel_strategy="fsdp")  # the grokking loop's small models: DDP only


def _toy_worker():
    """A worker function defined in a closure so cloudpickle ships it by value (test modules are not
    importable in Ray workers)."""

    def worker(ctx, config):
        import torch

        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        state = ctx.restored
        if state is not None:
            model.load_state_dict(state["model"])
        net = ctx.wrap(model)
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        if state is not None:
            ctx.load_optimizer(net, opt, state["optimizer"])
        x = torch.ones(4, 2)
        trained = list(state["trained"]) if state is not None else []
        for step in range(ctx.start_step + 1, config["steps"] + 1):
            loss = ((net(x) - 1.0) ** 2).mean()
            ctx.check_loss(float(loss), step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            trained.append(step)
            if step % config["every"] == 0 or step == config["steps"]:
                model_state, optim_state = ctx.full_state(net, model, opt)
                ctx.save(
                    {"model": model_state, "optimizer": optim_state, "step": step, "trained": trained},
                    {"loss": float(loss)},
                )
            ctx.maybe_fail(step)

    return worker


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_worker_group_restart_and_driver_restart_resume_from_the_last_checkpoint(
    ray_local, tmp_path, monkeypatch
):
    monkeypatch.setenv(
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"
    )  # the controller registers checkpoints sooner
    config = {"steps": 12, "every": 4}
    scale = ScaleConfig(
        num_workers=1, cpus_per_worker=0.5, storage=str(tmp_path), max_failures=1, inject_failure_at=6
    )
    # A worker dies at step 6: the group restarts from step 4's checkpoint and finishes.
    out = launch(_toy_worker(), config, scale, name="toy", key="k1")
    assert out.state["step"] == 12 and out.state["restarts"] == 1 and out.state["resumed_from"] == [4]
    assert out.state["trained"] == [1, 2, 3, 4, *range(5, 13)]  # steps 5-6 trained again, nothing skipped
    assert len(out.state["worker_nodes"]) == 1

    # The driver gives up (no restarts left) at step 6; the same command with resume=auto finishes that run.
    with pytest.raises(Exception):  # noqa: B017 (Ray's TrainingFailedError wraps the dead worker)
        launch(_toy_worker(), config, dataclasses.replace(scale, max_failures=0), name="toy", key="k2")
    failed_run = find_resumable(str(tmp_path), "toy-k2-")
    assert failed_run is not None
    again = launch(
        _toy_worker(),
        config,
        dataclasses.replace(scale, max_failures=0, resume="auto", inject_failure_at=0),
        name="toy",
        key="k2",
    )
    assert again.run_name == failed_run
    assert again.state["step"] == 12 and again.state["resumed_from"] == [4]
    assert again.state["trained"][:4] == [1, 2, 3, 4]
