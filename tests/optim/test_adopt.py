"""ADOPT against a plain re-derivation of the paper's update, and its implementations against each other."""

from __future__ import annotations

import copy
import io
import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from xlab.optim import ADOPT, default_clip_lambda

SHAPES = [(5, 3), (7,), (2, 3, 4), (1,), (4, 4)]


def reference_adopt(
    theta0: np.ndarray,
    grads: list[np.ndarray],
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.9999),
    eps: float = 1e-6,
    clip: Callable[[int], float] | None = lambda s: s**0.25,
    weight_decay: float = 0.0,
    decouple: bool = False,
    maximize: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The update rule written out in numpy, element by element, in float64.

    ``grads[t]`` is the loss gradient at the t-th call (taken as given: it does not depend on theta).
    """
    beta1, beta2 = betas
    theta = theta0.astype(np.float64).ravel().copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    s = 0
    for grad in grads:
        g = grad.astype(np.float64).ravel().copy()
        if maximize:
            g = -g
        for j in range(theta.size):
            gj = g[j]
            if weight_decay and not decouple:
                gj = gj + weight_decay * theta[j]
            if s == 0:
                v[j] = gj * gj
                continue
            if weight_decay and decouple:
                theta[j] = theta[j] - lr * weight_decay * theta[j]
            n = gj / max(math.sqrt(v[j]), eps)
            if clip is not None:
                c = clip(s)
                n = min(max(n, -c), c)
            m[j] = beta1 * m[j] + (1 - beta1) * n
            theta[j] = theta[j] - lr * m[j]
            v[j] = beta2 * v[j] + (1 - beta2) * gj * gj
        s += 1
    shape = theta0.shape
    return theta.reshape(shape), m.reshape(shape), v.reshape(shape)


CASES = {
    "clip": dict(),
    "no-clip": dict(clip_lambda=None),
    "l2": dict(weight_decay=0.1),
    "decoupled": dict(weight_decay=0.1, decouple=True),
    "maximize": dict(maximize=True, weight_decay=0.05),
    "betas-eps": dict(betas=(0.5, 0.9), eps=0.3, lr=0.05),
}


def _ref_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    if "clip_lambda" in out:
        out["clip"] = out.pop("clip_lambda")
    return out


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference_formulas(case: str, foreach: bool) -> None:
    kwargs = dict(lr=0.01, **CASES[case]) if "lr" not in CASES[case] else dict(CASES[case])
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=(3, 4))
    # Large gradients at step 3 make the clip bound bite (|g / sqrt(v)| >> s**0.25).
    grads = [rng.normal(size=(3, 4)) * (30.0 if t == 3 else 1.0) for t in range(6)]

    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = ADOPT([p], foreach=foreach, **kwargs)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()

    _assert_matches_reference(opt, p, theta0, grads, kwargs)
    state = opt.state[p]
    assert state["step"].dtype == torch.float32 and state["step"].shape == ()


def _assert_matches_reference(
    opt: ADOPT, p: torch.Tensor, theta0: np.ndarray, grads: list[np.ndarray], kwargs: dict[str, Any]
) -> None:
    """``p`` and its state after ``grads`` equal the float64 formulas to 1e-12 relative."""
    theta, m, v = reference_adopt(theta0, grads, **_ref_kwargs(kwargs))
    state = opt.state[p]
    np.testing.assert_allclose(p.detach().numpy(), theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state["exp_avg"].numpy(), m, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state["exp_avg_sq"].numpy(), v, rtol=1e-12, atol=1e-14)
    assert state["step"].item() == len(grads)


def test_clip_is_active_in_reference_case() -> None:
    """Guard for the test above: the clipped and unclipped trajectories really differ."""
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) * (30.0 if t == 3 else 1.0) for t in range(6)]
    clipped, _, _ = reference_adopt(theta0, grads, lr=0.01)
    unclipped, _, _ = reference_adopt(theta0, grads, lr=0.01, clip=None)
    assert np.abs(clipped - unclipped).max() > 1e-3


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("kwargs", [dict(), dict(weight_decay=0.1, decouple=True), dict(weight_decay=0.1)])
def test_first_step_only_initialises_v(foreach: bool, kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4, 3))
    before = p.detach().clone()
    g = torch.randn(4, 3)
    p.grad = g.clone()
    opt = ADOPT([p], lr=0.1, foreach=foreach, **kwargs)
    opt.step()
    torch.testing.assert_close(p.detach(), before, rtol=0, atol=0)
    g_eff = g + kwargs["weight_decay"] * before if kwargs and not kwargs.get("decouple") else g
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], g_eff * g_eff)
    assert torch.count_nonzero(opt.state[p]["exp_avg"]) == 0
    assert opt.state[p]["step"].item() == 1
    assert torch.equal(p.grad, g)  # the gradient itself is never modified


def _random_problem(
    mode: str,
    *,
    steps: int = 7,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    seed: int = 0,
    **kwargs: Any,
) -> tuple[list[torch.Tensor], ADOPT]:
    """Run ``steps`` steps on tensors of several shapes; tensor 2 gets its first gradient at step 3,
    tensor 4 lives in a second param group and gets none at step 5."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype).to(device)) for s in SHAPES]
    groups = [{"params": params[:4]}, {"params": params[4:], "lr": 0.02}]
    mode_kwargs = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
    opt = ADOPT(groups, lr=0.01, **mode_kwargs[mode], **kwargs)
    for t in range(steps):
        for i, p in enumerate(params):
            g = torch.randn(p.shape, generator=gen, dtype=dtype) * (20.0 if t == 4 else 1.0)
            p.grad = g.to(device)
            if (i == 2 and t < 3) or (i == 4 and t == 5):
                p.grad = None
        opt.step()
    return [p.detach().cpu() for p in params], opt


