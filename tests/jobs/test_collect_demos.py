"""collect_demos end to end: experts on Ray simulators -> RLDS datasets that TFDS reads back -> MLflow."""

import json
import subprocess
import sys

import mlflow
import pytest

from jobs import collect_demos
from xlab.config import apply_overrides
from xlab.errors import XlabError


@pytest.mark.timeout(600)
def test_collect_two_embodiments_and_read_back(ray_local, mlflow_uri, tmp_path):
    cfg = apply_overrides(collect_demos.PRESETS["smoke"], {
        "collect.tasks": ["xlab/sawyer-drawer-close-v0", "xlab/fetch-push-v0"], "collect.episodes_per_task": 2,
        "collect.image_size": 32, "collect.output_dir": str(tmp_path / "rlds"),
    })
    out = collect_demos.main(cfg)
    summary = out["summary"]
    assert set(summary) == {"sawyer", "fetch"}
    for emb, s in summary.items():
        assert s["episodes"] == s["episodes_read_back"] == 2, emb
        assert (tmp_path / "rlds" / f"xlab_{emb}" / "0.1.0" / "dataset_statistics.json").exists()
    # Read back in a fresh process with the real TFDS loader (TensorFlow stays out of this process).
    code = (
        "import sys, tensorflow_datasets as tfds\n"
        "b = tfds.builder_from_directory(sys.argv[1])\n"
        "ep = next(iter(b.as_dataset(split='train')))\n"
        "steps = list(ep['steps'])\n"
        "print(b.info.splits['train'].num_examples, len(steps), steps[0]['observation']['image'].shape,\n"
        "      steps[0]['observation']['natural_language_instruction'].numpy().decode(),\n"
        "      bool(steps[-1]['is_last']), ep['episode_metadata']['embodiment'].numpy().decode())\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "rlds" / "xlab_fetch" / "0.1.0")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    n, steps, shape, *rest = res.stdout.split(maxsplit=3)
    assert n == "2" and int(steps) > 2 and "(32, 32, 3)" in res.stdout and "push" in res.stdout
    assert res.stdout.strip().endswith("True fetch")
    run = mlflow.get_run(out["run_id"])
    assert run.data.metrics["episodes"] == 4 and run.data.metrics["success_rate"] == 1.0
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(out["run_id"], "samples")} == {"samples/sawyer.png",
                                                                                 "samples/fetch.png"}
    per_task = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/success_by_task.json"))
    assert per_task["xlab/fetch-push-v0"]["episodes"] == 2


def test_unknown_embodiment_is_a_config_error():
    with pytest.raises(XlabError, match="collect.embodiments"):
        collect_demos.main(apply_overrides(collect_demos.PRESETS["smoke"], {"collect.embodiments": ["panda"]}))
