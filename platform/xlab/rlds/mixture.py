"""Weighted dataset mixtures: named lists of (dataset, weight), sampled deterministically by seed.

A :class:`Mixture` says which share of training windows each dataset contributes (weights are
normalised to probabilities). Named mixtures live in a registry; ``rtx`` is the RT-1-X
notebook's mixture::

    from xlab.rlds import get_mixture, register_mixture, MixtureSampler
    register_mixture("sim", [("metaworld_reach", 2.0), ("metaworld_pick", 1.0)])
    m = get_mixture("sim")
    sampler = MixtureSampler({"metaworld_reach": 1200, "metaworld_pick": 800}, m, seed=0)
    for dataset, index in sampler.sample(1000): ...    # (name, window index) pairs

Two ways of applying weights, both deterministic by seed:

* :class:`MixtureSampler` draws a dataset by weight, then a window uniformly within it (with
  replacement) -- for in-memory window tables and tests.
* :func:`sampling_rates` gives each dataset an expected number of copies per window
  (``rate_i = p_i * total_windows / windows_i``) so that a single pass over all data, emitting
  ``floor(rate)`` copies plus one more with probability ``frac(rate)``, yields shares ``p_i``
  with the pass length unchanged. Over-weighted small datasets are repeated, under-weighted
  large ones subsampled. The Ray Data pipeline (:mod:`xlab.rlds.ray_source`) applies this
  inside each shard's read task, so mixing streams without any global shuffle or materialisation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from xlab.rlds.schema import RLDSError


class UnknownMixtureError(RLDSError, KeyError):
    """No mixture is registered under a name."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A named list of ``(dataset, weight)``; weights are relative (normalised by :meth:`probabilities`)."""

    name: str
    components: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        comps = tuple((str(d), float(w)) for d, w in self.components)
        if not comps:
            raise RLDSError(f"mixture {self.name!r} has no datasets")
        names = [d for d, _ in comps]
        if len(set(names)) != len(names):
            raise RLDSError(f"mixture {self.name!r} lists a dataset twice: {names}")
        if any(w < 0 or not np.isfinite(w) for _, w in comps) or sum(w for _, w in comps) <= 0:
            raise RLDSError(
                f"mixture {self.name!r} needs finite weights >= 0 with a positive sum, got {comps}"
            )
        object.__setattr__(self, "components", comps)

    @property
    def datasets(self) -> list[str]:
        return [d for d, _ in self.components]

    def probabilities(self) -> dict[str, float]:
        total = sum(w for _, w in self.components)
        return {d: w / total for d, w in self.components}


MIXTURES: dict[str, Mixture] = {}


def register_mixture(name: str, components: Sequence[tuple[str, float]]) -> Mixture:
    """Register (or replace) a named mixture; returns it."""
    mix = Mixture(name, tuple(components))
    MIXTURES[name] = mix
    return mix


def get_mixture(mixture: str | Mixture | Sequence[tuple[str, float]]) -> Mixture:
    """A registered mixture by name; a :class:`Mixture` or a ``[(dataset, weight)]`` list passes through."""
    if isinstance(mixture, Mixture):
        return mixture
    if isinstance(mixture, str):
        try:
            return MIXTURES[mixture]
        except KeyError:
            raise UnknownMixtureError(
                f"unknown mixture {mixture!r}; registered: {sorted(MIXTURES)}"
            ) from None
    return Mixture("custom", tuple(mixture))


# RT-1-X training mixture from the Open X-Embodiment notebook (dataset names as on GCS).
register_mixture(
    "rtx",
    [
        ("fractal20220817_data", 150.0),
        ("bridge", 50.0),
        ("jaco_play", 20.0),
        ("berkeley_cable_routing", 20.0),
        ("roboturk", 10.0),
        ("taco_play", 5.0),
        ("nyu_door_opening_surprising_effectiveness", 5.0),
        ("berkeley_autolab_ur5", 5.0),
        ("toto", 5.0),
        ("viola", 3.0),
    ],
)


def sampling_rates(sizes: Mapping[str, int], mixture: Mixture) -> dict[str, float]:
    """Expected copies per window of each dataset so that one pass yields the mixture's shares.

    ``sizes`` maps dataset -> number of windows (= steps). Datasets of weight 0 get rate 0.
    """
    probs = mixture.probabilities()
    missing = [d for d in probs if d not in sizes]
    if missing:
        raise RLDSError(f"mixture {mixture.name!r}: no size known for {missing}")
    empty = [d for d, p in probs.items() if p > 0 and sizes[d] <= 0]
    if empty:
        raise RLDSError(f"mixture {mixture.name!r}: datasets {empty} have weight but no windows")
    total = sum(sizes[d] for d in probs)
    return {d: (p * total / sizes[d] if p > 0 else 0.0) for d, p in probs.items()}


def copies_per_window(rate: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``floor(rate)`` copies each, plus one more with probability ``frac(rate)`` (int64 ``[n]``)."""
    base = int(np.floor(rate))
    return base + (rng.random(n) < (rate - base)).astype(np.int64)


class MixtureSampler:
    """Draw ``(dataset, window_index)`` pairs: dataset by weight, window uniformly within it."""

    def __init__(
        self, sizes: Mapping[str, int], mixture: Mixture | str | Sequence[tuple[str, float]], seed: int = 0
    ):
        self.mixture = get_mixture(mixture)
        probs = self.mixture.probabilities()
        missing = [d for d in probs if d not in sizes]
        if missing:
            raise RLDSError(f"mixture {self.mixture.name!r}: no size known for {missing}")
        self.datasets = [d for d in probs if probs[d] > 0]
        empty = [d for d in self.datasets if sizes[d] <= 0]
        if empty:
            raise RLDSError(f"mixture {self.mixture.name!r}: datasets {empty} have weight but no windows")
        self.sizes = np.array([sizes[d] for d in self.datasets], np.int64)
        self.p = np.array([probs[d] for d in self.datasets], np.float64)
        self.p /= self.p.sum()
        self.rng = np.random.default_rng(seed)

    def sample_indices(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(dataset_index [n], window_index [n])`` for the next ``n`` draws."""
        ds = self.rng.choice(len(self.datasets), size=n, p=self.p)
        win = np.floor(self.rng.random(n) * self.sizes[ds]).astype(np.int64)
        return ds, win

    def sample(self, n: int) -> list[tuple[str, int]]:
        """The next ``n`` draws as ``(dataset name, window index)``."""
        ds, win = self.sample_indices(n)
        return [(self.datasets[d], int(w)) for d, w in zip(ds, win, strict=True)]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        while True:
            yield from self.sample(1024)
