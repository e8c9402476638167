"""Credentials are never printed, logged or uploaded (issue #15, item 4)."""

import dataclasses
import fnmatch
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest

from conftest import ROOT
from xlab.config import JobConfig, TrackingConfig
from xlab.errors import XlabError
from xlab.track import job_run
from xlab.track.store import check_server

SECRET_URI = "http://alice:s3cret@127.0.0.1:9"


@dataclasses.dataclass
class Cfg(JobConfig):
    lr: float = 0.1


def test_redact_uri():
    from xlab.track.store import redact_uri

    assert redact_uri("at http://alice:s3cret@mlflow.internal:5000/x") == "at http://***@mlflow.internal:5000/x"
    assert redact_uri("https://tok@h/p and sqlite:////tmp/a@b.db") == "https://***@h/p and sqlite:////tmp/a@b.db"
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_job_run_hides_tracking_credentials(mlflow_uri, capsys):
    cfg = Cfg(tracking=TrackingConfig(uri=SECRET_URI))
    with job_run("t_secret", cfg, tracking_uri=SECRET_URI) as run:
        pass
    out = capsys.readouterr()
    assert "s3cret" not in out.out + out.err and "http://***@127.0.0.1:9" in out.out
    got = mlflow.get_run(run.info.run_id)
    assert got.data.params["tracking.uri"] == "http://***@127.0.0.1:9"
    assert "s3cret" not in str(mlflow.artifacts.load_dict(f"{got.info.artifact_uri}/config.json"))


def test_unreachable_server_error_hides_credentials():
    with pytest.raises(XlabError, match=r"MLflow server at http://\*\*\*@127\.0\.0\.1:9") as e:
        check_server(SECRET_URI, timeout=2)
    assert "s3cret" not in str(e.value)


@pytest.mark.parametrize("name", ["xlab.token", ".env", "tls.pem", "sub/dir/ray.token"])
def test_secret_files_are_ignored_and_never_uploaded(name):
    from xlab.cli.submit import EXCLUDES

    ignored = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    base = name.rsplit("/", 1)[-1]
    assert any(fnmatch.fnmatch(base, pat) for pat in ignored if pat and not pat.startswith("#")), name
    assert any(fnmatch.fnmatch(base, pat) for pat in EXCLUDES), name


class _Redirect(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.server.auth.append(self.headers.get("Authorization"))
        self.send_response(307)
        self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/elsewhere")
        self.end_headers()


def test_openai_client_refuses_redirects_with_the_key():
    from xlab.evals import OpenAICompatibleGenerator

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    srv.auth = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        gen = OpenAICompatibleGenerator(f"http://127.0.0.1:{srv.server_address[1]}/v1", "m", api_key="sk-x",
                                        timeout=5)
        with pytest.raises(XlabError, match="redirected"):
            gen.generate(["a"], max_new_tokens=1)
        assert srv.auth == ["Bearer sk-x"]  # one request; the key was not re-sent to the redirect target
    finally:
        srv.shutdown()
        srv.server_close()


def test_openai_client_refuses_plain_http_to_remote_hosts_with_a_key(monkeypatch):
    from xlab.evals import OpenAICompatibleGenerator

    with pytest.raises(XlabError, match="plain http"):
        OpenAICompatibleGenerator("http://api.example.com/v1", "m", api_key="sk-x")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    OpenAICompatibleGenerator("http://api.example.com/v1", "m")  # no key: nothing to leak
    OpenAICompatibleGenerator("https://api.example.com/v1", "m", api_key="sk-x")
    OpenAICompatibleGenerator("http://localhost:8000/v1", "m", api_key="sk-x")
    OpenAICompatibleGenerator("http://[::1]:8000/v1", "m", api_key="sk-x")
