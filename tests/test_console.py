"""The console filter: xlab's lines (and a worker's, without Ray's prefix) on the terminal, the rest only in the log."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from xlab.console import console_worthy


def test_console_worthy_keeps_xlab_lines_and_drops_library_noise():
    keep = {
        "(RayTrainWorker pid=123, ip=10.0.0.1) [train_policy] step 50/600  loss 1.2": "[train_policy] step 50/600  loss 1.2",
        "\x1b[36m(pid=99)\x1b[0m [collect_demos] hi": "[collect_demos] hi",
        "[eval_policy] 80 episodes": "[eval_policy] 80 episodes",
        "controller  level  name  episodes": "controller  level  name  episodes",
    }
    for line, shown in keep.items():
        assert console_worthy(line) == shown, line
    drop = [
        "(RayTrainWorker pid=123) 2026-12-03 06:00:00.123: I tensorflow/core/util/port.cc:153] oneDNN custom ops",
        "2026-12-03 06:00:00,123\tINFO worker.py:1234 -- Started a local Ray instance.",
        "Running 0: 100%|██████████| 3/3 [00:01<00:00,  2.1 row/s]",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "(_read_shard_windows pid=99) I0000 00:00:1733 1234 cpu_feature_guard.cc:210] This TensorFlow binary",
        "\x1b[A\x1b[A",
        "\x1b[A\x1b[A\x1b[36m(SplitCoordinator pid=8341)\x1b[0m [dataset]: A new progress UI is available.",
        "   ",
        "2026/12/03 08:13:36 WARNING mlflow.pyfunc: Passing a Python object as `python_model` causes it",
        "  color_warning(",  # the source line Python prints under a warning
        "Registered model 'rt1x-policy' already exists. Creating a new version of this model...",
        "Created version '5' of model 'rt1x-policy'.",
    ]
    for line in drop:
        assert console_worthy(line) is None, line


def test_capture_sends_everything_to_the_log_and_filtered_lines_to_the_terminal(tmp_path):
    log = tmp_path / "job.log"
    script = textwrap.dedent(f"""
        import os, sys
        from xlab.console import console_capture
        with console_capture({str(log)!r}):
            print("[job] stage one")
            print("2026-12-03 06:00:00,123\\tINFO worker.py:1 -- noise")
            os.write(2, b"I0000 00:00:1 port.cc:153] oneDNN custom operations are on.\\n")
            print("[job] stage one")  # a duplicate in a row is shown once
            print("[job] step 2")
            print("[job] step 1 eval")
            print("[job] step 2")  # Ray's log monitor repeats a pair of worker lines, interleaved
            print("[job] step 1 eval")
            print("[job] done")
        print("after")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[job] stage one", "[job] step 2", "[job] step 1 eval", "[job] done", "after"]
    text = log.read_text()
    assert "INFO worker.py" in text and "oneDNN" in text and text.count("[job] stage one") == 2
