"""Few-shot in-context evaluation on FLD and bAbI, as the lm-evaluation-harness task definitions do it.

Prompts (spec ``lm-pretraining.md``, "Evaluation"):

* FLD: ``Based on the provided facts ($context$), either prove or disprove the hypothesis or state that
  it is unknown. {prompt_serial}`` with target `` {label}``. Free generation; the output's whitespace
  is stripped and its first token taken; exact match against PROVED / DISPROVED / UNKNOWN. An output
  that is no legal label scores 0 and counts against the valid-label rate, the paper's
  "instruction following" measure (:func:`instruction_following`).
* bAbI: ``Passage: {passage}Question: {question}\\nAnswer:`` with target `` {answer}``; generation
  stops at a newline or ``Passage:``; exact match of the stripped output.

Shots are full examples (prompt + target) joined by blank lines before the query. They are drawn
(seeded) from ``fewshot_pool`` if given, else from the other evaluation items, never the item
itself; bAbI shots come from the item's own task when the pool has enough of them.

``mode="generate"`` scores the greedy generation; ``mode="choice"`` picks the label (FLD) or answer
candidate (bAbI task vocabulary; for tasks the generator does not know, every answer of that
task in the items and pool) with the highest log-likelihood, so every prediction is legal.

    from xlab.evals import HFGenerator, evaluate_fewshot, fld_examples
    result = evaluate_fewshot(HFGenerator(model, tok), "fld", fld_examples(300, depth=(1, 2)), shots=3)
    result["accuracy"], result["valid_rate"], result["by_depth"]
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from xlab.config import check
from xlab.errors import XlabError
from xlab.evals.babi import QAExample, answer_candidates
from xlab.evals.fld import LogicExample
from xlab.evals.generators import Generator, cut_at_stop
from xlab.evals.logic import LABELS

FEWSHOT_DELIMITER = "\n\n"
FLD_STOP: tuple[str, ...] = ("\n\n", "Based on the provided facts")
BABI_STOP: tuple[str, ...] = ("\n", "Passage:")
TASKS = ("fld", "babi")


def query_text(task: str, item: Any) -> str:
    """The prompt of one item without its answer."""
    return item.prompt


def target_text(task: str, item: Any) -> str:
    """The gold continuation of one item (with the harness's leading space)."""
    return " " + (item.label if task == "fld" else item.answer)


def fewshot_prompt(task: str, item: Any, shots: Sequence[Any]) -> str:
    """Shots (prompt + target) and the query, joined by blank lines."""
    parts = [query_text(task, s) + target_text(task, s) for s in shots]
    parts.append(query_text(task, item))
    return FEWSHOT_DELIMITER.join(parts)


def answer_vocab(items: Sequence[Any]) -> dict[int, tuple[str, ...]]:
    """Answer vocabulary per bAbI task: the generator's for tasks 1-3 and 15-19, else every answer in ``items``.

    Real bAbI has twenty tasks; for the ones xlab does not generate, the loaded data is the only
    source of legal answers, so choice mode ranks all of them (not just the gold answer).
    """
    seen: dict[int, set[str]] = defaultdict(set)
    for it in items:
        seen[it.task].add(it.answer)
    vocab: dict[int, tuple[str, ...]] = {}
    for t, answers in seen.items():
        try:
            vocab[t] = answer_candidates(t)
        except XlabError:
            vocab[t] = tuple(sorted(answers))
    return vocab


def candidates(task: str, item: Any, vocab: dict[int, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """Legal answers of an item: the three labels (FLD) or its bAbI task's vocabulary (``vocab`` from
    :func:`answer_vocab` for tasks the generator does not know)."""
    if task == "fld":
        return LABELS
    if vocab is not None and item.task in vocab:
        return vocab[item.task]
    return answer_candidates(item.task)


def parse_prediction(task: str, output: str) -> str:
    """The prediction in an output: FLD's first whitespace-free token, bAbI's stripped line."""
    if task == "fld":
        tokens = output.split()
        return tokens[0] if tokens else ""
    return output.strip()


def instruction_following(outputs: Sequence[str] | dict, task: str = "fld",
                          items: Sequence[Any] | None = None) -> float:
    """Share of outputs that are a legal answer (the valid-label rate): the paper's format measure.

    Pass either an :func:`evaluate_fewshot` result (its ``valid_rate``) or raw generations; for bAbI
    raw generations also need the ``items`` (each task has its own answer vocabulary).
    """
    if isinstance(outputs, dict):
        return float(outputs["valid_rate"])
    if not outputs:
        return 0.0
    if task == "fld":
        legal = [set(LABELS)] * len(outputs)
    else:
        if items is None or len(items) != len(outputs):
            raise XlabError("instruction_following for bAbI needs the items matching the outputs")
        vocab = answer_vocab(items)
        legal = [set(candidates(task, it, vocab)) for it in items]
    return sum(parse_prediction(task, o) in ok for o, ok in zip(outputs, legal, strict=True)) / len(outputs)


def _draw_shots(rng: random.Random, task: str, i: int, item: Any, items: Sequence[Any],
                pool: Sequence[Any] | None, k: int) -> list[Any]:
    if k == 0:
        return []
    if pool is None:
        choices = [x for j, x in enumerate(items) if j != i]
    else:
        choices = [x for x in pool if x is not item and query_text(task, x) != query_text(task, item)]
    if task == "babi":
        same = [x for x in choices if x.task == item.task]
        if len(same) >= k:
            choices = same
    if len(choices) < k:
        raise XlabError(f"need {k} few-shot examples besides the item but the pool has {len(choices)}; "
                        "pass a larger fewshot_pool or fewer shots")
    return rng.sample(choices, k)


def evaluate_fewshot(generator: Generator, task: str, examples: Sequence[Any], *, shots: int = 3,
                     seed: int = 0, mode: str = "generate", fewshot_pool: Sequence[Any] | None = None,
                     max_new_tokens: int | None = None, chunk_size: int = 64,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Few-shot accuracy, valid-label rate and per-item records of ``generator`` on ``examples``.

    Returns ``{"accuracy", "valid_rate", "n", "records", "items_per_s", "predictions"}`` plus
    ``"by_depth"`` and ``"by_label"`` (FLD) or ``"by_task"`` (bAbI), each a dict of
    ``{"accuracy", "valid_rate", "n"}``.
    """
    check(task in TASKS, "task", f"unknown task {task!r}; choose one of {TASKS}")
    check(mode in ("generate", "choice"), "mode", f"unknown mode {mode!r}; choose 'generate' or 'choice'")
    check(shots >= 0, "shots", f"need shots >= 0, got {shots}")
    kind = LogicExample if task == "fld" else QAExample
    for x in [*examples, *(fewshot_pool or [])]:
        if not isinstance(x, kind):
            raise XlabError(f"task {task!r} needs {kind.__name__} items, got {type(x).__name__}")
    vocab = answer_vocab([*examples, *(fewshot_pool or [])]) if task == "babi" else None
    if mode == "choice" and vocab is not None:
        for t, words in sorted(vocab.items()):
            if len(words) < 2:
                raise XlabError(f"bAbI task {t} has one answer ({words[0]!r}) in the items and pool, so choice mode "
                                "would score 1.0 for any model: pass more items or a fewshot_pool, or use generate")
    rng = random.Random(seed)
    prompts = [fewshot_prompt(task, it, _draw_shots(rng, task, i, it, examples, fewshot_pool, shots))
               for i, it in enumerate(examples)]
    if max_new_tokens is None:
        max_new_tokens = 8
    stop = FLD_STOP if task == "fld" else BABI_STOP
    t0 = time.perf_counter()
    outputs: list[str] = []
    for start in range(0, len(prompts), chunk_size):
        chunk = prompts[start:start + chunk_size]
        items = examples[start:start + chunk_size]
        if mode == "generate":
            outs = generator.generate(chunk, max_new_tokens=max_new_tokens, stop=stop)
            if len(outs) != len(chunk):
                raise XlabError(f"the generator returned {len(outs)} outputs for {len(chunk)} prompts")
            # Cut here too: a generator may ignore the stop strings (the harness does the same).
            outputs.extend(cut_at_stop(o, stop) for o in outs)
        else:
            ctxs, conts, spans = [], [], []
            for p, it in zip(chunk, items, strict=True):
                cands = candidates(task, it, vocab)
                spans.append(cands)
                ctxs += [p] * len(cands)
                conts += [" " + c for c in cands]
            scores = generator.loglikelihood(ctxs, conts)
            pos = 0
            for cands in spans:
                best = max(range(len(cands)), key=lambda j, p=pos: scores[p + j])
                outputs.append(" " + cands[best])
                pos += len(cands)
        if progress is not None:
            progress(len(outputs), len(prompts))
    elapsed = time.perf_counter() - t0

    records = []
    for it, prompt, out in zip(examples, prompts, outputs, strict=True):
        gold = it.label if task == "fld" else it.answer
        pred = parse_prediction(task, out)
        rec = {"prompt": prompt, "output": out, "prediction": pred, "target": gold,
               "valid": pred in candidates(task, it, vocab), "correct": pred == gold}
        rec.update({"depth": it.depth} if task == "fld" else {"task": it.task})
        records.append(rec)
    return _summarise(task, records, elapsed)


def _rates(recs: list[dict]) -> dict[str, Any]:
    n = len(recs)
    return {"accuracy": sum(r["correct"] for r in recs) / n if n else 0.0,
            "valid_rate": sum(r["valid"] for r in recs) / n if n else 0.0, "n": n}


def _summarise(task: str, records: list[dict], elapsed: float) -> dict[str, Any]:
    out: dict[str, Any] = _rates(records)
    out["records"] = records
    out["items_per_s"] = len(records) / elapsed if elapsed > 0 else float("inf")
    out["predictions"] = dict(Counter(r["prediction"] if r["valid"] else "<invalid>" for r in records))
    groups: dict[str, dict[Any, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if task == "fld":
            groups["by_depth"][r["depth"]].append(r)
            groups["by_label"][r["target"]].append(r)
        else:
            groups["by_task"][r["task"]].append(r)
    for name, g in groups.items():
        out[name] = {k: _rates(v) for k, v in sorted(g.items(), key=lambda kv: str(kv[0]))}
    return out
