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
    # Dashboard and job API on loopback only: clients reach them through `ray dashboard` (SSH).
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    worker = ray_start_command(cfg["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker
    for commands in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        assert commands[0] == "ray stop"


def test_mlflow_server_started_on_head(cfg):
    head_cmds = " ".join(cfg["head_start_ray_commands"])
    assert "mlflow server" in head_cmds and "--port 5000" in head_cmds
    head_uri = exported_env(ray_start_command(cfg["head_start_ray_commands"]))["MLFLOW_TRACKING_URI"]
    assert head_uri.endswith(":5000")


def mlflow_server_command(cfg: dict) -> str:
    found = [c for c in cfg["head_start_ray_commands"] if "mlflow server" in c]
    assert len(found) == 1, found
    return found[0]


def test_mlflow_server_is_private_with_basic_auth(cfg):
    cmd = mlflow_server_command(cfg)
    host = re.search(r"--host\s+(\S+)", cmd).group(1).strip("'\"")
    assert host in ("127.0.0.1", "$XLAB_HEAD_IP"), f"MLflow must bind loopback or the private address, not {host}"
    assert "0.0.0.0" not in cmd
    assert "--app-name basic-auth" in cmd
    allowed = re.search(r"--allowed-hosts\s+(\S+)", cmd).group(1).strip("'\"").split(",")
    assert allowed and "*" not in allowed and all(h.startswith(("$XLAB_HEAD_IP", "localhost", "127.0.0.1"))
                                                  for h in allowed), allowed
    # The admin account comes from the credentials file, never from the YAML itself.
    assert "MLFLOW_AUTH_ADMIN_PASSWORD=\"$MLFLOW_TRACKING_PASSWORD\"" in cmd


def test_mlflow_credentials_reach_nodes_in_a_private_env_file(cfg):
    env_file = "~/.xlab/mlflow.env"
    assert cfg["file_mounts"][env_file] == env_file  # from the user's machine, not the project directory
    for commands in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        start = ray_start_command(commands)
        before = start.split("ray start", 1)[0]
        assert re.search(rf"chmod 600 [^;]*{re.escape(env_file)}", before), before
        assert f"set -a; . {env_file}; set +a" in before, before  # exported to Ray's processes
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"MLFLOW_TRACKING_PASSWORD=(?!\")\S", text.replace("PASSWORD=%s", "")), \
        "no literal password in cluster.yaml"
    for uri in (exported_env(ray_start_command(cfg[k]))["MLFLOW_TRACKING_URI"]
                for k in ("head_start_ray_commands", "worker_start_ray_commands")):
        assert "@" not in uri, "credentials go in the env file, not in the tracking URI (it is printed)"


def test_every_node_requires_imdsv2(cfg):
    for name, t in cfg["available_node_types"].items():
        assert t["node_config"].get("MetadataOptions", {}).get("HttpTokens") == "required", name


TEMPLATE = ROOT / "deploy" / "aws" / "xlab-cluster.yaml"


@pytest.fixture
def template() -> dict:
    with open(TEMPLATE) as f:
        return yaml.safe_load(f)


def test_ssh_is_limited_to_a_cidr_placeholder(cfg, template):
    # Ray 2.60 adds SSH from 0.0.0.0/0 to a security group it creates; it creates none when every node
    # type names its own (SecurityGroupIds).
    for name, t in cfg["available_node_types"].items():
        assert t["node_config"].get("SecurityGroupIds"), f"{name}: Ray would open SSH to 0.0.0.0/0"
    assert "0.0.0.0/0" not in yaml.safe_dump(cfg), "no rule open to the whole internet"
    sg = template["Resources"]["ClusterSecurityGroup"]["Properties"]
    ssh = [r for r in sg["SecurityGroupIngress"] if r["FromPort"] <= 22 <= r["ToPort"]]
    assert ssh and all(r["CidrIp"] == {"Ref": "SshCidr"} for r in ssh), ssh
    assert len(sg["SecurityGroupIngress"]) == 1, "nothing but SSH is open to the outside"
    param = template["Parameters"]["SshCidr"]
    assert "Default" not in param, "the CIDR is a placeholder the user must fill in"
    assert not re.match(param["AllowedPattern"], "0.0.0.0/0") and re.match(param["AllowedPattern"], "203.0.113.7/32")
    assert "YOUR-SSH-CIDR" in CLUSTER_YAML.read_text()


def _statements(template: dict, role: str) -> list[dict]:
    out = []
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        out += policy["PolicyDocument"]["Statement"]
    return out


def _as_list(x):
    return x if isinstance(x, list) else [x]


def test_head_instance_profile_is_scoped_to_the_cluster_and_bucket_prefix(cfg, template):
    head = cfg["available_node_types"][cfg["head_node_type"]]["node_config"]
    assert head["IamInstanceProfile"]["Arn"].endswith(":instance-profile/xlab-head"), \
        "without a profile Ray attaches ray-autoscaler-v1 (EC2 and S3 full access)"
    for role in ("HeadRole", "WorkerRole"):
        for st in _statements(template, role):
            actions = _as_list(st["Action"])
            assert st["Effect"] == "Allow" and not any(a == "*" or a.endswith(":*") for a in actions), st
            if any(a.startswith("s3:") for a in actions):
                for r in _as_list(st["Resource"]):
                    arn = r["Fn::Sub"]
                    assert arn == "arn:aws:s3:::${BucketName}/xlab/*" or (
                        arn == "arn:aws:s3:::${BucketName}" and st["Condition"]["StringLike"]["s3:prefix"]), st
            if st["Resource"] == "*":
                assert all(a.startswith("ec2:Describe") for a in actions), st
    statements = _statements(template, "HeadRole")
    for st in statements:
        actions = set(_as_list(st["Action"]))
        if actions & {"ec2:TerminateInstances", "ec2:StopInstances", "ec2:StartInstances"}:
            assert st["Condition"]["StringEquals"]["aws:ResourceTag/ray-cluster-name"] == {"Ref": "ClusterName"}
        if "ec2:RunInstances" in actions and any(":instance/" in r["Fn::Sub"] for r in _as_list(st["Resource"])):
            assert st["Condition"]["StringEquals"]["aws:RequestTag/ray-cluster-name"] == {"Ref": "ClusterName"}
        if "iam:PassRole" in actions:
            assert st["Resource"] == {"Fn::GetAtt": ["WorkerRole", "Arn"]}
    assert template["Parameters"]["ClusterName"]["Default"] == cfg["cluster_name"]


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
