"""Hook layer on tiny random GPT-2, Llama, Mistral and GPT-NeoX models (built from configs, no downloads)."""

from __future__ import annotations

import pytest
import torch
import transformers as T

from xlab.analysis.hooks import Edit, capture, intervene, logit_lens, module_map, point
from xlab.errors import XlabError

V, D, F, L = 61, 16, 40, 3


def _gpt2():
    return T.GPT2LMHeadModel(
        T.GPT2Config(n_layer=L, n_embd=D, n_head=2, n_inner=F, vocab_size=V, n_positions=32)
    )


def _llama():
    return T.LlamaForCausalLM(
        T.LlamaConfig(
            num_hidden_layers=L,
            hidden_size=D,
            intermediate_size=F,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=V,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )


def _mistral():
    return T.MistralForCausalLM(
        T.MistralConfig(
            num_hidden_layers=L,
            hidden_size=D,
            intermediate_size=F,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=V,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )


def _neox():
    return T.GPTNeoXForCausalLM(
        T.GPTNeoXConfig(
            num_hidden_layers=L,
            hidden_size=D,
            intermediate_size=F,
            num_attention_heads=2,
            vocab_size=V,
            bos_token_id=0,
            eos_token_id=1,
        )
    )


BUILDERS = {"gpt2": _gpt2, "llama": _llama, "mistral": _mistral, "gpt_neox": _neox}


@pytest.fixture(scope="module", params=list(BUILDERS))
def model(request):
    torch.manual_seed(0)
    m = BUILDERS[request.param]().eval()
    return m


def _ids(batch=2, seq=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, V, (batch, seq), generator=g)


def test_module_map_resolves(model):
    mm = module_map(model)
    assert mm.family == model.config.model_type
    assert mm.n_layers == L
    assert mm.n_neurons(0) == F
    assert mm.unembed is model.get_output_embeddings()
    lin = mm.linear_layers()
    assert lin and all(m is not mm.unembed for m in lin.values())
    # every linear layer's output channels are addressable units
    name = next(iter(lin))
    assert point(model, f"linear:{name}") == (lin[name], "output")
    for p in ("resid.0", "attn.1", "mlp.2", "neurons.0", "final_norm", "resid.-1"):
        module, side = point(model, p)
        assert side in ("output", "input")
    assert point(model, "neurons.0")[1] == ("input" if mm.family in ("llama", "mistral") else "output")


def test_capture_shapes_and_mean_mask(model):
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    names = ["resid.0", "attn.1", "mlp.2", "neurons.1", "final_norm"]
    with capture(model, names) as full:
        full.forward(ids, attention_mask=mask)
    assert full["resid.0"][0].shape == (2, 7, D)
    assert full["attn.1"][0].shape == (2, 7, D)
    assert full["mlp.2"][0].shape == (2, 7, D)
    assert full["neurons.1"][0].shape == (2, 7, F)
    with capture(model, names, reduce="mean") as mean:
        mean.forward(ids, attention_mask=mask)
    for n in names:
        width = F if n.startswith("neurons") else D
        assert mean[n][0].shape == (2, width)
        x = full[n][0]
        torch.testing.assert_close(mean[n][0][0], x[0].mean(0))
        torch.testing.assert_close(mean[n][0][1], x[1, :4].mean(0))
    with capture(model, ["resid.1"], reduce="last") as last:
        last.forward(ids, attention_mask=mask)
    with capture(model, ["resid.1"]) as full1:
        full1.forward(ids, attention_mask=mask)
    torch.testing.assert_close(last["resid.1"][0][1], full1["resid.1"][0][1, 3])
    torch.testing.assert_close(last["resid.1"][0][0], full1["resid.1"][0][0, -1])
    # hooks are removed after the block
    with torch.no_grad():
        model(input_ids=ids)
    assert len(full["resid.0"]) == 1


@pytest.mark.parametrize("mode,value", [("set", 3.0), ("zero", 0.0), ("scale", -2.0)])
def test_intervention_changes_exactly_the_chosen_units(model, mode, value):
    ids = _ids(batch=1, seq=6)
    units = [1, 4, 7]
    with capture(model, ["neurons.1", "mlp.0"]) as before:
        before.forward(ids)
    with (
        intervene(model, [Edit("neurons.1", units, mode, value)]),
        capture(model, ["neurons.1", "mlp.0"]) as after,
    ):
        after.forward(ids)
    b, a = before["neurons.1"][0], after["neurons.1"][0]
    other = [i for i in range(F) if i not in units]
    # capture's hook runs after the edit's, so it sees the edited tensor; untouched units identical
    torch.testing.assert_close(a[..., other], b[..., other])
    expect = {
        "set": torch.full_like(b[..., units], value),
        "zero": torch.zeros_like(b[..., units]),
        "scale": b[..., units] * value,
    }[mode]
    torch.testing.assert_close(a[..., units], expect)
    # the layer before is untouched
    torch.testing.assert_close(after["mlp.0"][0], before["mlp.0"][0])


def test_intervention_on_resid_and_linear(model):
    ids = _ids(batch=1, seq=5)
    mm = module_map(model)
    lin = next(iter(mm.linear_layers()))
    with capture(model, ["resid.1", f"linear:{lin}"]) as before:
        before.forward(ids)
    vals = torch.tensor([0.5, -1.5])
    edits = [Edit("resid.1", [0, 3], "set", vals), Edit(f"linear:{lin}", [2], "zero")]
    with intervene(model, edits), capture(model, ["resid.1", f"linear:{lin}"]) as after:
        after.forward(ids)
    r_b, r_a = before["resid.1"][0], after["resid.1"][0]
    assert torch.equal(r_a[..., [0, 3]], vals.expand(1, 5, 2))
    keep = [i for i in range(D) if i not in (0, 3)]
    # the linear edit upstream changes resid.1 as well: isolate the resid edit with a run of it alone
    with intervene(model, edits[:1]), capture(model, ["resid.1"]) as only:
        only.forward(ids)
    assert torch.equal(only["resid.1"][0][..., keep], r_b[..., keep])
    l_a = after[f"linear:{lin}"][0]
    assert torch.all(l_a[..., 2] == 0)
    torch.testing.assert_close(l_a[..., 3:], before[f"linear:{lin}"][0][..., 3:])


def test_llama_neurons_input_edit_reaches_down_proj():
    torch.manual_seed(0)
    m = _llama().eval()
    ids = _ids(batch=1, seq=5)
    with capture(m, ["neurons.0"]) as c:
        c.forward(ids)
    before = c["neurons.0"][0]
    down = m.model.layers[0].mlp.down_proj
    seen = {}
    with intervene(m, [Edit("neurons.0", [2, 9], "set", 1.25)]):
        # registered after the edit, so it sees what down_proj actually receives
        h = down.register_forward_pre_hook(lambda _m, a: seen.__setitem__("x", a[0].detach().clone()))
        try:
            with torch.no_grad():
                m(input_ids=ids)
        finally:
            h.remove()
    x = seen["x"]
    assert torch.all(x[..., [2, 9]] == 1.25)
    other = [i for i in range(F) if i not in (2, 9)]
    torch.testing.assert_close(x[..., other], before[..., other])


def test_intervention_applies_during_generation(model):
    ids = _ids(batch=1, seq=4)
    unit = 5
    with intervene(model, [Edit("resid.0", [unit], "set", 7.0)]), capture(model, ["resid.0"]) as c:
        model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=1)
    # prompt pass + one pass per generated token (KV cache), every position edited
    assert len(c["resid.0"]) >= 3
    for x in c["resid.0"]:
        assert torch.all(x[..., unit] == 7.0)


def test_logit_lens_last_row_is_model_output(model):
    ids = _ids(batch=1, seq=6)
    probs = logit_lens(model, ids)
    assert probs.shape == (L + 1, V)
    torch.testing.assert_close(probs.sum(-1), torch.ones(L + 1))
    with torch.no_grad():
        ref = model(input_ids=ids).logits[0, -1].softmax(-1)
    torch.testing.assert_close(probs[-1], ref)
    # middle rows: final norm + unembed of the block outputs
    with capture(model, ["resid.0"]) as c:
        c.forward(ids)
    mm = module_map(model)
    with torch.no_grad():
        row1 = mm.unembed(mm.final_norm(c["resid.0"][0][0, -1])).softmax(-1)
    torch.testing.assert_close(probs[1], row1)
    # masked batch: position -1 is each row's last real token
    batch = torch.cat([ids, ids], 0)
    mask = torch.ones_like(batch)
    mask[1, 4:] = 0
    pb = logit_lens(model, batch, attention_mask=mask)
    assert pb.shape == (2, L + 1, V)
    with torch.no_grad():
        ref4 = model(input_ids=ids[:, :4]).logits[0, -1].softmax(-1)
    torch.testing.assert_close(pb[1, -1], ref4, atol=1e-5, rtol=1e-4)


def test_unknown_architecture_and_bad_points():
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"model_type": "toy"})()
            self.lin = torch.nn.Linear(2, 2)

    with pytest.raises(XlabError, match="gpt2, llama, mistral, gpt_neox"):
        module_map(Toy())
    m = _gpt2()
    with pytest.raises(XlabError, match="unknown hook point"):
        point(m, "block.1")
    with pytest.raises(XlabError, match="out of range"):
        point(m, "resid.9")
    with pytest.raises(XlabError, match="unknown linear layer"):
        point(m, "linear:nope")
    with pytest.raises(XlabError, match="unknown mode"):
        Edit("resid.0", [0], "add", 1.0)
    with pytest.raises(XlabError, match="unknown reduce"):
        with capture(m, ["resid.0"], reduce="max"):
            pass
