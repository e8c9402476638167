"""The FSDP path of the pretraining workers (one gloo process on CPU): sharded training through the
shared loop, full state dicts for checkpoints, optimizer state restored into a fresh FSDP model."""

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from xlab.lm.loop import build_optimizer_and_schedule, train_steps
from xlab.lm.packing import iter_block_batches
from xlab.lm.pretrain import ModelSpec, PretrainConfig, _fsdp_kwargs
from xlab.train.distributed import full_state_dicts, load_optimizer_state


def test_fsdp_trains_checkpoints_and_restores(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        spec = ModelSpec("llama", "tiny", vocab_size=300, n_ctx=32)
        model = spec.build()
        net = FSDP(model, device_id=torch.device("cpu"), **_fsdp_kwargs(model))
        # One FSDP unit per transformer block, plus the root.
        assert sum(isinstance(m, FSDP) for m in net.modules()) == 1 + model.config.num_hidden_layers
        cfg = PretrainConfig(steps=12, batch_size=4, block_size=32, log_every=6, lr=3e-3, parallel_strategy="fsdp")
        opt, sched = build_optimizer_and_schedule(net, cfg)
        blocks = np.tile(np.arange(32, dtype=np.int32) % 7, (16, 1))  # a pattern FSDP must learn
        hist = train_steps(model, iter_block_batches(blocks, 4), cfg, optimizer=opt, scheduler=sched, net=net)
        assert hist[-1]["train/loss"] < hist[0]["train/loss"]
        model_state, optim_state = full_state_dicts(net, model, opt, fsdp=True)
        fresh = spec.build()
        fresh.load_state_dict(model_state)  # full, unsharded names: loads into a plain transformers model
        net2 = FSDP(fresh, device_id=torch.device("cpu"), **_fsdp_kwargs(fresh))
        opt2, _ = build_optimizer_and_schedule(net2, cfg)
        load_optimizer_state(net2, opt2, optim_state, fsdp=True)
        assert len(opt2.state_dict()["state"]) == len(opt.state_dict()["state"]) > 0
    finally:
        dist.destroy_process_group()
