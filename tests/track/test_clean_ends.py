"""Clean ends: a job stopped by SIGTERM or Ctrl-C ends its MLflow runs KILLED, stops its Ray work and exits
non-zero; a trial whose process died ends FAILED with its error; recording a failure never hides it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import mlflow
import psutil
import pytest

from xlab.config import JobConfig
from xlab.track import job_run

JOB = textwrap.dedent("""
    import json, os, sys, time

    import mlflow, ray

    import xlab.cli.main
    cli = sys.modules["xlab.cli.main"]  # the module (the package exports its `main` function under that name)

    def body():
        from xlab.config import JobConfig
        from xlab.session import job_session

        cfg = JobConfig(preset="sig")
        cfg.ray.num_cpus = 1
        with job_session("t_clean_end", cfg) as run:
            @ray.remote(num_cpus=0)
            class Sleeper:
                def pid(self):
                    return os.getpid()

            sleeper = Sleeper.remote()
            pid = ray.get(sleeper.pid.remote())
            # A trial's run, opened by another process (a Tune trial) and still running.
            trial = mlflow.MlflowClient().create_run(
                run.info.experiment_id, run_name="trial", tags={"mlflow.parentRunId": run.info.run_id})
            with open(sys.argv[1], "w") as f:
                json.dump({"run": run.info.run_id, "trial": trial.info.run_id, "actor_pid": pid}, f)
            time.sleep(600)

    # As `xlab run` does: the CLI's error handling turns the interrupt into the exit status.
    cli.dispatch = lambda argv: body()
    sys.exit(cli.main([]))
""")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_job_ends_its_runs_killed_stops_ray_and_exits_non_zero(
    mlflow_uri, tmp_path, signum, code
):
    script, out = tmp_path / "job.py", tmp_path / "ids.json"
    script.write_text(JOB)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri},
    )
    deadline = time.monotonic() + 180
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert out.exists(), proc.communicate(timeout=30)[0][-3000:]
    ids = json.loads(out.read_text())
    proc.send_signal(signum)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, output[-3000:]
    assert f"xlab: {'terminated by SIGTERM' if signum == signal.SIGTERM else 'interrupted'}" in output
    client = mlflow.MlflowClient()
    run = client.get_run(ids["run"])
    assert run.info.status == "KILLED"
    assert ("Terminated" if signum == signal.SIGTERM else "KeyboardInterrupt") in run.data.tags["xlab.error"]
    assert client.get_run(ids["trial"]).info.status == "KILLED"
    deadline = time.monotonic() + 30  # the job's actor is gone with its Ray work
    while psutil.pid_exists(ids["actor_pid"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not psutil.pid_exists(ids["actor_pid"])


def test_a_failure_while_recording_a_failure_never_hides_the_first_error(mlflow_uri, monkeypatch, capsys):
    real_set_tag = mlflow.MlflowClient.set_tag

    def set_tag(self, run_id, key, value, *a, **k):
        if key == "xlab.error":
            raise ConnectionError("tracking server went away")
        return real_set_tag(self, run_id, key, value, *a, **k)

    monkeypatch.setattr(mlflow.MlflowClient, "set_tag", set_tag)
    with pytest.raises(ZeroDivisionError), job_run("t_record_failure", JobConfig()) as run:  # the first error
        1 / 0  # noqa: B018
    assert "could not attach the error to MLflow run" in capsys.readouterr().err
    assert mlflow.MlflowClient().get_run(run.info.run_id).info.status == "FAILED"


@pytest.mark.timeout(300)
def test_a_trial_whose_process_dies_ends_failed_with_the_error(ray_local, mlflow_uri):
    from xlab.tune import grid, run_sweep

    def trial(cfg):  # a closure: shipped to the trial by value
        import os

        if cfg.seed == 1:
            os._exit(3)  # the process dies (OOM killer, segfault): no chance to end its run
        return {"ok": 1.0}

    with pytest.raises(Exception):  # noqa: B017 (the job fails: a trial failed)
        with job_run("t_trial_crash", JobConfig()) as parent:
            results = run_sweep(
                trial,
                JobConfig(),
                grid({"seed": [0, 1]}),
                parent_run_id=parent.info.run_id,
                metric="ok",
                mode="max",
                cpus_per_trial=0.5,
                verbose=0,
            )
            from xlab.tune import raise_on_errors

            raise_on_errors(results)
    runs = {
        r.data.params["seed"]: r
        for r in mlflow.search_runs(
            experiment_names=["t_trial_crash"],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
            output_format="list",
        )
    }
    assert runs["0"].info.status == "FINISHED"
    crashed = runs["1"]
    assert crashed.info.status == "FAILED" and "xlab.early_stopped" not in crashed.data.tags
    assert crashed.data.tags["xlab.error"]
