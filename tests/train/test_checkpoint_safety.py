"""Checkpoints are data only: a pickled object is refused on load and never runs (issue #15, item 2)."""

import dataclasses

import pytest
import torch

from xlab.checkpoint import check_plain, load_checkpoint, save_checkpoint
from xlab.errors import XlabError


class WritesAFile:
    """Unpickling this creates ``path``: the stand-in for code run by a malicious checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_checkpoint(tmp_path, name: str = "state.pt"):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    torch.save({"model": {"w": torch.zeros(2)}, "step": 3, "x": WritesAFile(str(marker))}, path)
    return path, marker


def test_load_checkpoint_refuses_pickled_objects(tmp_path):
    path, marker = evil_checkpoint(tmp_path)
    with pytest.raises(XlabError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_save_checkpoint_refuses_objects_and_round_trips_data(tmp_path):
    @dataclasses.dataclass
    class Cfg:
        lr: float = 1.0

    with pytest.raises(XlabError, match=r"checkpoint\['config'\] is a Cfg"):
        save_checkpoint({"config": Cfg()}, tmp_path / "a.pt")
    data = {"model": {"w": torch.ones(2)}, "steps_to": {0.9: None, 0.5: 10}, "config": dataclasses.asdict(Cfg()),
            "history": [{"step": 0.0}], "betas": (0.9, 0.98), "rng": torch.get_rng_state()}
    check_plain(data)
    save_checkpoint(data, tmp_path / "b.pt")
    back = load_checkpoint(tmp_path / "b.pt")
    assert back["steps_to"] == {0.9: None, 0.5: 10} and back["betas"] == (0.9, 0.98)


def test_train_runner_resume_refuses_a_pickled_checkpoint(tmp_path):
    from xlab.train.runner import LocalReporter

    path, marker = evil_checkpoint(tmp_path)
    with pytest.raises(XlabError, match="refusing to load"):
        LocalReporter("t", 10, checkpoint_dir=tmp_path).latest_checkpoint()
    assert not marker.exists()


def test_resume_from_refuses_a_pickled_checkpoint(tmp_path):
    """``resume_from`` / ``--train.resume DIR`` of every Ray Train trainer reads through the harness."""
    from xlab.train.distributed import CHECKPOINT_FILE, read_checkpoint

    path, marker = evil_checkpoint(tmp_path, CHECKPOINT_FILE)
    with pytest.raises(XlabError, match="refusing to load"):
        read_checkpoint(tmp_path)
    assert not marker.exists()


def test_grokking_tickets_refuses_a_pickled_dense_artifact(tmp_path, monkeypatch):
    import mlflow

    import jobs.grokking_tickets as gt

    path, marker = evil_checkpoint(tmp_path, "dense.pt")
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda **kw: str(path))
    with pytest.raises(XlabError, match="refusing to load"):
        gt.load_dense("run-id")
    assert not marker.exists()
