"""Text generators the few-shot evaluator talks to: the protocol and a Hugging Face implementation.

A :class:`Generator` does two things: greedy continuation of prompts (cut at stop strings) and the
log-likelihood of a continuation after a context. :class:`HFGenerator` wraps any ``transformers``
causal LM and its tokenizer (batched, left padding for generation, right padding for scoring,
prompts left-truncated to the model's context); :class:`~xlab.evals.openai_api.OpenAICompatibleGenerator`
talks to an OpenAI-compatible HTTP server.

    from transformers import AutoModelForCausalLM, AutoTokenizer
    gen = HFGenerator(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path))
    gen.generate(["Passage: ...Question: ...\\nAnswer:"], max_new_tokens=5, stop=["\\n"])
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from xlab.errors import XlabError


@runtime_checkable
class Generator(Protocol):
    """Anything that continues prompts greedily and scores continuations."""

    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        """Greedy continuations (without the prompt), each cut before its first stop string."""
        ...

    def loglikelihood(self, contexts: list[str], continuations: list[str]) -> list[float]:
        """Sum of the log-probabilities of each continuation's tokens after its context."""
        ...


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    end = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                end = min(end, i)
    return text[:end]


def _context_limit(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class HFGenerator:
    """:class:`Generator` over a Hugging Face causal LM (greedy decoding, batched)."""

    def __init__(self, model: Any, tokenizer: Any, *, device: str = "cpu", batch_size: int = 16,
                 start: bool = False):
        """``start``: prompts and scored contexts begin the way the tokenizer starts a sequence
        (:mod:`xlab.lm.sequence_start`, e.g. Llama ``<s>``); False: text tokens only."""
        if batch_size < 1:
            raise XlabError(f"HFGenerator: batch_size must be >= 1, got {batch_size}")
        # A DDP/FSDP wrapper hides the config and the forward signature: talk to the inner model.
        model = getattr(model, "module", model)
        self.model = model.to(device)
        self.tokenizer = tokenizer
        from xlab.lm.sequence_start import start_ids

        self._prefix = start_ids(tokenizer, start)
        self.device = device
        self.batch_size = batch_size
        self.max_length = _context_limit(model)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        if pad is None:
            raise XlabError("HFGenerator: the tokenizer has neither a pad nor an eos token; set "
                            "tokenizer.pad_token (e.g. tokenizer.add_special_tokens({'pad_token': '<pad>'}))")
        self.pad_id = int(pad)
        eos = tokenizer.eos_token_id
        self.eos_id = None if eos is None else int(eos)
        # A context starting the text: scoring the first token needs something before it.
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
        self.bos_id = None if bos is None else int(bos)
        # transformers 5.2x renamed ``past_key_values`` to ``cache``; accept models of either era.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        # Only the last position's logits are needed while generating (the prefill's full logits
        # would be batch x context x vocabulary floats).
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    @classmethod
    def from_pretrained(cls, path: str, *, device: str = "cpu", batch_size: int = 16) -> HFGenerator:
        """Load a model and tokenizer saved with ``save_pretrained`` (local files only)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except OSError as e:
            raise XlabError(f"cannot load a causal LM and tokenizer from {path!r}: {e}") from e
        return cls(model, tokenizer, device=device, batch_size=batch_size)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Evaluate without dropout, then give a model that was training back in training mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    # -- generation ----------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        if max_new_tokens < 1:
            raise XlabError(f"HFGenerator.generate: max_new_tokens must be >= 1, got {max_new_tokens}")
        encoded = [self._prefix + self._encode(p) for p in prompts]
        budget = None if self.max_length is None else self.max_length - max_new_tokens
        if budget is not None and budget < 1:
            raise XlabError(f"max_new_tokens={max_new_tokens} leaves no room in the model's context "
                            f"of {self.max_length} tokens")
        # Keep the end of over-long prompts: the query is last, the oldest shots go first.
        encoded = [ids[-budget:] if budget is not None and len(ids) > budget else ids for ids in encoded]
        encoded = [ids or ([self.bos_id] if self.bos_id is not None else [self.pad_id]) for ids in encoded]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        out: list[str] = [""] * len(prompts)
        with self._eval_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                texts = self._generate_batch([encoded[i] for i in idx], max_new_tokens, stop)
                for i, t in zip(idx, texts, strict=True):
                    out[i] = t
        return out

    def _generate_batch(self, batch: list[list[int]], max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):  # left padding: every row ends at the last column
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        new_tokens: list[list[int]] = [[] for _ in batch]
        done = [False] * len(batch)
        past = None
        step_ids, step_pos, mask = input_ids, position_ids, attention
        for _ in range(max_new_tokens):
            out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                             use_cache=True, **{self._cache_arg: past}, **self._last_logits)
            past = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            nxt = out.logits[:, -1, :].argmax(-1)
            for row in range(len(batch)):
                if done[row]:
                    continue
                tok = int(nxt[row])
                if self.eos_id is not None and tok == self.eos_id:
                    done[row] = True
                    continue
                new_tokens[row].append(tok)
                if stop and self._hit_stop(new_tokens[row], stop):
                    done[row] = True
            if all(done):
                break
            step_ids = nxt.unsqueeze(-1)
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        texts = [self.tokenizer.decode(toks, skip_special_tokens=True) for toks in new_tokens]
        return [cut_at_stop(t, stop) for t in texts]

    def _hit_stop(self, toks: list[int], stop: Sequence[str]) -> bool:
        # Decode only the tail: a stop string spans at most a few tokens.
        tail = self.tokenizer.decode(toks[-16:], skip_special_tokens=True)
        return any(s and s in tail for s in stop)

    # -- scoring -------------------------------------------------------------------------------------

    def _pair_tokens(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        ctx = self._prefix + self._encode(context)
        whole = self._prefix + self._encode(context + continuation)
        # Tokenise jointly when the context's tokens survive (merges across the boundary otherwise).
        cont = whole[len(ctx):] if whole[:len(ctx)] == ctx and len(whole) > len(ctx) else self._encode(continuation)
        if not ctx:
            if self.bos_id is None:
                raise XlabError("loglikelihood with an empty context needs a bos or eos token")
            ctx = [self.bos_id]
        return ctx, cont

    @torch.no_grad()
    def loglikelihood(self, contexts: list[str], continuations: list[str]) -> list[float]:
        if len(contexts) != len(continuations):
            raise XlabError(f"loglikelihood: {len(contexts)} contexts but {len(continuations)} continuations")
        pairs = [self._pair_tokens(c, x) for c, x in zip(contexts, continuations, strict=True)]
        for (_, cont), text in zip(pairs, continuations, strict=True):
            if not cont:
                raise XlabError(f"loglikelihood: continuation {text!r} has no tokens")
        seqs = []
        for ctx, cont in pairs:
            ids = ctx + cont
            if self.max_length is not None and len(ids) > self.max_length:
                if len(cont) >= self.max_length:
                    raise XlabError(f"continuation of {len(cont)} tokens does not fit the model's "
                                    f"context of {self.max_length}")
                ids = ids[-self.max_length:]
            seqs.append((ids, len(cont)))
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
        scores = [0.0] * len(seqs)
        with self._eval_mode():
            self._score(seqs, order, scores)
        return scores

    def _score(self, seqs: list[tuple[list[int], int]], order: list[int], scores: list[float]) -> None:
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(seqs[i][0]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # right padding: positions start at 0 for every row
                seq = seqs[i][0]
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            for row, i in enumerate(idx):
                seq, n_cont = seqs[i]
                # Normalise only the continuation's positions: a full (batch, length, vocab) float32
                # log-softmax is gigabytes at GPT-2 vocabulary and context 2048.
                logprobs = torch.log_softmax(logits[row, len(seq) - n_cont - 1:len(seq) - 1].float(), dim=-1)
                targets = torch.tensor(seq[-n_cont:], device=logprobs.device)
                scores[i] = float(logprobs.gather(-1, targets[:, None]).sum())
