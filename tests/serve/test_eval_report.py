"""The report of one evaluation without Ray: task selection, flat metrics, plot and console table."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from xlab.errors import XlabError
from xlab.serve.eval_report import console_summary, eval_metrics, frame_strip, select_tasks, success_plot
from xlab.serve.evaluate import RunStats, summarize
from xlab.serve.simulator import EpisodeResult

REACH = "xlab/fetch-reach-v0"


def test_tasks_metrics_plot_and_table():
    import robots

    assert select_tasks((REACH,), ()) == [REACH]
    fetch = select_tasks((), ("fetch",))
    assert REACH in fetch and all(robots.get_task(t).embodiment == "fetch" for t in fetch)
    with pytest.raises(XlabError, match="eval.embodiments"):
        select_tasks((), ("spot",))
    results = [EpisodeResult(f"{c}/{REACH}/{i}", REACH, c, i, success=(c == "expert" or i < 1), steps=5,
                             latencies_ms=[2.0, 4.0] if c == "policy" else [])
               for c in ("policy", "expert") for i in range(4)]
    stats = RunStats(seconds=2.0, episodes=8, env_steps=40, events=["simulator 0 restarted"])
    rows = summarize(results)
    m = eval_metrics(rows, results, stats, {"batches": 3, "mean_batch": 2.5}, main_controller="policy")
    assert m["success/all"] == 0.25 and m["expert/success/all"] == 1.0 and m["success/fetch-reach-v0"] == 0.25
    assert m["success_ci_low/fetch"] < 0.25 < m["success_ci_high/fetch"] and "success_ci_low/all" not in m
    assert (m["mean_batch_size"], m["action_latency_p50_ms"], m["env_steps_per_s"]) == (2.5, 3.0, 20.0)
    text = console_summary(rows, stats, None, n_tasks=1)
    assert "8 episodes in 2s (20 env steps/s)" in text and text.endswith("[eval_policy] simulator 0 restarted")
    fig = success_plot(rows)
    assert len(fig.axes[0].patches) == 2  # one bar per controller
    plt.close(fig)
    assert frame_strip(np.zeros((30, 4, 5, 3), np.uint8)).shape == (4, 60, 3)