VARIANTS = [
    dict(),
    dict(clip_lambda=None),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, decouple=True),
    dict(maximize=True, betas=(0.8, 0.99)),
]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=["clip", "no-clip", "l2", "decoupled", "maximize"])
def test_loop_and_foreach_agree(kwargs: dict[str, Any]) -> None:
    loop, opt_loop = _random_problem("loop", **kwargs)
    each, opt_each = _random_problem("foreach", **kwargs)
    for a, b in zip(loop, each, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for p_loop, p_each in zip(
        opt_loop.param_groups[0]["params"], opt_each.param_groups[0]["params"], strict=True
    ):
        assert opt_loop.state[p_loop]["step"].item() == opt_each.state[p_each]["step"].item()


def test_late_tensor_is_initialised_not_divided_by_eps() -> None:
    """A tensor whose first gradient arrives when the rest of its group is mid-training.

    The reference implementation reads the group's first step count and so updates this tensor with
    v = 0 (a step of size ~lr * clip); the correct behaviour leaves it unchanged on its first call.
    """
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(3))
    b = torch.nn.Parameter(torch.randn(3))
    for foreach in (False, True):
        a_, b_ = copy.deepcopy(a), copy.deepcopy(b)
        opt = ADOPT([a_, b_], lr=0.1, foreach=foreach)
        for _ in range(3):
            a_.grad = torch.randn(3)
            opt.step()
        b_before = b_.detach().clone()
        a_.grad, b_.grad = torch.randn(3), torch.randn(3)
        opt.step()
        torch.testing.assert_close(b_.detach(), b_before, rtol=0, atol=0)
        torch.testing.assert_close(opt.state[b_]["exp_avg_sq"], b_.grad * b_.grad)
        assert opt.state[a_]["step"].item() == 4 and opt.state[b_]["step"].item() == 1


def test_foreach_mixed_dtypes_and_complex() -> None:
    def run(foreach: bool) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(3)
        params = [
            torch.nn.Parameter(torch.randn(4, generator=gen)),
            torch.nn.Parameter(torch.randn(4, generator=gen, dtype=torch.float64)),
            torch.nn.Parameter(torch.randn(3, generator=gen, dtype=torch.complex64)),
        ]
        opt = ADOPT(params, lr=0.05, weight_decay=0.01, foreach=foreach)
        for _ in range(4):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        return [p.detach() for p in params]

    for a, b in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_foreach_default_is_loop_on_cpu_and_tensor_lr() -> None:
    ref, _ = _random_problem("loop")
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    opt = ADOPT(
        [{"params": params[:4]}, {"params": params[4:], "lr": torch.tensor(0.02)}], lr=torch.tensor(0.01)
    )
    assert opt.param_groups[0]["foreach"] is None
    for t in range(7):
        for i, p in enumerate(params):
            p.grad = torch.randn(p.shape, generator=gen) * (20.0 if t == 4 else 1.0)
            if (i == 2 and t < 3) or (i == 4 and t == 5):
                p.grad = None
        opt.step()
    for a, b in zip(ref, params, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-6)


