"""PS-Eval: metrics on a hand-computed confusion, the WiC/PS-Eval loader, the single-token filter,
activations at the target token, and the offline polysemy set."""

from __future__ import annotations

import json

import pytest
import torch

from xlab.analysis.ps_eval import (
    PSPair,
    balance_pairs,
    confusion,
    filter_single_token,
    load_pairs,
    ps_activations,
    ps_eval,
    ps_from_features,
    ps_metrics,
    ps_prompt,
    target_token,
    tl_hook_name,
)
from xlab.analysis.sae import SAE
from xlab.errors import XlabError
from xlab.lm.sequence_start import start_ids
from xlab.studydata.polysemy import load_inventory, polysemy_pairs


def test_metrics_on_a_hand_computed_confusion():
    # labels:  1 1 1 1 1 0 0 0 0 0
    # match:   T T T F F T F F F F   -> TP=3 FN=2 FP=1 TN=4
    labels = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    match = [True, True, True, False, False, True, False, False, False, False]
    c = confusion(match, labels)
    assert c == {"tp": 3, "fn": 2, "fp": 1, "tn": 4}
    m = ps_metrics(c)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 5)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / (0.75 + 0.6))
    assert ps_metrics({"tp": 0, "fn": 0, "fp": 0, "tn": 0})["f1"] == 0.0


