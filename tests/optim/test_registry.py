"""The optimizer registry and OptimConfig."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Iterator

import pytest
import torch

from xlab.errors import XlabError
from xlab.optim import (
    ADOPT,
    OPTIMIZERS,
    OptimConfig,
    available_optimizers,
    build_optimizer,
    default_clip_lambda,
    make_optimizer,
    register_optimizer,
)

UNKNOWN = "optim.name='adom' is not a known optimizer; choose one of: adam, adamw, adopt, amsgrad, sgd"


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int = 5) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 4, generator=gen), torch.randn(16, 2, generator=gen)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def test_names() -> None:
    assert available_optimizers() == ["adam", "adamw", "adopt", "amsgrad", "sgd"]
    assert OPTIMIZERS["adopt"] is ADOPT
    assert OPTIMIZERS["adam"] is torch.optim.Adam
    assert OPTIMIZERS["adamw"] is torch.optim.AdamW
    assert OPTIMIZERS["sgd"] is torch.optim.SGD


@pytest.mark.parametrize("name", ["adam", "adamw", "adopt", "amsgrad", "sgd"])
def test_every_name_builds_and_steps(name: str) -> None:
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(
        OptimConfig(name=name, lr=0.01, weight_decay=0.01, momentum=0.9), model.parameters()
    )
    assert isinstance(opt, torch.optim.Optimizer)
    _train(model, opt, steps=3)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    model2 = _model()
    opt2 = make_optimizer(name, model2.parameters(), lr=0.01)
    assert type(opt2) is type(opt)
    _train(model2, opt2, steps=3)
    assert any(not torch.equal(a, b) for a, b in zip(before, model2.parameters(), strict=True))


@pytest.mark.parametrize(
    "name, reference",
    [
        ("adam", lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1)),
        ("adamw", lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1)),
        (
            "amsgrad",
            lambda ps: torch.optim.Adam(
                ps, lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1, amsgrad=True
            ),
        ),
        ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.5, weight_decay=0.1)),
        (
            "adopt",
            lambda ps: ADOPT(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1, decouple=True),
        ),
    ],
)
def test_registry_equals_torch_classes(name: str, reference) -> None:
    cfg = OptimConfig(name=name, lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.1, momentum=0.5)
    a, b = _model(), _model()
    opt_a, opt_b = build_optimizer(cfg, a.parameters()), reference(b.parameters())
    assert type(opt_a) is type(opt_b)
    assert opt_a.defaults == opt_b.defaults
    _train(a, opt_a)
    _train(b, opt_b)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_adopt_config_mapping() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(OptimConfig(name="adopt", weight_decay=0.1, decouple=False, clip=False), params)
    group = opt.param_groups[0]
    assert group["clip_lambda"] is None and group["decouple"] is False and group["weight_decay"] == 0.1
    opt = build_optimizer(OptimConfig(name="adopt"), params)
    assert opt.param_groups[0]["clip_lambda"] is default_clip_lambda
    assert opt.param_groups[0]["decouple"] is True
    assert opt.param_groups[0]["betas"] == (0.9, 0.999) and opt.param_groups[0]["eps"] == 1e-8


def test_unknown_name() -> None:
    with pytest.raises(ValueError) as info:
        OptimConfig(name="adom")
    assert str(info.value) == UNKNOWN
    assert isinstance(info.value, XlabError)  # the CLI prints it as a one-line error
    with pytest.raises(ValueError, match="'adom' is not a known optimizer; choose one of: adam, adamw"):
        make_optimizer("adom", [torch.nn.Parameter(torch.zeros(1))])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lr", -1.0, "optim.lr=-1.0 must be >= 0"),
        ("beta1", 1.0, r"optim.beta1=1.0 must be in \[0, 1\)"),
        ("beta2", -0.5, r"optim.beta2=-0.5 must be in \[0, 1\)"),
        ("eps", float("nan"), "optim.eps=nan must be >= 0"),
        ("momentum", -0.1, "optim.momentum=-0.1 must be >= 0"),
    ],
)
def test_config_validation(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OptimConfig(**{field: value})


def test_fields_are_documented() -> None:
    source = dataclasses.fields(OptimConfig)
    assert [f.name for f in source] == [
        "name",
        "lr",
        "beta1",
        "beta2",
        "eps",
        "weight_decay",
        "decouple",
        "clip",
        "momentum",
    ]
    text = inspect.getsource(OptimConfig)
    for f in source:  # a docstring line right after each field is what tyro shows in --help
        line = next(i for i, ln in enumerate(text.splitlines()) if ln.strip().startswith(f"{f.name}:"))
        assert text.splitlines()[line + 1].strip().startswith('"""'), f.name


@pytest.fixture
def restore_registry() -> Iterator[None]:
    saved = copy.copy(OPTIMIZERS)
    yield
    OPTIMIZERS.clear()
    OPTIMIZERS.update(saved)


def test_register_optimizer(restore_registry: None) -> None:
    @register_optimizer("plain_sgd")
    class PlainSGD(torch.optim.SGD):
        def __init__(self, params, lr: float = 0.1) -> None:
            super().__init__(params, lr=lr)

    assert OPTIMIZERS["plain_sgd"] is PlainSGD
    assert "plain_sgd" in available_optimizers()
    # The generic adapter passes only the fields the constructor accepts (here: lr).
    opt = build_optimizer(
        OptimConfig(name="plain_sgd", lr=0.5, momentum=0.9), [torch.nn.Parameter(torch.zeros(1))]
    )
    assert (
        isinstance(opt, PlainSGD)
        and opt.param_groups[0]["lr"] == 0.5
        and opt.param_groups[0]["momentum"] == 0
    )

    def lion(params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99)) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr)

    register_optimizer("lion", lion, from_config=lambda cfg: {"lr": cfg.lr * 2})
    opt = build_optimizer(OptimConfig(name="lion", lr=0.25), [torch.nn.Parameter(torch.zeros(1))])
    assert opt.param_groups[0]["lr"] == 0.5
    assert "lion" in str(pytest.raises(ValueError, OptimConfig, name="nope").value)
