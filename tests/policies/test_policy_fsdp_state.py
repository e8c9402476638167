"""The FSDP path of the policy workers (one gloo process on CPU): the checkpointed state is the plain
policy's, gathered with torch's ``get_state_dict`` (full, on CPU), and it loads back (weights only)."""

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from xlab.checkpoint import load_checkpoint, save_checkpoint
from xlab.policies import build_policy
from xlab.policies.training import _loss_module
from xlab.train.distributed import full_state_dicts, load_optimizer_state


def _batch(policy: torch.nn.Module, n: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, size = int(policy.config.history), int(policy.config.image_size)
    return {
        "image": torch.randint(0, 256, (n, h, size, size, 3), dtype=torch.uint8, generator=g),
        "pad_mask": torch.ones(n, h, dtype=torch.bool),
        "window_tokens": torch.randint(0, 256, (n, h, 11), generator=g),
        "embedding": torch.randn(n, int(policy.config.embed_dim), generator=g),
    }


def test_fsdp_policy_checkpoint_is_the_plain_policy_state(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        policy = build_policy("rt1x-tiny", image_size=32, history=2)
        net = FSDP(_loss_module(policy), device_id=torch.device("cpu"))  # what the worker wraps
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        loss, _ = net(_batch(policy))
        loss.backward()
        opt.step()

        model_state, optim_state = full_state_dicts(net, policy, opt, fsdp=True, prefix="policy.")
        fresh = build_policy("rt1x-tiny", image_size=32, history=2)
        # A plain policy's names (FSDP has flattened the wrapped policy's own parameters away).
        assert model_state.keys() == fresh.state_dict().keys()
        save_checkpoint({"policy": model_state, "optimizer": optim_state}, tmp_path / "state.pt")
        state = load_checkpoint(tmp_path / "state.pt", map_location="cpu")  # torch.load(weights_only=True)

        fresh.load_state_dict(state["policy"])
        for k, v in net.state_dict().items():  # FSDP's own full view of the trained weights
            assert torch.equal(fresh.state_dict()[k.removeprefix("policy.")], v), k
        net2 = FSDP(_loss_module(fresh), device_id=torch.device("cpu"))
        opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-3)
        load_optimizer_state(net2, opt2, state["optimizer"], fsdp=True)
        assert len(opt2.state_dict()["state"]) == len(opt.state_dict()["state"]) > 0
    finally:
        dist.destroy_process_group()