def test_ps_from_features_and_ps_eval_cosines():
    # 4 pairs; features one-hot so arg-max is known: pairs 0,2 match; pair 3 has an all-zero context.
    f1 = torch.tensor([[0, 2.0, 0], [1.0, 0, 0], [0, 0, 3.0], [0, 0, 0.0]])
    f2 = torch.tensor([[0, 1.0, 0], [0, 0, 2.0], [0, 0, 1.0], [0, 0, 0.0]])
    m, a1, a2 = ps_from_features(f1, f2, [1, 0, 0, 1])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 1)
    assert m["no_feature_frac"] == pytest.approx(0.25)
    # ps_eval with an SAE whose encoder is the identity on 3 dims
    sae = SAE(3, 3, "relu")
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(3))
        sae.W_dec.copy_(torch.tensor([[1.0, 0, 0], [0.6, 0.8, 0], [0, 0, 1.0]]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    # acts[i, 0] / acts[i, 1]: the two contexts of pair i
    acts = torch.tensor([[[0, 2.0, 0], [0, 1.0, 0]], [[1.0, 0, 0], [0, 2.0, 0]]])
    out = ps_eval(sae, acts, [1, 0])
    assert out["tp"] == 1 and out["tn"] == 1 and out["accuracy"] == 1.0
    assert out["cos_same"] == pytest.approx(1.0)
    assert out["cos_diff"] == pytest.approx(0.6)


def test_loader_reads_json_jsonl_tsv(tmp_path):
    recs = [
        {
            "context_1": "He sat on the bank.",
            "context_2": "The bank lent money.",
            "target_word": "bank",
            "label": 0,
        },
        {
            "context_1": "A bat flew by.",
            "context_2": "The bat hunted moths.",
            "target_word": "bat",
            "label": "T",
        },
    ]
    (tmp_path / "a.json").write_text(json.dumps({"data": recs}))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    tsv = "context_1\tcontext_2\ttarget_word\tlabel\n" + "\n".join(
        f"{r['context_1']}\t{r['context_2']}\t{r['target_word']}\t{r['label']}" for r in recs
    )
    (tmp_path / "a.tsv").write_text(tsv)
    expect = [
        PSPair(recs[0]["context_1"], recs[0]["context_2"], "bank", 0),
        PSPair(recs[1]["context_1"], recs[1]["context_2"], "bat", 1),
    ]
    for name in ("a.json", "a.jsonl", "a.tsv"):
        assert load_pairs(tmp_path / name) == expect
    (tmp_path / "bad.jsonl").write_text(json.dumps({"context_1": "x", "target_word": "y", "label": 1}))
    with pytest.raises(XlabError, match="context_2"):
        load_pairs(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text(json.dumps({**recs[0], "label": "maybe"}))
    with pytest.raises(XlabError, match="label"):
        load_pairs(tmp_path / "bad2.jsonl")
    with pytest.raises(XlabError, match="not found"):
        load_pairs(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def tok():
    from xlab.lm import train_bpe

    inv = load_inventory()
    # "bank" and "bat" appear often enough to become single tokens; "crane" never does in this tiny vocab
    texts = [e.sentence for e in inv if e.word != "crane"] * 3
    return train_bpe(texts, vocab_size=600)


def test_single_token_filter(tok):
    assert ps_prompt("I sat down.", "bank") == "I sat down. The bank means"
    ok = PSPair("We sat on the bank today.", "The bank lent money.", "bank", 0)
    assert target_token(tok, ok.context_1, "bank") == tok(" bank")["input_ids"][0]
    # capitalised at the start: a different token in context 2 -> dropped
    cap = PSPair("We sat on the bank today.", "Bank rules are strict.", "bank", 0)
    # a word split into several tokens -> dropped
    multi = PSPair("The crane lifted steel.", "A crane waded in the marsh.", "crane", 0)
    assert len(tok(" crane")["input_ids"]) > 1
    kept, dropped = filter_single_token([ok, cap, multi], tok)
    assert kept == [ok] and dropped == 2


def test_polysemy_set_pairs_are_balanced():
    inv = load_inventory()
    assert len({e.word for e in inv}) >= 25 and len(inv) >= 250
    pairs = polysemy_pairs(inv, seed=0)
    labels = [p.label for p in pairs]
    assert sum(labels) * 2 == len(labels)
    for word in {p.target_word for p in pairs}:
        w = [p.label for p in pairs if p.target_word == word]
        assert sum(w) * 2 == len(w)
    sense = {e.sentence: e.sense for e in inv}
    for p in pairs[:200]:
        assert (sense[p.context_1] == sense[p.context_2]) == (p.label == 1)
        assert p.context_1 != p.context_2
    assert polysemy_pairs(inv, seed=0) == pairs
    capped = polysemy_pairs(inv, seed=0, max_pairs_per_word=4)
    assert len(capped) == 4 * len({e.word for e in inv})
    unbalanced = pairs[:10] + [p for p in pairs if p.label == 1][:20]
    b = balance_pairs(unbalanced, seed=1)
    assert sum(p.label for p in b) * 2 == len(b)


def test_ps_activations_read_the_last_target_token(tok):
    from xlab.analysis.hooks import capture
    from xlab.lm import build_causal_lm

    model = build_causal_lm("gpt2", "tiny", vocab_size=len(tok)).eval()
    pairs, _ = filter_single_token(polysemy_pairs(load_inventory(), seed=0, max_pairs_per_word=2), tok)
    pairs = pairs[:6]
    acts = ps_activations(model, tok, pairs, ["resid.1", "attn.0"], batch_size=4)
    assert acts["resid.1"].shape == (6, 2, model.config.n_embd)
    # unbatched reference for one context: the activation at the template's target token
    p = pairs[3]
    ids = tok(ps_prompt(p.context_2, p.target_word), add_special_tokens=False)["input_ids"]
    t = target_token(tok, p.context_2, p.target_word)
    pos = max(i for i, v in enumerate(ids) if v == t)
    # the template's occurrence: "... The <word> means"
    assert tok.decode(ids[pos]) == f" {p.target_word}" and tok.decode(ids[pos + 1 :]) == " means"
    # The prompt fed starts like a TransformerLens sequence: the tokenizer adds nothing, so its BOS first.
    assert start_ids(tok) == [tok.bos_token_id]
    with capture(model, ["resid.1"]) as c:
        c.forward(torch.tensor([[tok.bos_token_id, *ids]]))
    torch.testing.assert_close(acts["resid.1"][3, 1], c["resid.1"][0][0, pos + 1], atol=1e-5, rtol=1e-4)
    # start=False: the prompt's own tokens only.
    raw = ps_activations(model, tok, pairs, ["resid.1"], batch_size=4, start=False)
    with capture(model, ["resid.1"]) as c:
        c.forward(torch.tensor([ids]))
    torch.testing.assert_close(raw["resid.1"][3, 1], c["resid.1"][0][0, pos], atol=1e-5, rtol=1e-4)


def test_lemma_in_context_filter_is_optional(tok):
    # WiC-style pairs whose contexts hold an inflected or capitalized form of the lemma.
    word = next(w for w in ("bank", "bark", "bat", "light", "spring", "watch") if target_token(tok, "x", w, False))
    inflected = PSPair(f"She {word}s on it.", f"The {word} was here.", word, 1)
    capital = PSPair(f"{word.capitalize()} is a word.", f"A {word} again.", word, 0)
    kept, dropped = filter_single_token([inflected, capital], tok)
    assert (kept, dropped) == ([], 2)  # xlab's extra filter: the lemma verbatim in both contexts
    kept, dropped = filter_single_token([inflected, capital], tok, require_in_context=False)
    assert kept == [inflected, capital] and dropped == 0  # the paper's filter: one token in the template
    with pytest.raises(XlabError, match="require_in_context"):
        ps_activations(None, tok, kept, ["resid.0"], occurrence="context", require_in_context=False)


def test_resid_points_are_labelled_with_transformer_lens_names():
    assert tl_hook_name("resid", 0, 12) == "blocks.1.hook_resid_pre"
    assert tl_hook_name("resid", 11, 12) == "blocks.11.hook_resid_post"
    assert tl_hook_name("attn", 3, 12) == "blocks.3.hook_attn_out"
    assert tl_hook_name("mlp", 3, 12) == "blocks.3.hook_mlp_out"
