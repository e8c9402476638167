"""cluster.yaml is a valid Ray cluster-launcher config, checked offline with Ray's own validator.

`ray up` runs ``prepare_config`` (merge with ray/autoscaler/aws/defaults.yaml, merge setup commands,
fill per-type min/max workers) and then ``validate_config`` (the JSON schema
ray/autoscaler/ray-schema.json plus head-node and min/max-worker checks) before it talks to AWS. Both
are local for the aws provider: no boto3, no credentials, no network. Only the AWS steps after them
(instance-type resource detection, IAM/security-group/AMI bootstrap) are not covered here.
Both functions are private Ray API: the version is pinned below.
"""

from __future__ import annotations

import copy
import re
import shlex
import socket
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
RAY_VERSION = "2.60.0"


def ray_validate(cfg: dict) -> dict:
    """Ray's own offline check of a cluster config (what `ray up` does before contacting the cloud)."""
    assert ray.__version__ == RAY_VERSION, (
        f"tests/test_cluster_yaml.py uses Ray's private autoscaler API "
        f"(ray.autoscaler._private.util.prepare_config/validate_config), checked against Ray {RAY_VERSION}; "
        f"Ray is now {ray.__version__}: re-check that API and the schema notes in cluster.yaml, then update "
        f"RAY_VERSION"
    )
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


