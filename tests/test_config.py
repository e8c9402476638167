"""Configs: presets, dotted overrides from the CLI and from Tune, clear errors."""

import dataclasses
from typing import Literal

import pytest

from xlab.config import JobConfig, apply_overrides, check, flatten, overrides_to_args, parse_config
from xlab.errors import XlabError


@dataclasses.dataclass
class Optim:
    name: Literal["adam", "adopt"] = "adam"
    lr: float = 1e-3
    clip: bool = True

    def __post_init__(self):
        check(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")


@dataclasses.dataclass
class Cfg(JobConfig):
    optim: Optim = dataclasses.field(default_factory=Optim)
    betas: tuple[float, ...] = (0.1, 0.5)


PRESETS = {"smoke": Cfg(seed=3), "paper": Cfg(seed=4, betas=(0.9,), optim=Optim(lr=3e-4))}


def test_default_preset_is_smoke_and_recorded():
    cfg = parse_config(Cfg, PRESETS, [], "t")
    assert cfg.preset == "smoke" and cfg.seed == 3


def test_preset_and_overrides():
    cfg = parse_config(Cfg, PRESETS, ["--preset", "paper", "--optim.lr", "0.01", "--optim.clip", "False",
                                      "--betas", "0.2", "0.3", "--optim.name", "adopt"], "t")
    assert cfg.preset == "paper" and cfg.seed == 4
    assert cfg.optim == Optim(name="adopt", lr=0.01, clip=False)
    assert cfg.betas == (0.2, 0.3)
    assert parse_config(Cfg, PRESETS, ["--preset=paper"], "t").optim.lr == 3e-4


def test_tune_overrides_use_the_same_names():
    base = PRESETS["smoke"]
    cfg = apply_overrides(base, {"optim.lr": 0.5, "optim.clip": False, "betas": [0.7], "ray.num_cpus": 2})
    assert cfg.optim.lr == 0.5 and cfg.optim.clip is False and cfg.betas == (0.7,) and cfg.ray.num_cpus == 2
    assert base.optim.lr == 1e-3  # the base config is not mutated
    assert overrides_to_args({"a.b": [1, 2], "c": "x"}) == ["--a.b", "1", "2", "--c", "x"]
    assert apply_overrides(base, {}) is base


def test_flatten_uses_dotted_names():
    flat = flatten(PRESETS["smoke"])
    assert flat["optim.lr"] == 1e-3 and flat["betas"] == [0.1, 0.5] and flat["tracking.uri"] is None


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--preset", "huge"], "unknown preset 'huge'; choose one of: smoke, paper"),
        (["--optim.lrr", "3"], "--optim.lrr"),
        (["--optim.name", "sgd"], "'adam', 'adopt'"),
        (["--seed", "x"], "--seed"),
        (["--preset"], "--preset needs a value"),
    ],
)
def test_errors_name_the_field(argv, needle):
    with pytest.raises(XlabError) as e:
        parse_config(Cfg, PRESETS, argv, "xlab run t")
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_validation_in_post_init_names_the_field():
    with pytest.raises(XlabError, match=r"optim\.lr: must be > 0"):
        parse_config(Cfg, PRESETS, ["--optim.lr", "-1"], "t")
    with pytest.raises(XlabError, match="optim.lrr"):
        apply_overrides(PRESETS["smoke"], {"optim.lrr": 1})
