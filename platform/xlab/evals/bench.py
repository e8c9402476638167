"""Throughput and shape of the logic evaluation: generator speed, label balance, depth, evaluator items/s.

    python -m xlab.evals.bench                   # a few minutes on 2 idle CPU cores
    python -m xlab.evals.bench --eval-n 300 --device cuda

Prints: FLD and bAbI generation speed (items/s, every item checked by the reference solver), the
FLD label balance, depth and distractor distributions and prompt lengths in tokens; then few-shot
evaluation throughput with a randomly initialised GPT-2 (the spec's tiny CPU protocol: 4 layers,
width 256, context 512) in both modes, with HFGenerator at batch size 1 as the same-process
baseline and, for generation, ``transformers``' own batched ``model.generate`` as a reference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch

from xlab.evals.babi import TASKS, babi_examples
from xlab.evals.fewshot import evaluate_fewshot, fewshot_prompt
from xlab.evals.fld import fld_examples
from xlab.evals.generators import HFGenerator


def _cpu_timed(fn):
    """(result, wall seconds, CPU seconds of this process): the CPU figure is robust to a busy machine."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def _tokenizer(texts: list[str], vocab: int = 4000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def generators(n: int) -> None:
    print(f"== FLD generation ({n} items per setting; every label re-derived by the prover)")
    for name, kw in (("default depth 1-3", {}), ("FLD* depth 1-8", {"depth": (1, 8)}),
                     ("tiny protocol depth 1-2", {"depth": (1, 2)})):
        items, dt, cpu = _cpu_timed(lambda kw=kw: fld_examples(n, seed=0, **kw))
        labels = Counter(e.label for e in items)
        depths = Counter(e.depth for e in items)
        print(f"{name:>24}: {n / dt:6.1f} items/s ({n / cpu:6.1f} per CPU-s) | labels {dict(sorted(labels.items()))} | depth "
              f"{dict(sorted(depths.items()))} | facts/item {statistics.mean(len(e.facts) for e in items):.1f} "
              f"(distractors {statistics.mean(e.num_distractors for e in items):.1f}) | prompt chars "
              f"{statistics.mean(len(e.prompt) for e in items):.0f}")
    print(f"== bAbI generation ({n} items per task; every answer re-derived by the solver)")
    for task in sorted(TASKS):
        items, dt, cpu = _cpu_timed(lambda task=task: babi_examples(task, n, seed=0))
        top = Counter(e.answer for e in items).most_common(1)[0]
        print(f"  task {task:2d} ({TASKS[task]}): {n / dt:7.0f} items/s ({n / cpu:6.0f} per CPU-s) | most common answer "
              f"{top[0]!r} {top[1] / n:.0%} | prompt chars {statistics.mean(len(e.prompt) for e in items):.0f}")


def evaluator(n: int, device: str, batch_size: int) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    # The tiny protocol's context of 512 tokens: few distractors so that 3-shot prompts mostly fit.
    fld = fld_examples(n, depth=(1, 2), distractors=(0, 3), branches=(0, 1), seed=1)
    babi = babi_examples(1, n, seed=1)
    tok = _tokenizer([e.prompt + " " + e.label for e in fld] + [e.prompt + " " + e.answer for e in babi])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=256, n_layer=4, n_head=4,
                                       bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    lens = [len(tok(fewshot_prompt("fld", e, fld[i + 1:i + 4] or fld[:3]))["input_ids"]) for i, e in
            enumerate(fld[:50])]
    print(f"== Evaluator: GPT-2 4x256 (random init, context 512) on {device}; 3-shot FLD prompts "
          f"{statistics.mean(lens):.0f} tokens on average ({sum(x > 504 for x in lens)}/50 left-truncated)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for task, items in (("fld", fld), ("babi", babi)):
        for mode in ("generate", "choice"):
            fast = HFGenerator(model, tok, device=device, batch_size=batch_size)
            r, dt, cpu = _cpu_timed(lambda fast=fast, items=items, task=task, mode=mode:
                                    evaluate_fewshot(fast, task, items, shots=3, mode=mode))
            k = max(8, n // 4)
            slow = HFGenerator(model, tok, device=device, batch_size=1)
            _, dt1, cpu1 = _cpu_timed(lambda slow=slow, items=items, task=task, mode=mode, k=k:
                                      evaluate_fewshot(slow, task, items[:k], shots=3, mode=mode,
                                                       fewshot_pool=items))
            print(f"  {task:4} {mode:8}: {len(items) / dt:6.1f} items/s ({len(items) / cpu:6.1f} per CPU-s) at "
                  f"batch {batch_size} | batch 1: {k / dt1:5.1f} items/s ({k / cpu1:5.1f} per CPU-s) | "
                  f"speed-up x{(len(items) / dt) / (k / dt1):.1f} wall, x{(len(items) / cpu) / (k / cpu1):.1f} "
                  f"CPU | accuracy {r['accuracy']:.2f} valid {r['valid_rate']:.2f}")
    # Reference: transformers' own batched greedy generate (left padding, no stop strings).
    prompts = [fewshot_prompt("babi", e, babi[i + 1:i + 4] or babi[:3]) for i, e in enumerate(babi)]
    gen = HFGenerator(model, tok, device=device, batch_size=batch_size)
    _, dt_ours, cpu_ours = _cpu_timed(lambda: gen.generate(prompts, max_new_tokens=8, stop=["\n"]))
    tok.padding_side = "left"

    def hf_generate():
        for s in range(0, len(prompts), batch_size):
            enc = tok(prompts[s:s + batch_size], return_tensors="pt", padding=True, truncation=True,
                      max_length=500).to(device)
            model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)

    tok.pad_token = tok.eos_token
    _, dt_hf, cpu_hf = _cpu_timed(hf_generate)
    print(f"  babi generate, 8 new tokens: HFGenerator {len(prompts) / dt_ours:.1f} items/s vs "
          f"model.generate {len(prompts) / dt_hf:.1f} items/s (ratio x{dt_hf / dt_ours:.2f} wall, "
          f"x{cpu_hf / cpu_ours:.2f} CPU)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m xlab.evals.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="items per generator setting")
    ap.add_argument("--eval-n", type=int, default=96, help="items per evaluator run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--skip-model", action="store_true", help="only the generators")
    args = ap.parse_args(argv)
    generators(args.n)
    if not args.skip_model:
        evaluator(args.eval_n, args.device, args.batch_size)


if __name__ == "__main__":
    main()
