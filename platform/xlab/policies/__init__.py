"""Robot policies: RT-1 / RT-1-X and a registry of named presets.

::

    from xlab.policies import build_policy, load_policy, HistoryBuffer
    policy = build_policy("rt1x-small")               # presets: rt1x-tiny, rt1x-small, rt1x-paper
    loss, metrics = policy.loss(batch)                # training on window batches
    action = policy.act(images, embedding)            # inference: RT-1 action dict, numpy [B, ...]
    policy.save_pretrained("ckpt"); policy = load_policy("ckpt")

Modules: :mod:`~xlab.policies.rt1` (config, policy, checkpoints), :mod:`~xlab.policies.session` (history
buffers, step-by-step control), :mod:`~xlab.policies.chunking` (action chunk execution),
:mod:`~xlab.policies.registry` (presets), :mod:`~xlab.policies.film` (FiLM, small conv net),
:mod:`~xlab.policies.efficientnet` (EfficientNet-B3 + FiLM), :mod:`~xlab.policies.token_learner`,
:mod:`~xlab.policies.transformer` (RT-1 attention mask and decoder).
"""

from xlab.policies.registry import POLICIES, UnknownPolicyError, build_policy, policy_config, register_policy
from xlab.policies.rt1 import PolicyError, RT1Config, RT1Policy, load_policy
from xlab.policies.session import HistoryBuffer, PolicySession, fit_state
from xlab.policies.transformer import rt1_attention_mask

__all__ = [
    "POLICIES",
    "HistoryBuffer",
    "PolicyError",
    "PolicySession",
    "RT1Config",
    "RT1Policy",
    "UnknownPolicyError",
    "build_policy",
    "fit_state",
    "load_policy",
    "policy_config",
    "register_policy",
    "rt1_attention_mask",
]
