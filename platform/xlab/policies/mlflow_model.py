"""Ship an RT-1 policy as an MLflow model (pyfunc) and load it back by registry alias for serving.

The model holds everything needed to act: the policy's ``save_pretrained`` directory (weights and
its config), the action bounds and vocabulary it tokenizes with (``action_bounds.json``), and the
``dataset_statistics.json`` of every training dataset (``statistics/<dataset>.json``)::

    from xlab.policies.mlflow_model import log_policy, load_registered_policy
    uri = log_policy(policy, name="policy", registered_model_name="rt1x-policy", alias="latest-train",
                     stats_paths={"xlab_sawyer": "data/rlds/xlab_sawyer/0.1.0/dataset_statistics.json"})
    policy = load_registered_policy("models:/rt1x-policy@latest-train")   # an RT1Policy
    action = policy.act(images, embedding)                                  # RT-1 action dict

``mlflow.pyfunc.load_model(uri).predict({"image": ..., "embedding": ..., "pad_mask": ...})`` returns
the same action dict, so generic MLflow tooling can run it too. xlab's own loaders never do that
(pyfunc loading unpickles ``python_model.pkl`` and imports ``code/``): they read the JSON files and
tensor-only weights of the downloaded model and refuse anything that is not an xlab policy. Registry stages are deprecated:
versions are addressed by alias (``MlflowClient().set_registered_model_alias``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from xlab.errors import XlabError

# MLflow 3 nags about a predict() without type hints; our input is a dict of arrays, validated in predict.
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*", category=UserWarning)

POLICY_ARTIFACT = "policy"
BOUNDS_ARTIFACT = "action_bounds"
STATS_PREFIX = "stats__"


class PolicyModelError(XlabError):
    """A registered policy cannot be found or loaded (wrong URI / alias, or not an xlab policy model)."""


def _bounds_dict(policy: Any) -> dict[str, Any]:
    """Action bounds and vocabulary the policy detokenizes with (from its config, else RT-1-X's)."""
    from xlab.rlds.tokenize import RT1X_BOUNDS

    cfg = getattr(policy, "config", None)
    bounds = getattr(cfg, "bounds", None) or RT1X_BOUNDS
    name = bounds if isinstance(bounds, str) else None
    if name is not None:  # RT1Config names its bounds ("rt1x"); the policy module maps names to ActionBounds
        from xlab.policies import rt1

        bounds = rt1.BOUNDS[name]
    return {
        "name": name,
        "bounds": {k: list(v) for k, v in dataclasses.asdict(bounds).items()},
        "vocab_size": int(getattr(cfg, "vocab_size", 256)),
        "num_action_tokens": int(getattr(cfg, "num_action_tokens", 11)),
    }


class RT1PolicyModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``predict({"image", "embedding", ["pad_mask"]})`` -> RT-1 action dict (numpy, ``[B, ...]``).

    After ``load_context`` the model exposes ``policy`` (the ``RT1Policy``), ``bounds`` and
    ``statistics`` (dataset name -> the dataset's ``dataset_statistics.json`` content).
    """

    def __init__(self) -> None:
        self.policy: Any = None
        self.bounds: dict[str, Any] = {}
        self.statistics: dict[str, Any] = {}

    def load_context(self, context: Any) -> None:
        from xlab.policies import load_policy

        arts = context.artifacts
        self.policy = load_policy(arts[POLICY_ARTIFACT])
        self.policy.eval()
        self.bounds = json.loads(Path(arts[BOUNDS_ARTIFACT]).read_text())
        self.statistics = {
            k[len(STATS_PREFIX):]: json.loads(Path(v).read_text()) for k, v in arts.items() if k.startswith(STATS_PREFIX)
        }

    # model_input has no type hint on purpose: MLflow turns a hint into a schema (it wants list[...]) and
    # warns; the input is a dict of arrays, checked below.
    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        if not isinstance(model_input, Mapping) or "image" not in model_input or "embedding" not in model_input:
            raise PolicyModelError(
                "policy model input must be a dict with 'image' uint8 [B,T,H,W,3], 'embedding' [B,E] "
                "and optionally 'pad_mask' bool [B,T]"
            )
        mode = (params or {}).get("mode", "argmax")
        pad = model_input.get("pad_mask")
        return self.policy.act(
            np.asarray(model_input["image"], np.uint8),
            np.asarray(model_input["embedding"], np.float32),
            pad_mask=None if pad is None else np.asarray(pad, bool),
            mode=mode,
        )


def _pip_requirements() -> list[str]:
    # Explicit: otherwise MLflow infers them by loading the model in a subprocess (slow, imports TF/Ray).
    import torch

    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]


def log_policy(
    policy: Any,
    name: str = "policy",
    registered_model_name: str | None = None,
    alias: str | None = None,
    stats_paths: Mapping[str, str | os.PathLike] | None = None,
    run_id: str | None = None,
) -> str:
    """Log ``policy`` as a pyfunc model in the active run (or ``run_id``); register it and set ``alias``.

    Returns ``models:/NAME@ALIAS`` when registered with an alias, ``models:/NAME/VERSION`` when
    registered without one, else the logged model's URI. ``stats_paths`` maps dataset names to their
    ``dataset_statistics.json`` (missing files are skipped with a note in the model's metadata).
    """
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        policy_dir = Path(tmp) / "policy"
        policy.save_pretrained(policy_dir)
        bounds_file = Path(tmp) / "action_bounds.json"
        bounds_file.write_text(json.dumps(_bounds_dict(policy), indent=2))
        artifacts = {POLICY_ARTIFACT: str(policy_dir), BOUNDS_ARTIFACT: str(bounds_file)}
        missing = []
        for ds_name, path in (stats_paths or {}).items():
            if Path(path).exists():
                artifacts[f"{STATS_PREFIX}{ds_name}"] = str(path)
            else:
                missing.append(ds_name)
        cfg = getattr(policy, "config", None)
        metadata = {
            "xlab_policy": type(policy).__name__,
            "policy_config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
            if dataclasses.is_dataclass(cfg) else str(cfg),
            "datasets": sorted(stats_paths or {}),
            "instruction_encoder": getattr(policy, "instruction_encoder", None),
            "datasets_without_statistics": missing,
        }
        active = mlflow.active_run()
        started = None
        if run_id is not None and (active is None or active.info.run_id != run_id):
            started = mlflow.start_run(run_id=run_id, nested=active is not None)
        try:
            info = mlflow.pyfunc.log_model(
                name=name, python_model=RT1PolicyModel(), artifacts=artifacts,
                registered_model_name=registered_model_name or None, pip_requirements=_pip_requirements(),
                metadata=metadata,
            )
        finally:
            if started is not None:
                mlflow.end_run()
    if not registered_model_name:
        return info.model_uri
    version = info.registered_model_version
    if version is None:  # older clients: look it up from the logged model
        versions = MlflowClient().search_model_versions(f"name='{registered_model_name}'")
        version = max(int(v.version) for v in versions)
    if alias:
        MlflowClient().set_registered_model_alias(registered_model_name, alias, str(version))
        return f"models:/{registered_model_name}@{alias}"
    return f"models:/{registered_model_name}/{version}"


def _artifact_path(root: Path, entry: Any, model_uri: str) -> Path:
    """The local path of one pyfunc artifact entry (``{"path": "artifacts/..."}``), kept inside ``root``."""
    rel = entry.get("path") if isinstance(entry, Mapping) else None
    if not isinstance(rel, str) or not rel:
        raise PolicyModelError(f"{model_uri!r} is not an xlab policy model (a malformed artifact entry in MLmodel)")
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise PolicyModelError(f"{model_uri!r} is not an xlab policy model (artifact {rel!r} points outside it)")
    return root / rel


def load_policy_model(model_uri: str) -> RT1PolicyModel:
    """The :class:`RT1PolicyModel` behind ``model_uri`` (``models:/NAME@alias``, ``runs:/...``...), loaded.

    Never unpickles and never imports the model's code: it downloads the model's files, checks the
    ``MLmodel`` file says it is an xlab policy, and reads the policy's ``config.json`` and tensor-only
    weights (``torch.load(weights_only=True)``), the bounds and the statistics JSON.
    """
    import yaml

    from xlab.policies import load_policy

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="xlab-policy-") as tmp:  # everything is in memory once read
        try:
            root = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except Exception as e:  # MlflowException, RestException, OSError: all mean "not there"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PolicyModelError(f"cannot load policy model {model_uri!r}: {first}") from None
        try:
            meta = yaml.safe_load((root / "MLmodel").read_text()) if (root / "MLmodel").is_file() else None
        except yaml.YAMLError:
            meta = None
        meta = meta if isinstance(meta, dict) else {}
        pyfunc = (meta.get("flavors") or {}).get("python_function") or {}
        arts = pyfunc.get("artifacts") if isinstance(pyfunc, dict) else None
        if not (meta.get("metadata") or {}).get("xlab_policy") or not isinstance(arts, dict) \
                or POLICY_ARTIFACT not in arts or BOUNDS_ARTIFACT not in arts:
            raise PolicyModelError(f"{model_uri!r} is not an xlab policy model (log one with "
                                   "xlab.policies.mlflow_model.log_policy); refusing to load it")
        paths = {k: _artifact_path(root, v, model_uri) for k, v in arts.items()}
        model = RT1PolicyModel()
        model.policy = load_policy(paths[POLICY_ARTIFACT])
        try:
            model.bounds = json.loads(paths[BOUNDS_ARTIFACT].read_text())
            model.statistics = {k[len(STATS_PREFIX):]: json.loads(v.read_text())
                                for k, v in paths.items() if k.startswith(STATS_PREFIX)}
        except (OSError, ValueError) as e:
            raise PolicyModelError(f"{model_uri!r} has unreadable bounds or statistics JSON: {e}") from None
    return model


def load_registered_policy(model_uri: str) -> Any:
    """The ``RT1Policy`` registered at ``model_uri`` (e.g. ``models:/rt1x-policy@latest-train``), in eval mode."""
    return load_policy_model(model_uri).policy