@pytest.fixture
def cfg() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if validation tries to open a connection (it must stay offline)."""

    def refuse(*args, **kwargs):
        raise AssertionError("cluster.yaml validation tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def ray_start_command(commands: list[str]) -> str:
    """The command (one shell) that runs `ray start`: the environment must be set in that same shell."""
    found = [c for c in commands if "ray start" in c]
    assert len(found) == 1, f"expected exactly one `ray start` command, got {found}"
    return found[0]


def exported_env(command: str) -> dict[str, str]:
    """Variables set by `export A=1 B=2` (or `A=1`) before `ray start` in one shell command."""
    before = command.split("ray start", 1)[0]
    env = {}
    for statement in before.split(";"):
        for word in shlex.split(statement, posix=True) if statement.strip() else []:
            m = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", word)
            if m:
                env[m.group(1)] = m.group(2)
    return env


def worker_types(cfg: dict) -> dict[str, dict]:
    return {name: t for name, t in cfg["available_node_types"].items() if name != cfg["head_node_type"]}


# --- Ray's validator --------------------------------------------------------------------------------


def test_ray_version_is_the_one_the_private_api_was_checked_against():
    assert ray.__version__ == RAY_VERSION, (
        f"Ray {ray.__version__} != {RAY_VERSION}: re-check ray.autoscaler._private.util.prepare_config/"
        f"validate_config and ray-schema.json before updating RAY_VERSION in this test"
    )


def test_cluster_yaml_passes_rays_validator_offline(cfg, no_network):
    prepared = ray_validate(cfg)
    # prepare_config really merged the AWS defaults and the per-type worker limits.
    assert "cluster_synced_files" in prepared
    for name, node_type in prepared["available_node_types"].items():
        assert "min_workers" in node_type and "max_workers" in node_type, name
    assert prepared["available_node_types"][cfg["head_node_type"]]["max_workers"] == 0


def test_basic_shape(cfg):
    assert cfg["cluster_name"] == "xlab"
    provider = cfg["provider"]
    assert provider["type"] == "aws"
    assert provider["region"] and provider["availability_zone"]
    assert isinstance(provider["cache_stopped_nodes"], bool)
    assert cfg["auth"]["ssh_user"]


def test_head_node_type_is_an_available_node_type(cfg):
    assert cfg["head_node_type"] in cfg["available_node_types"]
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"].get("CPU", 0) <= 2, "keep training work off the head node"
    assert "GPU" not in head["resources"]


def test_cpu_and_gpu_worker_types(cfg):
    workers = worker_types(cfg)
    gpu = {n: t for n, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    cpu = {n: t for n, t in workers.items() if t["resources"].get("GPU", 0) == 0}
    assert gpu, "need at least one GPU worker type"
    assert cpu, "need at least one CPU worker type"
    for name, t in workers.items():
        assert t["max_workers"] >= 1, name
        assert 0 <= t.get("min_workers", 0) <= t["max_workers"], name
        assert t["max_workers"] <= cfg["max_workers"], name
        assert t["resources"].get("CPU", 0) >= 1, name


def test_every_resources_value_is_an_integer(cfg):
    for name, node_type in cfg["available_node_types"].items():
        for key, value in node_type["resources"].items():
            assert type(value) is int and value >= 0, f"{name}.resources.{key} = {value!r} is not an integer"


def test_start_commands_set_auth_mode_mlflow_and_storage(cfg):
    head = exported_env(ray_start_command(cfg["head_start_ray_commands"]))
    worker = exported_env(ray_start_command(cfg["worker_start_ray_commands"]))
    for env in (head, worker):
        assert env.get("RAY_AUTH_MODE") == "token"
        assert env.get("MLFLOW_TRACKING_URI", "").startswith("http"), env
        assert env.get("XLAB_STORAGE_PATH"), env
    # One shared location for checkpoints, seen identically by every node.
    assert head["XLAB_STORAGE_PATH"] == worker["XLAB_STORAGE_PATH"]
    assert re.match(r"^(s3://|gs://|/mnt/)", head["XLAB_STORAGE_PATH"])
    # Workers reach the head's MLflow server through the head's address.
    assert "$RAY_HEAD_IP" in worker["MLFLOW_TRACKING_URI"]


def test_ray_start_flags(cfg):
    head = ray_start_command(cfg["head_start_ray_commands"])
    assert "--head" in head and "--port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--dashboard-host=0.0.0.0" in head
    worker = ray_start_command(cfg["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker
    for commands in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        assert commands[0] == "ray stop"


def test_mlflow_server_started_on_head(cfg):
    head_cmds = " ".join(cfg["head_start_ray_commands"])
    assert "mlflow server" in head_cmds and "--port 5000" in head_cmds
    head_uri = exported_env(ray_start_command(cfg["head_start_ray_commands"]))["MLFLOW_TRACKING_URI"]
    assert head_uri.endswith(":5000")


def test_project_is_synced_and_installed(cfg):
    assert cfg["file_mounts"]["~/xlab"] == "."
    # Token auth: the cluster gets a token file (the one clients use).
    assert "~/.ray/auth_token" in cfg["file_mounts"]
    assert ".venv" in cfg["rsync_exclude"] and ".git" in cfg["rsync_exclude"]
    common = cfg["setup_commands"]
    assert any("pip install -e ~/xlab" in c for c in common)
    assert any("torch==2.13.0" in c and "whl/cpu" in c for c in common)


def test_gpu_workers_get_a_cuda_torch_and_the_project(cfg):
    # A node type's worker_setup_commands replace the global setup_commands + worker_setup_commands,
    # so a GPU type that overrides them must repeat every step.
    for name, t in worker_types(cfg).items():
        if t["resources"].get("GPU", 0) < 1:
            continue
        cmds = t.get("worker_setup_commands")
        assert cmds, f"{name}: GPU workers need their own worker_setup_commands (CUDA torch)"
        torch_cmds = [c for c in cmds if "torch==2.13.0" in c]
        assert torch_cmds and not any("whl/cpu" in c for c in torch_cmds), name
        assert any("pip install -e ~/xlab" in c for c in cmds), name
        assert cmds[0] == cfg["setup_commands"][0], f"{name}: missing the Python environment setup"


def test_placeholders_are_marked(cfg):
    text = CLUSTER_YAML.read_text()
    assert "YOUR-BUCKET" in text, "placeholders must stay obvious in the committed template"
    assert "ami-CHANGE-ME" in text


# --- the validator rejects broken copies ------------------------------------------------------------


def _unknown_top_level_key(cfg):
    cfg["head_start_commands"] = ["ray start --head"]  # typo of head_start_ray_commands


def _head_type_not_a_node_type(cfg):
    cfg["head_node_type"] = "no.such.type"


def _fractional_resources(cfg):
    next(iter(worker_types(cfg).values()))["resources"]["CPU"] = 0.5


def _node_type_without_node_config(cfg):
    del next(iter(worker_types(cfg).values()))["node_config"]


def _unknown_node_type_key(cfg):
    next(iter(worker_types(cfg).values()))["setup_commands"] = ["echo"]


def _min_workers_over_global_max(cfg):
    for t in worker_types(cfg).values():
        t["min_workers"] = t["max_workers"] = cfg["max_workers"]


@pytest.mark.parametrize(
    "break_it, error, match",
    [
        pytest.param(
            _unknown_top_level_key,
            jsonschema.ValidationError,
            "'head_start_commands' was unexpected",
            id="unknown_top_level_key",
        ),
        pytest.param(
            _head_type_not_a_node_type,
            ValueError,
            "`head_node_type` must be one of",
            id="head_type_not_a_node_type",
        ),
        pytest.param(
            _fractional_resources,
            jsonschema.ValidationError,
            "0.5 is not of type 'integer'",
            id="fractional_resources",
        ),
        pytest.param(
            _node_type_without_node_config,
            jsonschema.ValidationError,
            "'node_config' is a required property",
            id="node_type_without_node_config",
        ),
        pytest.param(
            _unknown_node_type_key,
            jsonschema.ValidationError,
            "'setup_commands' was unexpected",
            id="unknown_node_type_key",
        ),
        pytest.param(
            _min_workers_over_global_max, ValueError, "sum of `min_workers`", id="min_workers_over_global_max"
        ),
    ],
)
def test_validator_rejects_broken_copies(cfg, no_network, break_it, error, match):
    broken = copy.deepcopy(cfg)
    break_it(broken)
    with pytest.raises(error, match=re.escape(match)):
        ray_validate(broken)
