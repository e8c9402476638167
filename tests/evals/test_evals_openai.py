"""OpenAICompatibleGenerator against a local stub of a /v1/completions server (a test double)."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from xlab.errors import XlabError
from xlab.evals import OpenAICompatibleGenerator, evaluate_fewshot, fld_examples


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), body))
        if self.server.mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "model exploded"}')
            return
        prompts = body["prompt"]
        choices = []
        for i, p in enumerate(prompts):
            if body.get("echo"):
                if self.server.mode == "no_logprobs":
                    choices.append({"index": i, "text": p, "logprobs": None})
                    continue
                pieces = [(m.start(), m.group()) for m in re.finditer(r"\s*\S+", p)]
                lp = {"tokens": [t for _, t in pieces], "text_offset": [o for o, _ in pieces],
                      "token_logprobs": [None] + [-1.0] * (len(pieces) - 1)}
                choices.append({"index": i, "text": p, "logprobs": lp})
            else:
                choices.append({"index": i, "text": " UNKNOWN\n\nBased on the provided facts"})
        choices.reverse()  # the client must order by index
        payload = json.dumps({"id": "cmpl-1", "object": "text_completion", "choices": choices}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests, srv.mode = [], "ok"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv):
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def test_generate_and_loglikelihood(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    gen = OpenAICompatibleGenerator(_url(server), model="tiny", batch_size=2, timeout=5)
    out = gen.generate(["a", "b", "c"], max_new_tokens=5, stop=["\n\n", "Based on"])
    assert out == [" UNKNOWN"] * 3
    path, headers, body = server.requests[0]
    assert path == "/v1/completions" and headers["Authorization"] == "Bearer sk-test"
    assert body["temperature"] == 0.0 and body["max_tokens"] == 5 and body["stop"] == ["\n\n", "Based on"]
    assert len(server.requests) == 2  # batches of two
    scores = gen.loglikelihood(["the cat sat", "x"], [" on the mat", " y"])
    assert scores == [-3.0, -1.0]
    body = server.requests[-1][2]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 0


def test_evaluation_through_the_server(server):
    items = fld_examples(6, seed=1)
    gen = OpenAICompatibleGenerator(_url(server), model="tiny")
    r = evaluate_fewshot(gen, "fld", items, shots=2)
    assert r["valid_rate"] == 1.0 and r["accuracy"] == pytest.approx(sum(e.label == "UNKNOWN" for e in items) / 6)


def test_clear_errors(server):
    gen = OpenAICompatibleGenerator(_url(server), model="tiny")
    server.mode = "no_logprobs"
    with pytest.raises(XlabError, match="mode='generate'"):
        gen.loglikelihood(["a"], [" b"])
    server.mode = "error"
    with pytest.raises(XlabError, match="HTTP 500.*model exploded"):
        gen.generate(["a"], max_new_tokens=2)
    with pytest.raises(XlabError, match="cannot reach"):
        OpenAICompatibleGenerator("http://127.0.0.1:9/v1", model="m", timeout=2).generate(["a"], max_new_tokens=1)
    with pytest.raises(XlabError, match="base_url"):
        OpenAICompatibleGenerator("localhost:8000", model="m")
