"""A :class:`~xlab.evals.generators.Generator` over an OpenAI-compatible ``/v1/completions`` server.

Works with any server that speaks the legacy completions API (vLLM, llama.cpp's server, TGI's
OpenAI front end, ...). Greedy decoding is ``temperature=0``; the log-likelihood of a continuation
uses ``echo=True, logprobs=1, max_tokens=0`` and sums the prompt tokens that start at or after the
continuation's first character. Servers that do not return echoed log-probabilities raise an
:class:`~xlab.errors.XlabError` telling the user to evaluate in ``generate`` mode instead.

    gen = OpenAICompatibleGenerator("http://localhost:8000/v1", model="my-model")  # key: $OPENAI_API_KEY
    gen.generate(["Passage: ...\\nAnswer:"], max_new_tokens=5, stop=["\\n"])
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from xlab.errors import XlabError
from xlab.evals.generators import cut_at_stop
from xlab.runtime import is_loopback


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would re-send the Authorization header (the API key) to the new host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 - urllib's signature
        raise XlabError(f"{req.full_url} redirected (HTTP {code}) to {newurl}; refusing to follow with the API "
                        "key: set base_url to the final address")


_OPENER = urllib.request.build_opener(_NoRedirect)


class OpenAICompatibleGenerator:
    """Greedy completions and echoed log-probabilities from an OpenAI-compatible HTTP endpoint."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0, batch_size: int = 16):
        if not base_url.startswith(("http://", "https://")):
            raise XlabError(f"OpenAICompatibleGenerator: base_url must start with http:// or https://, "
                            f"got {base_url!r} (e.g. http://localhost:8000/v1)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        host = urlparse(self.base_url).hostname or ""
        if self.api_key and self.base_url.startswith("http://") and not is_loopback(host):
            raise XlabError(f"OpenAICompatibleGenerator: refusing to send an API key over plain http to {host}; "
                            "use https:// (or a loopback address such as http://127.0.0.1:8000/v1)")
        self.timeout = timeout
        self.batch_size = batch_size

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                body = resp.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:300]
            raise XlabError(f"{url} answered HTTP {e.code}: {detail}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise XlabError(f"cannot reach {url} ({reason}); is the server running and the base_url right "
                            f"(it should end in /v1)? timeout was {self.timeout}s") from e
        try:
            data = json.loads(body)
        except json.JSONDecodeError as e:
            raise XlabError(f"{url} did not return JSON: {body[:200]!r}") from e
        if not isinstance(data, dict) or "choices" not in data:
            raise XlabError(f"{url} returned no 'choices': {body[:200]!r}")
        return data

    @staticmethod
    def _ordered(data: dict[str, Any], n: int) -> list[dict[str, Any]]:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise XlabError(f"the server returned {len(choices)} completions for {n} prompts")
        return choices

    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        out: list[str] = []
        stops = [s for s in stop if s]
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start:start + self.batch_size]
            payload: dict[str, Any] = {"model": self.model, "prompt": batch, "max_tokens": max_new_tokens,
                                       "temperature": 0.0}
            if stops:
                payload["stop"] = stops[:4]  # the OpenAI API accepts at most four
            for choice in self._ordered(self._post(payload), len(batch)):
                out.append(cut_at_stop(choice.get("text", ""), stops))
        return out

    def loglikelihood(self, contexts: list[str], continuations: list[str]) -> list[float]:
        if len(contexts) != len(continuations):
            raise XlabError(f"loglikelihood: {len(contexts)} contexts but {len(continuations)} continuations")
        out: list[float] = []
        for start in range(0, len(contexts), self.batch_size):
            ctx = contexts[start:start + self.batch_size]
            cont = continuations[start:start + self.batch_size]
            payload = {"model": self.model, "prompt": [c + x for c, x in zip(ctx, cont, strict=True)],
                       "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0.0}
            for choice, c in zip(self._ordered(self._post(payload), len(ctx)), ctx, strict=True):
                lp = choice.get("logprobs") or {}
                tokens, offsets = lp.get("token_logprobs"), lp.get("text_offset")
                if not tokens or not offsets:
                    raise XlabError(f"{self.base_url} does not return echoed prompt logprobs "
                                    "(echo+logprobs); use mode='generate' with this server")
                picked = [v for v, off in zip(tokens, offsets, strict=True) if off >= len(c)]
                if not picked or any(v is None for v in picked):
                    raise XlabError("the server's echoed logprobs do not cover the continuation; "
                                    "use mode='generate' with this server")
                out.append(float(sum(picked)))
        return out