def test_capturable_matches_loop() -> None:
    ref, _ = _random_problem("loop", weight_decay=0.1, decouple=True)
    for mode in ("loop", "foreach"):
        out, opt = _random_problem(mode, capturable=True, weight_decay=0.1, decouple=True)
        for a, b in zip(ref, out, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        p0 = opt.param_groups[0]["params"][0]
        assert opt.state[p0]["step"].device == p0.device


def test_fused_on_cpu_is_a_clear_error() -> None:
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match="fused=True.*needs CUDA"):
        ADOPT([p], fused=True)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@CUDA
@pytest.mark.parametrize(
    "kwargs",
    [dict(weight_decay=0.1, decouple=True), dict(clip_lambda=None, weight_decay=0.1), dict(maximize=True)],
    ids=["clip-decoupled", "no-clip-l2", "maximize"],
)
def test_fused_and_foreach_on_cuda_agree_with_loop_on_cpu(kwargs: dict[str, Any]) -> None:
    from torch._dynamo.utils import counters

    ref, _ = _random_problem("loop", **kwargs)
    graphs_before = counters["stats"]["unique_graphs"]
    for mode in ("foreach", "fused"):
        out, opt = _random_problem(mode, device="cuda", **kwargs)
        for a, b in zip(ref, out, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert counters["stats"]["unique_graphs"] > graphs_before  # the fused path really compiled
    p0 = opt.param_groups[0]["params"][0]
    assert opt.state[p0]["step"].is_cuda and opt.state[p0]["step"].item() == 7


@CUDA
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_capturable_step_replays_in_a_cuda_graph(foreach: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    host = [torch.randn(s, generator=gen) for s in SHAPES]
    grads = [[torch.randn(s, generator=gen) for s in SHAPES] for _ in range(6)]

    ref = [torch.nn.Parameter(t.clone()) for t in host]
    ref_opt = ADOPT(ref, lr=0.01, weight_decay=0.1, decouple=True, foreach=False)
    for step_grads in grads:
        for p, g in zip(ref, step_grads, strict=True):
            p.grad = g
        ref_opt.step()

    params = [torch.nn.Parameter(t.cuda()) for t in host]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = ADOPT(params, lr=0.01, weight_decay=0.1, decouple=True, foreach=foreach, capturable=True)

    def load(step_grads: list[torch.Tensor]) -> None:
        for p, g in zip(params, step_grads, strict=True):
            p.grad.copy_(g)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # eager warm-up: the initialising step and one update
        for step_grads in grads[:2]:
            load(step_grads)
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for step_grads in grads[2:]:
        load(step_grads)
        graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(ref, params, strict=True):
        torch.testing.assert_close(a.detach(), b.detach().cpu(), rtol=0, atol=1e-6)
    assert opt.state[params[0]]["step"].item() == len(grads)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=-1.0), "learning rate"),
        (dict(lr=torch.tensor([0.1, 0.2])), "one element"),
        (dict(betas=(1.0, 0.99)), "index 0"),
        (dict(betas=(0.9, -0.1)), "index 1"),
        (dict(eps=-1e-8), "epsilon"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(clip_lambda=2.0), "clip_lambda"),
        (dict(foreach=True, fused=True), "mutually exclusive"),
        (dict(differentiable=True, foreach=True), "differentiable"),
    ],
)
def test_argument_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ADOPT([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_sparse_gradients_rejected() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.zeros(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        ADOPT([p]).step()


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_state_dict_round_trip(foreach: bool) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x, y = torch.randn(32, 6), torch.randn(32, 1)

    def train(m: torch.nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()

    opt = ADOPT(model.parameters(), lr=0.01, weight_decay=0.01, decouple=True, foreach=foreach)
    train(model, opt, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, buffer)

    clone = copy.deepcopy(model)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    clone.load_state_dict(saved["model"])
    opt2 = ADOPT(clone.parameters(), lr=0.01, weight_decay=0.01, decouple=True, foreach=foreach)
    opt2.load_state_dict(saved["optim"])
    assert opt2.param_groups[0]["clip_lambda"] is default_clip_lambda

    train(model, opt, 4)
    train(clone, opt2, 4)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[a][key], opt2.state[b][key])
    assert opt2.state[next(clone.parameters())]["step"].item() == 7


def test_state_dict_keeps_own_clip_lambda_and_optimizer_pickles() -> None:
    p = torch.nn.Parameter(torch.ones(2))
    opt = ADOPT([p], clip_lambda=lambda s: 0.5)
    p.grad = torch.ones(2)
    opt.step()
    sd = opt.state_dict()
    assert "clip_lambda" not in sd["param_groups"][0]
    assert "clip_lambda" in opt.param_groups[0]  # the live group is untouched
    torch.save(sd, io.BytesIO())  # a lambda in the optimizer does not break checkpointing

    fresh = ADOPT([torch.nn.Parameter(torch.ones(2))], clip_lambda=None)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["clip_lambda"] is None
    pickle.dumps(ADOPT([torch.nn.Parameter(torch.ones(2))]))  # the default clip_lambda pickles


def test_parameters_without_grad_are_skipped() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = ADOPT([a, b], lr=0.1)
    for _ in range(3):
        a.grad = torch.ones(2)
        opt.step()
    assert b not in opt.state and torch.equal(b.detach(), torch.ones(2))
    assert not torch.equal(a.detach(), torch.ones(2))


@pytest.mark.parametrize("decouple", [False, True])
def test_differentiable_step_lets_gradients_flow_to_lr(decouple: bool) -> None:
    w0 = torch.randn(3, dtype=torch.float64)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    p = w0.clone().requires_grad_(True).clone()  # non-leaf: autograd records the in-place update
    wd = 0.01 if decouple else 0.0
    opt = ADOPT([p], lr=lr, differentiable=True, weight_decay=wd, decouple=True)
    for _ in range(3):
        p.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
    p.sum().backward()

    # Two real updates with n = 1 (g = 1, v = 1): m = 0.1, then 0.19.
    def final(lr: float) -> torch.Tensor:
        p = w0 * (1 - lr * wd) - lr * 0.1
        return p * (1 - lr * wd) - lr * 0.19

    torch.testing.assert_close(p.detach(), final(0.1))
    h = 1e-6
    expected = ((final(0.1 + h) - final(0.1 - h)) / (2 * h)).sum()
    torch.testing.assert_close(lr.grad, expected)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_converges_on_least_squares(foreach: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(200, 20, generator=gen)
    x_true = torch.randn(20, generator=gen)
    b = a @ x_true
    x = torch.nn.Parameter(torch.zeros(20))
    opt = ADOPT([x], lr=0.05, foreach=foreach)

    def loss() -> torch.Tensor:
        return ((a @ x - b) ** 2).mean()

    first = loss().item()
    for _ in range(500):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < first * 1e-4


# With BLOCK 8, SMALL 4, MIN_PACK 2: 0 and 2 are chunked, 1 is updated alone, 3-5 are packed (4 is
# strided, 3 lags), 6 is large and strided (one chunk in a temporary), 7 is a pack of one, so alone.
BLOCK_SHAPES = [(5, 3), (7,), (2, 3, 4), (1,), (2, 2), (3,), (4, 4), (5,)]
STRIDED = (4, 6)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("case", list(CASES))
def test_cpu_blocks_match_reference_formulas(case: str, foreach: bool, monkeypatch: Any) -> None:
    """The CPU update (xlab.optim.adopt_cpu) with blocks so small that every way a tensor can be
    updated occurs: in chunks, alone, packed with others, strided, with steps lagging the others'."""
    from xlab.optim import adopt_cpu

    monkeypatch.setattr(adopt_cpu, "BLOCK", 8)
    monkeypatch.setattr(adopt_cpu, "SMALL", 4)
    monkeypatch.setattr(adopt_cpu, "MIN_PACK", 2)
    kwargs = dict(lr=0.01, **CASES[case]) if "lr" not in CASES[case] else dict(CASES[case])
    rng = np.random.default_rng(1)
    theta0 = [rng.normal(size=s) for s in BLOCK_SHAPES]
    params = [torch.nn.Parameter(torch.tensor(t)) for t in theta0]
    for i in STRIDED:  # same values, transposed strides
        params[i] = torch.nn.Parameter(torch.tensor(theta0[i].T.copy()).t())
        assert not params[i].is_contiguous()
    opt = ADOPT(params, foreach=foreach, **kwargs)
    received: list[list[np.ndarray]] = [[] for _ in params]
    for t in range(6):
        for i, p in enumerate(params):
            g = rng.normal(size=p.shape) * (30.0 if t == 3 else 1.0)
            p.grad = None if (i in (2, 3) and t < 2) else torch.tensor(g)
            if p.grad is not None:
                received[i].append(g)
        opt.step()

    for p, t0, grads in zip(params, theta0, received, strict=True):
        _assert_matches_reference(opt, p, t0, grads, kwargs)
    buffers = [v for v in opt._cpu_scratch.values() if isinstance(v, torch.Tensor)]
    assert len(buffers) == 1  # one reused scratch buffer for the dtype, not temporaries per step
    if foreach:
        (plans,) = (v for k, v in opt._cpu_scratch.items() if k[0] == "plans")
        kinds = {
            tuple(len(x) for x in plan[:2]) + tuple(len(pack[0]) for pack in plan.packs)
            for plan in plans.values()
        }
        assert (3, 2, 3) in kinds  # 3 large, 2 alone, one pack of 3: the case the comment above describes


@pytest.mark.parametrize("kwargs", VARIANTS, ids=["clip", "no-clip", "l2", "decoupled", "maximize"])
def test_cpu_blocks_agree_with_whole_tensor_foreach(kwargs: dict[str, Any], monkeypatch: Any) -> None:
    """Chunked CPU paths against the whole-tensor foreach path (what runs off the CPU, here taken
    with capturable=True), float32, tensors split across blocks."""
    from xlab.optim import adopt_cpu

    ref, _ = _random_problem("foreach", capturable=True, **kwargs)
    monkeypatch.setattr(adopt_cpu, "BLOCK", 8)  # SHAPES: 0, 2 and 4 in chunks, 1 and 3 packed
    monkeypatch.setattr(adopt_cpu, "SMALL", 7)
    monkeypatch.setattr(adopt_cpu, "MIN_PACK", 2)
    for mode in ("loop", "foreach"):
        out, _ = _random_problem(mode, **kwargs)
        for a, b in zip(ref, out, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("eps", [1e-6, 0.0], ids=["eps", "eps-0"])
def test_cpu_blocks_floor_a_zero_second_moment_at_eps(eps: float, monkeypatch: Any) -> None:
    """Where v is 0 (a first gradient of zeros) the CPU paths' ``g * min(rsqrt(v), 1/eps)`` gives
    the reference's ``g / max(sqrt(v), eps)``: ``g / eps``, and with eps = 0 the same inf and nan.
    Shapes hit the chunked, alone and packed updates."""
    from xlab.optim import adopt_cpu

    monkeypatch.setattr(adopt_cpu, "BLOCK", 8)
    monkeypatch.setattr(adopt_cpu, "SMALL", 4)
    monkeypatch.setattr(adopt_cpu, "MIN_PACK", 2)
    shapes = [(5, 3), (7,), (2,), (3,)]

    def run(**mode: Any) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
        opt = ADOPT(params, lr=1e-3, eps=eps, clip_lambda=None, **mode)
        for t in range(2):
            for p in params:
                g = torch.randn(p.shape, generator=gen)
                g[..., 0] = 0.0  # a zero in the second gradient: 0 / 0 where eps = 0
                p.grad = torch.zeros_like(p) if t == 0 else g
            opt.step()
        return [p.detach() for p in params]

    ref = run(foreach=True, capturable=True)  # whole-tensor ops with sqrt and a division
    assert all(torch.isfinite(t).all() for t in ref) == (eps > 0)
    for mode in (dict(foreach=False), dict(foreach=True)):
        for a, b in zip(ref, run(**mode), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=0, equal_nan=True)
