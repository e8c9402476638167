"""The shared training loop: learning signal, masks, checkpoint/resume, Ray Train data parallel."""

import functools

import pytest
import torch

from xlab.models import build_model
from xlab.optim import OptimConfig
from xlab.prune import magnitude_masks
from xlab.studydata.modular import make_modular_data
from xlab.train import Task, TrainConfig, fit
from xlab.train.loop import evaluate


def small_task(p: int = 13) -> Task:
    d = make_modular_data("add", p, 0.5, seed=0)
    model_fn = functools.partial(build_model, "grok-transformer", d_vocab=d.vocab_size, n_out=p, d_model=32,
                                 n_heads=2, d_head=16, d_mlp=64)
    return Task("add", d.train.x, d.train.y, d.test.x, d.test.y, model_fn)


OPT = OptimConfig(name="adamw", lr=3e-3, beta2=0.98, weight_decay=1.0)


def test_training_fits_the_training_set_and_records_history():
    result = fit(small_task(), TrainConfig(steps=300, eval_every=50), OPT, seed=0)
    steps = [r["step"] for r in result.history]
    assert steps == [0, 50, 100, 150, 200, 250, 300]
    assert result.history[0]["train/acc"] < 0.3  # chance at init
    assert result.final["train/acc"] == 1.0
    assert result.final["train/loss"] < result.history[0]["train/loss"] / 10


def test_same_seed_same_run():
    a = fit(small_task(), TrainConfig(steps=30, eval_every=10), OPT, seed=3)
    b = fit(small_task(), TrainConfig(steps=30, eval_every=10), OPT, seed=3)
    assert a.history == b.history


def test_resume_from_checkpoint_continues_exactly(tmp_path):
    cfg = TrainConfig(steps=20, eval_every=1)
    straight = fit(small_task(), cfg, OPT, seed=1)
    first = fit(small_task(), TrainConfig(steps=10, eval_every=1), OPT, seed=1, checkpoint_dir=tmp_path)
    assert (tmp_path / "state.pt").exists() and len(first.history) == 11
    resumed = fit(small_task(), cfg, OPT, seed=1, checkpoint_dir=tmp_path)
    # The next step after the checkpoint has the same loss as in the uninterrupted run, and so on.
    assert [r["step"] for r in resumed.history] == [float(s) for s in range(21)]
    for a, b in zip(straight.history[11:], resumed.history[11:], strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-9, abs=1e-12)
    for k in straight.state:
        torch.testing.assert_close(straight.state[k], resumed.state[k])
    assert all(torch.equal(straight.init_state[k], resumed.init_state[k]) for k in straight.init_state)


def test_masks_stay_applied_and_are_returned():
    task = small_task()
    model = task.model_fn()
    masks = magnitude_masks(model, rate=0.7)
    result = fit(task, TrainConfig(steps=40, eval_every=20), OPT, seed=0, masks=masks)
    for name, mask in masks.items():
        assert (result.state[name][~mask] == 0).all()
        assert torch.equal(result.masks[name], mask)


def test_mse_task_accuracy_uses_argmax_of_targets():
    x = torch.eye(4)
    y = torch.eye(4)
    task = Task("id", x, y, x, y, lambda: torch.nn.Linear(4, 4, bias=False), loss="mse")
    model = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(4))
    row = evaluate(model, task, torch.device("cpu"), torch.float64)
    assert row["train/acc"] == 1.0 and row["test/loss"] == 0.0


def test_early_stop_after_grok():
    result = fit(small_task(), TrainConfig(steps=5000, eval_every=50, stop_after_grok=100,
                                           grok_thresholds=(0.3,)), OPT, seed=0)
    reached = result.steps_to[0.3]
    assert reached is not None and result.final["step"] == reached + 100


def test_two_ray_train_workers_match_single_process(ray_local):
    """Data parallel full batch on 2 gloo workers == full batch in one process (DDP averages grads)."""
    task = small_task()
    cfg = TrainConfig(steps=60, eval_every=20)
    local = fit(task, cfg, OPT, seed=0)
    dist = fit(task, TrainConfig(steps=60, eval_every=20, num_workers=2), OPT, seed=0)
    assert [r["step"] for r in dist.history] == [r["step"] for r in local.history]
    assert dist.final["train/loss"] < dist.history[0]["train/loss"]
    assert dist.final["train/acc"] == pytest.approx(local.final["train/acc"], abs=0.05)
