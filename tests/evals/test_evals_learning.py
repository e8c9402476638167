"""The valid-label rate moves with training: a tiny GPT-2 trained briefly on FLD-formatted text learns the format."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from xlab.evals import HFGenerator, evaluate_fewshot, fld_examples


@pytest.mark.slow
def test_format_learning_raises_the_valid_label_rate():
    kw = {"depth": (1, 1), "distractors": (0, 1), "branches": (0, 0)}
    train = fld_examples(240, seed=21, **kw)
    test = fld_examples(30, seed=22, **kw)
    texts = [e.prompt + " " + e.label for e in train]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(hf_tok), n_positions=192, n_embd=64, n_layer=2, n_head=2,
                                       bos_token_id=hf_tok.eos_token_id, eos_token_id=hf_tok.eos_token_id))
    before = evaluate_fewshot(HFGenerator(model, hf_tok), "fld", test, shots=0)
    # Only the end of each item (the proof slot and the label) matters for the format: keep the last
    # 96 tokens so the steps are cheap.
    eos = hf_tok.eos_token_id
    seqs = [hf_tok(t, add_special_tokens=False)["input_ids"][-95:] + [eos] for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        idx = torch.randint(len(seqs), (8,), generator=g).tolist()
        width = max(len(seqs[i]) for i in idx)
        ids = torch.full((8, width), eos)
        labels = torch.full((8, width), -100)
        for row, i in enumerate(idx):
            ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
            labels[row, : len(seqs[i])] = torch.tensor(seqs[i])
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate_fewshot(HFGenerator(model, hf_tok), "fld", test, shots=0)
    print(f"valid-label rate {before['valid_rate']:.2f} -> {after['valid_rate']:.2f}, accuracy "
          f"{before['accuracy']:.2f} -> {after['accuracy']:.2f}")
    assert before["valid_rate"] < 0.2
    assert after["valid_rate"] > 0.9, after["predictions"]
