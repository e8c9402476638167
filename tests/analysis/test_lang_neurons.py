"""Language-specific neurons: AP selection finds planted units; median tampering sets exactly the chosen units."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from xlab.analysis.hooks import intervene
from xlab.analysis.lang_neurons import (
    average_precision,
    generate_unconditional,
    language_shares,
    layer_distribution,
    median_responses,
    overlap_matrix,
    select_units,
    tamper_edits,
    unit_layout,
    unit_responses,
)
from xlab.errors import XlabError


def test_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 30)).astype(np.float32)
    x[:, 0] = 1.0  # all tied: AP = prevalence
    x[:, 1] = np.round(x[:, 1])  # many ties
    y = rng.random(80) < 0.25
    ours = average_precision(x, y, chunk=7)
    ref = [average_precision_score(y, x[:, u]) for u in range(30)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    with pytest.raises(XlabError):
        average_precision(x, np.zeros(80, bool))


def test_selection_finds_planted_language_units():
    rng = np.random.default_rng(1)
    langs = np.repeat(["en", "de", "fr", "es", "zh", "ja"], 50)
    acts = rng.normal(size=(len(langs), 500)).astype(np.float32)
    planted_up = {"de": [10, 200, 321], "ja": [7, 400, 499]}
    planted_down = {"de": [55, 66], "ja": [3, 150]}
    for lang in planted_up:
        acts[np.ix_(langs == lang, planted_up[lang])] += 3.0
        acts[np.ix_(langs == lang, planted_down[lang])] -= 3.0
    for lang in planted_up:
        sel = select_units(average_precision(acts, langs == lang), 6)
        assert set(sel[:3].tolist()) == set(planted_up[lang])
        assert set(planted_down[lang]) <= set(sel[3:].tolist())
    _, m = overlap_matrix({"de": select_units(average_precision(acts, langs == "de"), 4),
                           "ja": select_units(average_precision(acts, langs == "ja"), 4)})
    assert m[0, 0] == 1.0 and m[0, 1] == 0.0
    with pytest.raises(XlabError, match="cannot select"):
        select_units(np.zeros(5), 6)


@pytest.fixture(scope="module")
def tiny():
    from xlab.lm.models import build_causal_lm
    from xlab.lm.tokenizer import train_bpe

    tok = train_bpe(["the cat sat on the mat", "der Hund ist gut", "le chat est noir", "猫が好きです"] * 20,
                    vocab_size=300)
    return build_causal_lm("gpt2", "tiny", vocab_size=len(tok)), tok


def test_median_tampering_sets_exactly_the_selected_units(tiny):
    model, tok = tiny
    layout = unit_layout(model)
    assert layout.n_units == 2 * (3 * 64 + 64 + 4 * 64 + 64)  # every linear layer but lm_head
    assert "lm_head" not in layout.names
    texts = ["the cat sat", "der Hund ist gut", "le chat est noir", "猫が好き"]
    resp = unit_responses(model, tok, texts, layout, batch_size=3)
    units = np.array([5, 70, 300, 900, 1100])
    values = median_responses(resp[:2], units)
    np.testing.assert_allclose(values, np.median(resp[:2][:, units], axis=0))
    edits = tamper_edits(layout, units, values)
    assert sum(len(e.units) for e in edits) == len(units) and all(e.mode == "set" for e in edits)
    with intervene(model, edits):
        after = unit_responses(model, tok, ["a different sentence", "noch einer"], layout)
    before = unit_responses(model, tok, ["a different sentence", "noch einer"], layout)
    # The selected units are pinned at every position, so their token means are the medians ...
    np.testing.assert_allclose(after[:, units], np.broadcast_to(values, (2, len(units))), atol=1e-5)
    # ... and nothing else changes in the first edited layer (later layers see the edit's effect).
    first = layout.names.index(edits[0].name.split(":", 1)[1])
    lo, hi = layout.offsets[first], layout.offsets[first + 1]
    others = [u for u in range(lo, hi) if u not in set(units.tolist())]
    np.testing.assert_allclose(after[:, others], before[:, others], atol=1e-6)
    assert layer_distribution(layout, units).tolist() == [3, 2, 0]


def test_generation_and_language_shares(tiny):
    model, tok = tiny
    a = generate_unconditional(model, tok, 6, max_new_tokens=8, seed=3, batch_size=4)
    b = generate_unconditional(model, tok, 6, max_new_tokens=8, seed=3, batch_size=4)
    assert a == b and len(a) == 6
    shares = language_shares(["Das ist ein schöner Tag heute", "これは日本語の文です", "", "This is English text"],
                             ["en", "de", "fr", "es", "zh", "ja"])
    assert shares["de"] == shares["ja"] == shares["en"] == shares["und"] == 0.25
    assert sum(shares.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_other_families_score_and_tamper(tiny, arch):
    from xlab.lm.models import build_causal_lm

    _, tok = tiny
    model = build_causal_lm(arch, "tiny", vocab_size=len(tok))
    layout = unit_layout(model)
    unembed = "embed_out" if arch == "gpt_neox" else "lm_head"
    assert unembed not in layout.names and set(layout.layers) == {0, 1}
    resp = unit_responses(model, tok, ["the cat sat", "der Hund", "猫が好き"], layout)
    assert resp.shape == (3, layout.n_units)
    units = select_units(average_precision(resp, np.array([True, False, False])), 4)
    values = median_responses(resp, units)
    with intervene(model, tamper_edits(layout, units, values)):
        after = unit_responses(model, tok, ["le chat est noir"], layout)
    np.testing.assert_allclose(after[0, units], values, atol=1e-5)


def test_generation_and_scoring_start_like_the_tokenizer_xglm_starts_with_eos():
    """XGLM's tokenizer starts a sequence with </s> (the authors generate from tokenizer("")): so does xlab."""
    import torch
    import transformers as T
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<s>", "</s>", "<pad>", "<unk>", "ja", "nein", "oui"])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    torch.manual_seed(0)
    model = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=len(vocab), n_positions=16, n_embd=16, n_layer=1, n_head=2))
    seen = []
    h = model.transformer.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs.get("input_ids", args[0] if args else None)[:, 0].tolist()),
        with_kwargs=True)
    try:
        generate_unconditional(model, tok, n=3, max_new_tokens=2, seed=0)
        assert seen[0] == [1, 1, 1]  # </s>, not the BOS <s>
        seen.clear()
        generate_unconditional(model, tok, n=2, max_new_tokens=1, seed=0, start=False)
        assert seen[0] == [0, 0]  # the earlier rule: BOS
        seen.clear()
        unit_responses(model, tok, ["ja nein", "oui"])
        assert seen[0] == [1, 1]
    finally:
        h.remove()
