"""Loading a policy from MLflow never unpickles: a non-xlab pyfunc model is refused and its code never runs
(issue #15, item 1)."""


import mlflow
import pytest

from xlab.errors import XlabError


class WritesAFile(mlflow.pyfunc.PythonModel):
    """Unpickling this model creates ``path`` (stands in for arbitrary code in python_model.pkl)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))

    def predict(self, context, model_input, params=None):  # noqa: ANN001
        return model_input


@pytest.fixture(scope="module")
def evil_uri(mlflow_uri, tmp_path_factory):
    marker = tmp_path_factory.mktemp("evil") / "pwned"
    mlflow.set_experiment("test_policy_model_safety")
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="policy", python_model=WritesAFile(str(marker)),
                                registered_model_name="evil-policy", pip_requirements=["mlflow"])
    if marker.exists():  # logging may have touched it; only loading matters here
        marker.unlink()
    return "models:/evil-policy/1", marker


def test_load_registered_policy_refuses_a_pickled_model_without_running_it(evil_uri):
    from xlab.policies.mlflow_model import load_registered_policy

    uri, marker = evil_uri
    with pytest.raises(XlabError, match="not an xlab policy model") as e:
        load_registered_policy(uri)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_load_any_policy_refuses_a_pickled_model_without_running_it(evil_uri):
    from xlab.serve.server import load_any_policy

    uri, marker = evil_uri
    with pytest.raises(XlabError, match="not an xlab policy model"):
        load_any_policy(uri)
    assert not marker.exists()


def test_unknown_model_is_a_one_line_error(mlflow_uri):
    from xlab.policies.mlflow_model import load_registered_policy

    with pytest.raises(XlabError, match="cannot load policy model") as e:
        load_registered_policy("models:/no-such-policy-model@nope")
    assert "\n" not in str(e.value)


def test_policy_artifacts_must_stay_inside_the_model(tmp_path):
    from xlab.policies.mlflow_model import _artifact_path

    (tmp_path / "MLmodel").write_text("x")
    with pytest.raises(XlabError, match="outside"):
        _artifact_path(tmp_path, {"path": "../../etc"}, "m")
    assert _artifact_path(tmp_path, {"path": "artifacts/policy"}, "m") == tmp_path / "artifacts" / "policy"
