"""Deterministic failures are not retried and diverged models are never registered.

* Ray Train's default failure policy retries any worker error ``max_failures`` times;
  XlabFailurePolicy fails at once on a worker's XlabError (config, data, non-finite loss).
* The grokking loop and the LM loop raise NonFiniteLossError on a NaN loss.
* ``max_failures=-1`` (unlimited restarts) is a config error naming the field.
* train_policy registers a model only after a successful fit.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ray.train import FailureConfig
from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy, FailureDecision
from ray.train.v2.api.exceptions import WorkerGroupError

from xlab.errors import NonFiniteLossError, XlabError
from xlab.train.ray_failures import XlabFailurePolicy, XlabTorchTrainer, worker_error


def _group_error(exc: Exception) -> WorkerGroupError:
    return WorkerGroupError("rank 0 failed", {1: RuntimeError("collateral"), 0: exc})


def test_xlab_error_in_a_worker_is_not_retried_other_errors_are():
    nan = NonFiniteLossError("the training loss is nan at step 3")
    cfg = FailureConfig(max_failures=2)
    assert DefaultFailurePolicy(cfg).make_decision(_group_error(nan)) == FailureDecision.RETRY  # why we need it
    assert XlabFailurePolicy(cfg).make_decision(_group_error(nan)) == FailureDecision.RAISE
    policy = XlabFailurePolicy(cfg)  # a crash (killed worker, OOM) keeps Ray's retry budget
    crash = WorkerGroupError("died", {0: RuntimeError("worker died")})
    assert [policy.make_decision(crash) for _ in range(3)] == [FailureDecision.RETRY] * 2 + [FailureDecision.RAISE]
    assert worker_error(_group_error(nan)) is nan and worker_error(crash) is None


def test_trainer_uses_the_policy_and_reraises_the_worker_error(monkeypatch):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    seen = {}

    def controller(self, **kwargs):
        seen.update(kwargs)
        raise _group_error(XlabError("bad config value for data.dataset_dirs: too few episodes"))

    monkeypatch.setattr(TorchTrainer, "_initialize_and_run_controller", controller)
    trainer = XlabTorchTrainer(lambda: None, scaling_config=ScalingConfig(num_workers=1),
                               run_config=RunConfig(name="t", failure_config=FailureConfig(max_failures=3)))
    with pytest.raises(WorkerGroupError):
        trainer._initialize_and_run_controller(failure_policy=DefaultFailurePolicy(FailureConfig()))
    assert isinstance(seen["failure_policy"], XlabFailurePolicy)
    assert seen["failure_policy"].failure_config.max_failures == 3
    monkeypatch.setattr(TorchTrainer, "fit", lambda self: controller(self))
    # fit: the worker's one-line error, not Ray's wrapper
    with pytest.raises(XlabError, match="^bad config value for data.dataset_dirs: too few episodes$"):
        trainer.fit()


class _NaNNet(torch.nn.Module):
    def __init__(self, n_out: int = 5):
        super().__init__()
        self.lin = torch.nn.Linear(3, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.float()) * float("nan")


def test_grokking_loop_fails_on_a_nan_loss():
    from xlab.optim import OptimConfig
    from xlab.train import Task, TrainConfig, fit

    x, y = torch.zeros(8, 3, dtype=torch.long), torch.zeros(8, dtype=torch.long)
    task = Task("nan-task", x, y, x, y, functools.partial(_NaNNet, 5))
    with pytest.raises(NonFiniteLossError, match="training nan-task: the training loss is nan at step 1"):
        fit(task, TrainConfig(steps=5, eval_every=5), OptimConfig(name="adamw", lr=1e-3), seed=0)


def test_lm_loop_fails_on_a_nan_loss():
    from xlab.lm.loop import LMTrainConfig, build_optimizer_and_schedule, train_steps

    class NaNLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2, 2))

        def forward(self, input_ids, labels, **_):
            return SimpleNamespace(loss=self.w.sum() * float("nan"))

    model = NaNLM()
    cfg = LMTrainConfig(steps=3, precision="fp32")
    opt, sched = build_optimizer_and_schedule(model, cfg)
    batch = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": torch.zeros(2, 4, dtype=torch.long)}
    with pytest.raises(NonFiniteLossError, match="language-model training: the training loss is nan at step 1"):
        train_steps(model, iter([batch] * 3), cfg, optimizer=opt, scheduler=sched)


def test_unlimited_restarts_are_refused():
    from xlab.lm.pretrain import PretrainConfig
    from xlab.policies.training import PolicyTrainConfig
    from xlab.train import TrainConfig

    for cls in (PolicyTrainConfig, PretrainConfig, TrainConfig):
        with pytest.raises(XlabError, match=r"bad config value for train.max_failures: must be >= 0, got -1"):
            cls(max_failures=-1)


def test_train_policy_registers_nothing_when_the_fit_fails(monkeypatch, mlflow_uri):
    from jobs import train_policy
    from xlab.config import apply_overrides
    from xlab.policies import mlflow_model

    logged = []
    monkeypatch.setattr(train_policy, "check_dataset_dirs", lambda dirs: [Path(d) for d in dirs])
    monkeypatch.setattr(train_policy, "build_dataset", lambda *a, **k: (None, ["fake"], [Path("/nowhere")]))

    def diverge(*a, **k):
        raise NonFiniteLossError("rank 0: the training loss is nan at step 7")

    monkeypatch.setattr(train_policy, "fit_policy", diverge)
    monkeypatch.setattr(mlflow_model, "log_policy", lambda *a, **k: logged.append(k))
    cfg = apply_overrides(train_policy.PRESETS["smoke"], {
        "data.dataset_dirs": ["/nowhere"], "policy.preset": "rt1x-tiny", "registry.model_name": "never-registered"})
    with pytest.raises(NonFiniteLossError, match="nan at step 7"):
        train_policy.main(cfg)
    assert logged == []


@pytest.mark.timeout(300)
def test_a_worker_xlab_error_fails_the_ray_run_once(ray_local, tmp_path):
    from ray.train import RunConfig, ScalingConfig

    def _failing_worker(config: dict) -> None:  # defined here: cloudpickle ships it by value
        with open(config["counter"], "a") as f:
            f.write("start\n")
        raise XlabError("bad config value for data.dataset_dirs: the dataset has 2 episodes, fewer than the batch")

    counter = tmp_path / "starts.txt"
    trainer = XlabTorchTrainer(
        _failing_worker, train_loop_config={"counter": str(counter)},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="xlab-error-once", storage_path=str(tmp_path / "ray"),
                             failure_config=FailureConfig(max_failures=2)),
    )
    with pytest.raises(XlabError, match="^bad config value for data.dataset_dirs: the dataset has 2 episodes"):
        trainer.fit()
    assert counter.read_text().splitlines() == ["start"]  # Ray's default policy would start it 3 times
