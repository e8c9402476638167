"""The lang_neurons job: config checks and data split (fast); the smoke preset end to end with its effect (slow)."""

import mlflow
import pytest

from jobs import lang_neurons
from xlab.config import apply_overrides
from xlab.errors import XlabError


def test_config_errors_name_the_field():
    with pytest.raises(XlabError, match="data.languages"):
        apply_overrides(lang_neurons.PRESETS["smoke"], {"data.languages": ["en", "xx"]})
    with pytest.raises(XlabError, match="analysis.n_values"):
        apply_overrides(lang_neurons.PRESETS["smoke"], {"analysis.n_values": [0]})


def test_scored_and_training_sentences_are_disjoint_per_language():
    cfg = apply_overrides(lang_neurons.PRESETS["smoke"], {"data.per_language": 20, "data.train_per_language": 30})
    scored, train = lang_neurons.load_sentences(cfg)
    assert len(scored) == 6 * 20 and len(train) == 6 * 8  # documents of 4 sentences
    assert not any(s.text in doc for s in scored for doc in train)
    assert {s.lang for s in scored} == set(cfg.data.languages)


def _children(run_id):
    parent = mlflow.get_run(run_id)
    kids = mlflow.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
                              output_format="list")
    return parent, {k.info.run_name: k for k in kids}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_preset_tampering_raises_target_language_share(ray_local, mlflow_uri):
    out = lang_neurons.main(lang_neurons.PRESETS["smoke"])
    parent, kids = _children(out["run_id"])
    assert parent.info.status == "FINISHED"
    assert set(kids) == {"baseline", "N=20", "N=100", "N=400"} and all(k.info.status == "FINISHED" for k in kids.values())
    client = mlflow.MlflowClient()
    arts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"share_vs_n.png", "overlap.png", "units_per_layer.png", "selected_units.json", "summary.json"} <= arts
    assert mlflow.get_run(out["run_id"]).data.tags["xlab.subject_model"] == f"runs:/{out['run_id']}/subject_model"
    m = out["metrics"]
    # The effect: tampering with the selected units pushes generations into the target language
    # (measured: gains of +0.15 to +0.88 at N = 400, e.g. ja 0.07 -> 0.95, de 0.20 -> 0.95).
    assert m["share_gain_max"] >= 0.4
    assert sum(m[f"share_gain/{lang}"] > 0.1 for lang in ("en", "de", "fr", "es", "zh", "ja")) >= 3
    assert 0.0 <= m["overlap_mean"] < 0.5
