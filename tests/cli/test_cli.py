"""The xlab command: listing, and one-line errors for bad input (no tracebacks)."""

import pytest

from conftest import run_cli


def test_jobs_lists_every_job_with_a_description():
    out = run_cli("jobs")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(None, 1) for line in out.stdout.strip().splitlines())
    assert "adopt_toy" in lines and "ADOPT" in lines["adopt_toy"]


def test_run_help_shows_dotted_fields():
    out = run_cli("run", "adopt_toy", "--help")
    assert out.returncode == 0
    assert "--toy.beta2" in out.stdout and "--sweep.optimizers" in out.stdout


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["run", "nope"], {}, "unknown job 'nope'; available jobs: "),
        (["run", "adopt_toy", "--preset", "huge"], {}, "unknown preset 'huge'; choose one of: smoke, paper"),
        (["run", "adopt_toy", "--toy.betaa", "0.3"], {}, "Unrecognized options: --toy.betaa"),
        (["run", "adopt_toy", "--toy.beta2", "1.5"], {}, "toy.beta2: must be in [0, 1), got 1.5"),
        (["run", "adopt_toy", "--sweep.optimizers", "adom"], {}, "adom"),
        (["submit", "adopt_toy", "--address", "http://127.0.0.1:9"], {},
         "cannot reach the Ray job server at http://127.0.0.1:9"),
        (["run", "adopt_toy", "--ray.address", "127.0.0.1:9"], {"MLFLOW_TRACKING_URI": ""},
         "cannot reach the Ray cluster at 127.0.0.1:9"),
        (["run", "adopt_toy"], {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
         "cannot reach the MLflow server at http://127.0.0.1:9"),
        (["status", "raysubmit_x", "--address", "http://127.0.0.1:9"], {}, "cannot reach the Ray job server"),
        (["runs", "nope_nope"], {}, "no MLflow experiment 'nope_nope'"),
    ],
)
def test_bad_input_is_one_line_error(args, env, needle, tmp_path):
    out = run_cli(*args, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    err = out.stderr.strip()
    assert "Traceback" not in out.stderr
    assert err.startswith("xlab: error:") and len(err.splitlines()) == 1, err
    assert needle in err


def test_python_m_job_is_the_same_entry(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run([sys.executable, "-m", "jobs.adopt_toy", "--preset", "nope"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "unknown preset 'nope'" in out.stderr
