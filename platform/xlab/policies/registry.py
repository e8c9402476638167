"""Named policy presets and the builder the training job and the evaluators use.

::

    from xlab.policies import POLICIES, build_policy
    policy = build_policy("rt1x-small", dropout=0.0)   # preset + RT1Config field overrides
    sorted(POLICIES)       # ['rt1', 'rt1x', 'rt1x-demo', 'rt1x-small', 'rt1x-tiny']

Presets (``POLICIES`` maps each name to its :class:`~xlab.policies.rt1.RT1Config`):

* ``rt1x-tiny`` -- unit tests and smoke runs: 32x32 images, history 2, d_model 64, 2 layers.
* ``rt1x-small`` -- CPU training: 64x64 images, history 4, small FiLM conv net, d_model 128,
  4 layers, 8 image tokens per frame.
* ``rt1x-demo`` -- what ``make demo`` trains on 2 CPU cores in minutes: ``rt1x-tiny`` at 64x64 (the
  goal markers need the pixels) with 4-step action chunks (the measured recipe, README).
* ``rt1`` -- RT-1 as in google-research/robotics_transformer (TF): EfficientNet-B3 + FiLM (random
  init, no ImageNet weights here), 300x300, history 6, TokenLearner 8 tokens, 8 layers x 8 heads of
  128 on a 512 width, a linear (one Dense) feed-forward, dropout 0.1, 256 bins, RT-1 bounds.
* ``rt1x`` -- RT-1-X as in google-deepmind/open_x_embodiment (JAX): EfficientNet-B3 + FiLM, 300x300,
  history 15, no TokenLearner (every feature-map cell a token: 10x10 here, 9x9 = 81 in the release),
  8 layers x 8 heads of 256, SwiGLU feed-forward, 512 bins, RT-1-X bounds.

The two reference presets keep the references' choices (no image position embedding, one action per
frame); the CPU presets add what measured better here (see the README's ablation table).
:func:`register_policy` adds a preset (e.g. from a project's own module).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xlab.errors import XlabError
from xlab.policies.rt1 import RT1Config, RT1Policy


class UnknownPolicyError(XlabError):
    """A policy name that is not a registered preset, or an override that is not a config field."""


POLICIES: dict[str, RT1Config] = {
    "rt1x-tiny": RT1Config(
        name="rt1x-tiny", image_size=32, history=2, backbone="small-film", film_channels=(16, 32),
        num_image_tokens=4, d_model=64, num_layers=2, num_heads=2, ff_dim=128, dropout=0.0,
        token_learner_hidden=32,
    ),
    "rt1x-small": RT1Config(
        name="rt1x-small", image_size=64, history=4, backbone="small-film", film_channels=(32, 64, 128),
        num_image_tokens=8, d_model=128, num_layers=4, num_heads=4, ff_dim=512, dropout=0.1,
    ),
    "rt1x-demo": RT1Config(
        name="rt1x-demo", image_size=64, history=2, backbone="small-film", film_channels=(16, 32),
        num_image_tokens=4, d_model=64, num_layers=2, num_heads=2, ff_dim=128, dropout=0.0,
        token_learner_hidden=32, action_chunk=4,
    ),
    "rt1": RT1Config(
        name="rt1", image_size=300, history=6, backbone="efficientnet-b3-film", num_image_tokens=8,
        d_model=512, num_layers=8, num_heads=8, head_dim=128, ff_dim=512, feed_forward="linear", dropout=0.1,
        bounds="rt1", image_pos_embedding=False,
    ),
    "rt1x": RT1Config(
        name="rt1x", image_size=300, history=15, backbone="efficientnet-b3-film", num_image_tokens=0,
        d_model=512, num_layers=8, num_heads=8, head_dim=256, ff_dim=512, feed_forward="swiglu", dropout=0.1,
        vocab_size=512, image_pos_embedding=False,
    ),
}


def register_policy(name: str, config: RT1Config, overwrite: bool = False) -> None:
    """Add a named preset; re-registering a name needs ``overwrite=True``."""
    if name in POLICIES and not overwrite:
        raise XlabError(f"policy preset {name!r} is already registered (pass overwrite=True to replace it)")
    POLICIES[name] = dataclasses.replace(config, name=name)


def policy_config(name: str, **overrides: Any) -> RT1Config:
    """The preset's config with ``overrides`` applied (any :class:`RT1Config` field)."""
    if name not in POLICIES:
        raise UnknownPolicyError(f"unknown policy {name!r}; presets: {', '.join(sorted(POLICIES))}")
    fields = {f.name for f in dataclasses.fields(RT1Config)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise UnknownPolicyError(f"unknown RT1Config override(s) {bad} for {name!r}; fields: {sorted(fields)}")
    return dataclasses.replace(POLICIES[name], **overrides)


def build_policy(name: str, **overrides: Any) -> RT1Policy:
    """A freshly initialized :class:`RT1Policy` from preset ``name`` with config ``overrides``."""
    return RT1Policy(policy_config(name, **overrides))
