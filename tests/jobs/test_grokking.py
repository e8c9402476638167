"""The grokking and grokking-tickets jobs end to end through Ray Tune and MLflow, with their effects."""

import mlflow
import pytest

from jobs import grokking, grokking_tickets
from xlab.config import apply_overrides


def _children(run_id: str):
    parent = mlflow.get_run(run_id)
    return parent, mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        output_format="list",
    )


def _artifacts(run_id: str) -> set[str]:
    client = mlflow.MlflowClient()
    return {a.path for a in client.list_artifacts(run_id)}


@pytest.mark.timeout(600)
def test_grokking_smoke_groks_add_with_fourier_curves(ray_local, mlflow_uri):
    # p = 31 with half the pairs and a half-width transformer (width 64, MLP 256) groks a+b at ~4.5k steps with
    # memorization at ~200: the effect of the smoke preset at about a tenth of its cost per step (480 training
    # pairs instead of 1,488; measured 2026-12-03, 27 ms vs 165 ms a step on the loaded 2-core machine).
    cfg = apply_overrides(grokking.PRESETS["smoke"], {
        "sweep.ops": ["add"], "data.p": 31, "data.train_frac": 0.5, "model.d_model": 64, "model.d_mlp": 256,
        "train.eval_every": 100, "train.stop_after_grok": 200,
    })
    out = grokking.main(cfg)
    parent, children = _children(out["run_id"])
    assert parent.info.status == "FINISHED" and len(children) == 1
    (child,) = children
    m = child.data.metrics
    # Grokking: train accuracy hits 1.0 first, test accuracy from chance to > 0.95 much later.
    assert m["steps_to_0.95"] <= cfg.train.steps
    assert m["steps_to_train_1.0"] < m["steps_to_0.95"] and m["grok_delay"] >= 1000
    assert m["test_acc_at_train_fit"] < 0.5
    history = mlflow.MlflowClient().get_metric_history(child.info.run_id, "test/acc")
    assert history[0].value < 0.1 and history[-1].value > 0.95
    # The Fourier progress measure: the embedding collapses to a few key frequencies.
    ffs = mlflow.MlflowClient().get_metric_history(child.info.run_id, "fourier/embed_ffs")
    assert ffs[0].value > 0.8 and ffs[-1].value < 0.4
    assert {"curves.png", "spectrum_embed.png", "history.json", "fourier_spectra.json", "checkpoint"} <= _artifacts(
        child.info.run_id)
    assert {"comparison.png", "summary.json"} <= _artifacts(parent.info.run_id)


# An end-to-end study run (three Tune trials of up to 12k steps, 2-3.5 min on 2 cores): slow suite.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tickets_sweep_with_two_trials_reports_speedup(ray_local, mlflow_uri):
    # p = 43 with half the pairs for training groks in ~7k dense steps: quick enough for the suite.
    cfg = apply_overrides(grokking_tickets.PRESETS["smoke"], {
        "data.p": 43, "data.train_frac": 0.5, "train.steps": 12000, "ticket.variants": ["ticket", "random"],
        "ticket.max_steps": 1500,
    })
    out = grokking_tickets.main(cfg)
    parent, children = _children(out["run_id"])
    variants = {c.data.params["ticket.variant"]: c for c in children}
    assert set(variants) == {"dense", "ticket", "random"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"curves.png", "history.json"} <= _artifacts(child.info.run_id)
    assert variants["ticket"].data.metrics["density"] == pytest.approx(0.4, abs=0.01)
    # The ticket groks far sooner than the dense net; the random mask of the same density does not.
    m = parent.data.metrics
    assert m["speedup_0.95"] > 3
    assert variants["random"].data.metrics["reached_0.95"] == 0.0
    assert {"comparison.png", "summary.json"} <= _artifacts(parent.info.run_id)
    # Tickets are evaluated every 20 steps (smoke), so steps-to-grok is not on a 100-step grid.
    acc = mlflow.MlflowClient().get_metric_history(variants["ticket"].info.run_id, "test/acc")
    assert sorted(h.step for h in acc)[1:3] == [20, 40]
    # The periodicity analysis: the generalizing ticket's input map concentrates on few frequencies.
    ent = {v: c.data.metrics["periodicity/entropy"] for v, c in variants.items()}
    assert ent["ticket"] < ent["random"]
    assert "spectra.png" in _artifacts(variants["ticket"].info.run_id)
    hist = mlflow.MlflowClient().get_metric_history(variants["dense"].info.run_id, "periodicity/entropy")
    assert len(hist) >= 3 and hist[-1].value < hist[0].value  # start, every 1000 steps, end


# Two Ray Train workers for one trial (~40-60 s): slow suite.
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_grokking_trial_can_be_a_two_worker_ray_train_run(ray_local, mlflow_uri):
    """The Train V2 pattern: each Tune trial builds a 2-worker TorchTrainer; metrics reach MLflow and Tune."""
    cfg = apply_overrides(grokking.PRESETS["smoke"], {
        "sweep.ops": ["add"], "data.p": 13, "data.train_frac": 0.5, "model.d_model": 32, "model.d_mlp": 64,
        "train.steps": 60, "train.eval_every": 20, "train.num_workers": 2, "train.cpus_per_worker": 0.9,
    })
    out = grokking.main(cfg)
    _, (child,) = _children(out["run_id"])
    assert child.info.status == "FINISHED"
    losses = mlflow.MlflowClient().get_metric_history(child.info.run_id, "train/loss")
    assert [m.step for m in losses][:1] == [0] and losses[-1].value < losses[0].value
    assert "curves.png" in _artifacts(child.info.run_id)
