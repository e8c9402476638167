"""eval_policy through the network path: simulators as WebSocket clients give the handle path's episodes."""

from __future__ import annotations

import numpy as np
import pytest

from jobs import eval_policy
from xlab.config import apply_overrides


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    import torch

    from xlab.policies import build_policy

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ws_eval") / "tiny"
    build_policy("rt1x-tiny", image_size=32).save_pretrained(path)
    return str(path)


@pytest.mark.slow  # two evaluations, a Serve restart with its HTTP proxy: ~2.5 min on 2 cores
def test_websocket_transport_matches_handle_transport(ray_local, policy_dir):
    """Same seeds, same policy: every episode's success, length and recorded frames are identical."""
    runs = {}
    for transport in ("handle", "websocket"):
        cfg = apply_overrides(
            eval_policy.PRESETS["smoke"],
            {
                "policy": policy_dir,
                "eval.tasks": ["xlab/fetch-reach-v0", "xlab/sawyer-reach-v0"],
                "eval.episodes": 2,
                "eval.num_simulators": 2,
                "eval.max_steps": 8,
                "eval.references": [],
                "eval.strips_per_task": 2,
                "eval.transport": transport,
                "server.num_cpus": 0.5,
                "server.batch_wait_ms": 100,
            },
        )
        runs[transport] = {r.episode_id: r for r in eval_policy.main(cfg)["results"]}
    handle, socket = runs["handle"], runs["websocket"]
    assert sorted(handle) == sorted(socket) and len(handle) == 4
    for eid, h in handle.items():
        w = socket[eid]
        assert (
            (w.status, w.success, w.steps) == (h.status, h.success, h.steps) == ("ok", h.success, h.steps)
        ), eid
        np.testing.assert_array_equal(w.frames, h.frames, err_msg=eid)  # the same trajectory, frame by frame
        assert len(w.latencies_ms) == w.steps
