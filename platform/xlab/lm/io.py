"""Save, log and load causal LMs with their tokenizer: local directories and MLflow models.

A saved model is a Hugging Face directory (``save_pretrained`` of model and tokenizer), so
``AutoModelForCausalLM.from_pretrained(path)`` loads it with no xlab code. In MLflow it is a pyfunc
model whose ``hf`` artifact is that directory (``predict(list_of_prompts)`` generates text), so it
can be registered, aliased and served; :func:`load_causal_lm` gets it back as a ``transformers``
model by any MLflow URI::

    save_causal_lm(model, tok, "out/python-gpt2")
    uri = log_causal_lm(model, tok, "model", registered_name="lm-python")    # "models:/lm-python/1"
    model, tok = load_causal_lm("models:/lm-python@best")                    # or runs:/RUN_ID/model, a dir

Offline by construction: nothing is fetched from the Hugging Face hub (``local_files_only``).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from xlab.errors import XlabError

HF_ARTIFACT = "hf"

warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*", category=UserWarning)


def _quiet() -> None:
    """No per-file progress bars from MLflow downloads and transformers weight loading in job logs."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def save_causal_lm(model: Any, tokenizer: Any, path: str | Path) -> Path:
    """Write ``model`` and ``tokenizer`` with ``save_pretrained`` into ``path`` (created); returns it."""
    _quiet()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    unwrapped = getattr(model, "module", model)  # DDP / FSDP wrappers
    unwrapped.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out


def _find_hf_dir(root: Path) -> Path | None:
    if (root / "config.json").exists() and (root / "tokenizer.json").exists():
        return root
    hits = sorted(p.parent for p in root.rglob("config.json") if (p.parent / "tokenizer.json").exists())
    return hits[0] if hits else None


def _load_dir(path: Path, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    from xlab.lm.tokenizer import load_tokenizer

    _quiet()
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    model.to(device)
    model.eval()
    return model, load_tokenizer(path)


def load_causal_lm(ref: str | Path, *, device: str = "cpu") -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local directory or an MLflow URI (``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION``, ``models:/<model id>`` or ``runs:/RUN_ID/PATH``); the model is in eval mode."""
    text = str(ref)
    if "://" not in text and ":/" not in text:
        path = Path(text).expanduser()
        found = _find_hf_dir(path) if path.is_dir() else None
        if found is None:
            raise XlabError(f"no causal LM at {path}: expected a save_pretrained directory (config.json and "
                            "tokenizer.json), e.g. from xlab.lm.io.save_causal_lm, or an MLflow URI "
                            "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH")
        return _load_dir(found, device)
    import mlflow

    from xlab.track.store import redact_uri

    _quiet()
    cache = Path(tempfile.mkdtemp(prefix="xlab-lm-"))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=str(cache)))
    except Exception as e:  # MlflowException, RestException, OSError: all mean "not there"
        raise XlabError(f"cannot load causal LM {text!r} from MLflow at {redact_uri(mlflow.get_tracking_uri())}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__} (check the name, version "
                        "or alias, the run id, and MLFLOW_TRACKING_URI)") from None
    found = _find_hf_dir(local)
    if found is None:
        raise XlabError(f"{text!r} holds no causal LM (no config.json with tokenizer.json): log one with "
                        "xlab.lm.io.log_causal_lm")
    return _load_dir(found, device)


def _pyfunc_class() -> type:
    import mlflow

    class CausalLMModel(mlflow.pyfunc.PythonModel):
        """pyfunc wrapper: ``predict(prompts)`` -> greedy continuations (``params``: max_new_tokens)."""

        def load_context(self, context: Any) -> None:
            self.model, self.tokenizer = _load_dir(Path(context.artifacts[HF_ARTIFACT]), "cpu")

        def predict(self, context, model_input, params=None):  # noqa: ANN001 - MLflow reads hints as a schema
            import torch

            prompts = list(model_input.iloc[:, 0]) if hasattr(model_input, "iloc") else list(model_input)
            max_new = int((params or {}).get("max_new_tokens", 32))
            tok, outs = self.tokenizer, []
            for prompt in prompts:
                ids = tok(str(prompt), return_tensors="pt")["input_ids"]
                with torch.no_grad():
                    gen = self.model.generate(ids, max_new_tokens=max_new, do_sample=False,
                                              pad_token_id=tok.pad_token_id)
                outs.append(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
            return outs

    return CausalLMModel


def log_causal_lm(
    model: Any, tokenizer: Any, artifact_path: str = "model", *, registered_name: str | None = None,
    alias: str | None = None,
) -> str:
    """Log ``model`` + ``tokenizer`` to the active MLflow run as a pyfunc model; returns a URI for
    :func:`load_causal_lm`: ``models:/NAME/VERSION`` when ``registered_name`` is given (``alias`` is then
    set on that version), else ``runs:/RUN_ID/<artifact_path>``."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise XlabError("log_causal_lm needs an active MLflow run (inside job_session / mlflow.start_run)")
    with tempfile.TemporaryDirectory() as d:
        hf = save_causal_lm(model, tokenizer, Path(d) / HF_ARTIFACT)
        signature = mlflow.models.infer_signature(["a prompt"], ["a continuation"], params={"max_new_tokens": 32})
        # MLflow 3 resolves runs:/RUN_ID/<artifact_path> to this logged model: no second copy needed.
        info = mlflow.pyfunc.log_model(
            name=artifact_path, python_model=_pyfunc_class()(), artifacts={HF_ARTIFACT: str(hf)},
            registered_model_name=registered_name, signature=signature, input_example=["a prompt"],
            pip_requirements=["torch", "transformers", "tokenizers"],
        )
    if registered_name:
        version = str(info.registered_model_version)
        if alias:
            mlflow.MlflowClient().set_registered_model_alias(registered_name, alias, version)
        return f"models:/{registered_name}/{version}"
    return f"runs:/{run.info.run_id}/{artifact_path}"
