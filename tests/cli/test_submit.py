"""`xlab submit` against a real `ray start --head` cluster on 127.0.0.1 with token auth on."""

import os
import subprocess
import tempfile

import mlflow
import pytest
from procs import agent_port_args, free_port, stop_tree, wait_http

from conftest import BIN, run_cli


@pytest.fixture
def ray_head():
    """A Ray head started with `ray start --head --block` in its own temp dir; stopped by its own pids."""
    port, dash = free_port(), free_port()
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="xr", dir="/tmp")
    # The head's job drivers run `python`: make it this venv's, as an activated venv would.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=2", f"--temp-dir={temp_dir}",
         "--object-store-memory=200000000", "--disable-usage-stats", *agent_port_args()],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{dash}"
    try:
        wait_http(f"{url}/api/version", timeout=90, proc=proc)
        yield url
    finally:
        stop_tree(proc)


@pytest.mark.slow
def test_submit_runs_the_study_on_a_token_auth_head(ray_head, tmp_path):
    env = {"RAY_AUTH_MODE": "token", "MLFLOW_TRACKING_URI": ""}
    out = run_cli("submit", "adopt_toy", "--address", ray_head, "--wait", "--preset", "smoke",
                  "--toy.steps", "20000", "--toy.log_every", "5000", "--sweep.optimizers", "adam", "adopt",
                  "--sweep.beta2", "0.1", env=env, cwd=tmp_path, timeout=600)
    assert out.stdout.strip(), f"nothing submitted: {out.stderr[-3000:]}"
    submission_id = out.stdout.strip().splitlines()[0]
    if out.returncode != 0:
        logs = run_cli("logs", submission_id, "--address", ray_head, env=env).stdout
        pytest.fail(f"submission failed:\n{out.stderr[-3000:]}\njob logs:\n{logs[-5000:]}")
    assert submission_id.startswith("raysubmit_")
    assert out.stdout.strip().splitlines()[1:] == ["SUCCEEDED"]  # --wait prints the final status
    status = run_cli("status", submission_id, "--address", ray_head, env=env)
    assert status.stdout.strip() == "SUCCEEDED"
    logs = run_cli("logs", submission_id, "--address", ray_head, env=env)
    assert "MLflow run adopt_toy__smoke__s0__" in logs.stdout
    # The code that ran is the submitted copy, not the xlab installed on the cluster's machine.
    (line,) = [x for x in logs.stdout.splitlines() if x.startswith("[xlab] submitted job adopt_toy: xlab from ")]
    assert "runtime_resources" in line and line.endswith("/platform/xlab"), line
    # A loopback head shares this disk: the run lands in the submitting directory's store.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("adopt_toy").experiment_id])
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    # Without the token the job server refuses the client.
    denied = run_cli("status", submission_id, "--address", ray_head, env={"RAY_AUTH_MODE": "disabled"})
    assert denied.returncode != 0


def packed_files(root, runtime_env: dict) -> set[str]:
    """The file names in the package Ray's job client builds and uploads for ``runtime_env``'s working_dir
    (the same functions the SDK calls, with the upload replaced by keeping the zip)."""
    import zipfile
    from pathlib import Path

    from ray._private.runtime_env.packaging import create_package
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    names: set[str] = set()

    def keep(path, excludes, is_file=False):
        target = Path(tempfile.mkdtemp()) / "pkg.zip"
        create_package(path, target, include_gitignore=True, include_parent_dir=False, excludes=excludes)
        names.update(n for n in zipfile.ZipFile(target).namelist() if not n.endswith("/"))

    upload_working_dir_if_needed(dict(runtime_env), include_gitignore=True, upload_fn=keep)
    return names


def test_the_package_ships_all_of_xlab_and_no_local_data_or_secrets(tmp_path):
    from pathlib import Path

    from xlab.cli.submit import runtime_env

    project = tmp_path / "proj"
    for rel in ("platform/xlab/__init__.py", "platform/xlab/data/__init__.py", "platform/xlab/data/rlds/io.py",
                "platform/xlab/data/senses.tsv", "platform/xlab/data/text/data/x.py", "jobs/train_policy.py",
                "data/rlds/big.tfrecord", "mlruns/1/meta.yaml", "mlflow.db", "ray_results/run/state.pt",
                "logs/a.log", "outputs/o.txt", ".env", "keys/server.pem", "my.token", "jobs/__pycache__/x.pyc"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("x")
    names = packed_files(project, runtime_env(project, "http://127.0.0.1:8265"))
    assert names == {"platform/xlab/__init__.py", "platform/xlab/data/__init__.py", "platform/xlab/data/rlds/io.py",
                     "platform/xlab/data/senses.tsv", "platform/xlab/data/text/data/x.py", "jobs/train_policy.py"}

    # This checkout: every tracked file of the package, the jobs and the robots ships.
    root = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(["git", "-C", str(root), "ls-files", "platform/xlab", "jobs", "robots"],
                             capture_output=True, text=True, check=True).stdout.split()
    shipped = packed_files(root, runtime_env(root, "http://127.0.0.1:8265"))
    assert {"platform/xlab/studydata/__init__.py", "platform/xlab/studydata/polysemy_senses.tsv"} <= shipped
    assert sorted(set(tracked) - shipped) == []


def test_transient_job_server_errors_are_retried_then_one_line(capsys):
    from xlab.cli.submit import retrying
    from xlab.errors import XlabError

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("Request failed with status code 500: No available agent to submit job, please "
                               "try again later.")
        return "raysubmit_1"

    assert retrying(flaky, "http://h:8265", budget_s=10, first_delay_s=0.01) == "raysubmit_1"
    assert len(calls) == 3 and "retrying for up to 10 s" in capsys.readouterr().err

    def down():
        raise RuntimeError("Request failed with status code 503: Service Unavailable")

    with pytest.raises(XlabError, match=r"^the Ray job server at http://h:8265 kept failing for \d+ s: Request "
                                        r"failed with status code 503"):
        retrying(down, "http://h:8265", budget_s=0.2, first_delay_s=0.05)

    def bad():
        raise RuntimeError("Request failed with status code 400: bad runtime_env")

    with pytest.raises(RuntimeError, match="400"):  # not transient: raised at once
        retrying(bad, "http://h:8265", budget_s=10)


@pytest.mark.slow
def test_unknown_submission_ids_are_one_line_errors(ray_head):
    env = {"RAY_AUTH_MODE": "token"}
    for command in ("status", "logs", "stop"):
        out = run_cli(command, "raysubmit_doesnotexist", "--address", ray_head, env=env)
        assert out.returncode == 2, (command, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("xlab: error: no job 'raysubmit_doesnotexist' on"), out.stderr
