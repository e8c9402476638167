"""The WebSocket endpoint end to end: `xlab serve` in its own process (its own Ray cluster), clients in others.

A tiny untrained rt1x-tiny (32 px, history 3, 2-step chunks, 4-d state) keeps forward passes cheap. The
server runs as a real command (`python -m xlab serve`), so start-up checks, the API key and the clean
shutdown on SIGTERM are tested as users meet them; clients are plain processes and threads, never Ray actors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.procs import free_port, stop_tree
from xlab.serve import protocol

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key-0123456789abcdef"
PROMPT = "move the gripper to the red target"
ENV = {
    **os.environ,
    "PYTHONPATH": f"{ROOT / 'platform'}{os.pathsep}{ROOT}",
    "RAY_AUTH_MODE": "token",
    "HF_HUB_OFFLINE": "1",
    "XLAB_CONSOLE": "all",
}


def frames(n: int, seed: int = 0, size: int = 40) -> np.ndarray:
    """Camera frames at a size other than the policy's (the server resizes them)."""
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def states(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1).normal(size=(n, 6)).astype(np.float32)  # cut to the policy's 4


def expected_actions(policy_dir: str, imgs: np.ndarray, sts: np.ndarray) -> list[np.ndarray]:
    """What the policy computes in this process for the same frames, one step at a time: flat [K, 13] chunks."""
    from xlab.policies import HistoryBuffer, load_policy
    from xlab.policies.session import fit_state
    from xlab.rlds.schema import flatten_action
    from xlab.rlds.text_embed import embed_instructions
    from xlab.rlds.transforms import resize_images

    policy = load_policy(policy_dir)
    c = policy.config
    emb = embed_instructions([PROMPT])
    buf, sbuf = HistoryBuffer(1, c.history), HistoryBuffer(1, c.history)
    out = []
    for img, st in zip(resize_images(imgs, (c.image_size, c.image_size)), sts, strict=True):
        window, pad = buf.push(img[None])
        swin, _ = sbuf.push(fit_state(st[None], c.state_dim))
        chunk = policy.act_chunk(window, emb, pad_mask=pad, state=swin)
        out.append(flatten_action({k: v[0] for k, v in chunk.items()}))
    return out


def obs(img: np.ndarray, st: np.ndarray, first: bool = False) -> dict:
    o = {"observation/image": img, "observation/state": st, "prompt": PROMPT}
    return {**o, "reset": True} if first else o


def http_stats(url: str, reset: bool = False, key: str | None = KEY) -> dict:
    req = urllib.request.Request(
        url.replace("ws://", "http://") + "/stats" + ("?reset=1" if reset else ""),
        headers={"Authorization": f"Api-Key {key}"} if key else {},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    import torch

    from xlab.policies import build_policy

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ws_policy") / "tiny"
    build_policy("rt1x-tiny", image_size=32, history=3, action_chunk=2, state_dim=4).save_pretrained(path)
    return str(path)


def serve_command(policy_dir: str, tmp_path_factory, *extra: str):
    """`xlab serve` on a free loopback port with an API key; yields its URL; SIGTERM must stop it cleanly."""
    key_file = tmp_path_factory.mktemp("key") / "key"
    key_file.write_text(KEY + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xlab",
            "serve",
            policy_dir,
            "--port",
            str(port),
            "--api-key-file",
            str(key_file),
            "--num-cpus",
            "0.5",
            "--batch-wait-ms",
            "300",
            *extra,
        ],
        cwd=tmp_path_factory.mktemp("serve_cwd"),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "[xlab serve]" in line and " at ws://" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 240
        while not ready.wait(1.0):
            assert proc.poll() is None, "xlab serve exited:\n" + "".join(lines[-40:])
            assert time.monotonic() < deadline, "xlab serve did not come up:\n" + "".join(lines[-40:])
        yield f"ws://127.0.0.1:{port}", "".join(line for line in lines if "[xlab serve]" in line)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, "".join(lines[-40:])
        assert any("[xlab serve] stopping" in line for line in lines)
    finally:
        stop_tree(proc)


@pytest.fixture(scope="module")
def endpoint(policy_dir, tmp_path_factory):
    """The default: one replica on its own Ray instance, so direct ingress (the replica serves the socket)."""
    for url, banner in serve_command(policy_dir, tmp_path_factory):
        assert "direct ingress" in banner, banner
        yield url


@pytest.fixture(scope="module")
def proxy_endpoint(policy_dir, tmp_path_factory):
    """`--ingress proxy`: Serve's HTTP proxy relays every message to the replica."""
    for url, banner in serve_command(policy_dir, tmp_path_factory, "--ingress", "proxy"):
        assert "proxy ingress" in banner, banner
        yield url


BOTH_INGRESSES = pytest.mark.parametrize("ingress", ["endpoint", "proxy_endpoint"])


def test_protocol_is_openpi_msgpack_numpy():
    """Frames decode like openpi-client's msgpack_numpy (bytes keys, dtype string, shape list), and back."""
    import msgpack

    img = frames(1)[0]
    raw = protocol.packb({"observation/image": img, "x": np.float32(2.5)})
    plain = msgpack.unpackb(raw, raw=False)  # what any msgpack reader sees
    arr = plain["observation/image"]
    assert arr[b"__ndarray__"] is True and arr[b"dtype"] == "|u1" and arr[b"shape"] == [40, 40, 3]
    assert plain["x"][b"__npgeneric__"] is True
    back = protocol.unpackb(raw)
    np.testing.assert_array_equal(back["observation/image"], img)
    assert back["x"] == np.float32(2.5) and back["x"].dtype == np.float32


@pytest.mark.parametrize(
    "frame, message",
    [
        (b"\xc1garbage", "not a msgpack-numpy frame"),
        ("text", "expected a binary"),
        (protocol.packb([1, 2]), "must be a map"),
        (protocol.packb({"prompt": PROMPT}), "missing 'observation/image'"),
        (
            protocol.packb({"observation/image": np.zeros((8, 8, 3), np.float32), "prompt": PROMPT}),
            "must be uint8",
        ),
        (
            protocol.packb({"observation/image": np.zeros((8, 8), np.uint8), "prompt": PROMPT}),
            "must be [H, W, 3]",
        ),
        (protocol.packb({"observation/image": np.zeros((8, 8, 3), np.uint8)}), "missing 'prompt'"),
        (
            protocol.packb(
                {"observation/image": np.zeros((8, 8, 3), np.uint8), "prompt": PROMPT, "reset": 3}
            ),
            "'reset' must be true or false",
        ),
        (
            {b"__ndarray__": True, b"data": b"\x00" * 5, b"dtype": "|u1", b"shape": [2, 2, 3]},
            "does not match",
        ),
        ({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]}, "not a msgpack-numpy"),
    ],
)
def test_bad_frames_are_named(frame, message):
    if isinstance(frame, dict):  # a hand-made array map under the image key
        frame = protocol.msgpack.packb({"observation/image": frame, "prompt": PROMPT}, use_bin_type=True)
    with pytest.raises(protocol.FrameError, match=message.replace("[", r"\[").replace("]", r"\]")):
        protocol.parse_observation(protocol.decode_frame(frame), state_dim=0)
    with pytest.raises(protocol.FrameError, match="exceeds the limit"):
        protocol.decode_frame(b"\x00" * 101, max_bytes=100)


def test_refuses_to_start_exposed_without_a_key(policy_dir, tmp_path):
    short = tmp_path / "short"
    short.write_text("abc\n")
    for args, message in (
        (["--host", "0.0.0.0"], "--api-key-file"),
        (["--api-key-file", str(short)], "at least 16 characters"),
        (["--api-key-file", str(tmp_path / "missing")], "no such file"),
    ):
        cmd = [sys.executable, "-m", "xlab", "serve", policy_dir, *args]
        out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)


def test_ingress_is_chosen_and_checked_before_anything_starts():
    import socket

    from xlab.errors import XlabError
    from xlab.serve.command import check_bind, choose_ingress

    assert choose_ingress("auto", replicas=1, joined=False) == "direct"
    assert choose_ingress("auto", replicas=2, joined=False) == "proxy"  # the proxy spreads connections
    assert choose_ingress("auto", replicas=1, joined=True) == "proxy"  # a cluster-wide setting: not ours
    with pytest.raises(XlabError, match="unset RAY_ADDRESS"):
        choose_ingress("direct", replicas=1, joined=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(XlabError, match=f"127.0.0.1:{port} "):
            check_bind("127.0.0.1", port, "")
        with socket.socket() as before:  # the port below it, if free, is the first replica's
            if before.connect_ex(("127.0.0.1", port - 1)) != 0:
                with pytest.raises(XlabError, match=f"127.0.0.1:{port} \\(replica 2 of 2"):
                    check_bind("127.0.0.1", port - 1, "", ports=2)


CLIENT_SCRIPT = """
import sys, numpy as np
from xlab.serve.client import PolicyClient
url, key, path = sys.argv[1:4]
data = np.load(path)
with PolicyClient(url, api_key=key) as policy:
    meta = policy.metadata
    replies = [policy.infer({"observation/image": img, "observation/state": st, "prompt": sys.argv[4], **({"reset": True} if i == 0 else {})})
               for i, (img, st) in enumerate(zip(data["images"], data["states"]))]
np.savez(path.replace(".npz", "_out.npz"), actions=np.stack([r["actions"] for r in replies]),
         world=np.stack([r["world_vector"] for r in replies]),
         queue=np.array([r["server_timing"]["queue_ms"] for r in replies]),
         total=np.array([r["server_timing"]["total_ms"] for r in replies]),
         chunk=meta["action_chunk"], history=meta["history"], dim=meta["action_dim"])
"""


@BOTH_INGRESSES
def test_client_in_another_process_gets_the_in_process_actions(ingress, request, policy_dir, tmp_path):
    endpoint = request.getfixturevalue(ingress)
    imgs, sts = frames(5, seed=3), states(5, seed=3)
    np.savez(tmp_path / "frames.npz", images=imgs, states=sts)
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), endpoint, KEY, str(tmp_path / "frames.npz"), PROMPT],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "frames_out.npz")
    assert int(got["chunk"]) == 2 and int(got["history"]) == 3 and int(got["dim"]) == 13
    assert got["actions"].shape == (5, 2, 13) and got["actions"].dtype == np.float32
    np.testing.assert_allclose(
        got["world"], got["actions"][:, :, 3:6]
    )  # the layout: terminate(3), world(3), ...
    for step, want in enumerate(expected_actions(policy_dir, imgs, sts)):
        np.testing.assert_allclose(got["actions"][step], want, atol=1e-5, err_msg=f"step {step}")
    assert (got["total"] >= got["queue"]).all() and (got["queue"] >= 0).all()


@BOTH_INGRESSES
def test_sixteen_connections_are_batched_and_closing_frees_history(ingress, request):
    from xlab.serve.client import PolicyClient

    endpoint = request.getfixturevalue(ingress)
    clients = [PolicyClient(endpoint, api_key=KEY) for _ in range(16)]
    http_stats(endpoint, reset=True)
    assert http_stats(endpoint)["connections"] == 16
    errors: list[BaseException] = []

    def drive(i: int, c: PolicyClient) -> None:
        try:
            imgs, sts = frames(8, seed=i), states(8, seed=i)
            for t in range(8):
                c.infer(obs(imgs[t], sts[t], first=t == 0))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=drive, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    s = http_stats(endpoint)
    assert s["inferred"] == 16 * 8 and s["history_frames"] == 16 * 3
    assert s["mean_batch"] > 8, s
    for c in clients:
        c.close()
    deadline = time.monotonic() + 30
    while http_stats(endpoint)["connections"] and time.monotonic() < deadline:
        time.sleep(0.2)
    s = http_stats(endpoint)
    assert s["connections"] == 0 and s["history_frames"] == 0


def test_bad_frames_and_bad_keys_are_refused_without_disturbing_others(endpoint, policy_dir):
    from websockets.sync.client import connect

    from xlab.serve.client import AuthError, PolicyClient, ServerFrameError

    imgs, sts = frames(6, seed=7), states(6, seed=7)
    want = expected_actions(policy_dir, imgs, sts)
    good = PolicyClient(endpoint, api_key=KEY)
    bad = PolicyClient(endpoint, api_key=KEY)
    np.testing.assert_allclose(good.infer(obs(imgs[0], sts[0], first=True))["actions"], want[0], atol=1e-5)
    bad_frames = [
        (b"\x00\xc1", "not a msgpack"),
        (protocol.packb({"prompt": PROMPT}), "missing"),
        (protocol.packb({"observation/image": imgs[0].astype(np.float32), "prompt": PROMPT}), "uint8"),
        (b"\x00" * (protocol.MAX_FRAME_BYTES + 1), "exceeds the limit"),
    ]
    for t, (frame, message) in enumerate(bad_frames, start=1):
        bad._ws.send(frame)
        reply = bad._ws.recv(timeout=60)
        assert isinstance(reply, str) and reply.startswith("bad frame:") and message in reply, reply
        # The other connection's episode goes on, its history untouched.
        np.testing.assert_allclose(good.infer(obs(imgs[t], sts[t]))["actions"], want[t], atol=1e-5)
    with pytest.raises(ServerFrameError, match="observation/state"):
        bad.infer({"observation/image": imgs[0], "prompt": PROMPT})
    # The bad connection is still usable.
    assert bad.infer(obs(imgs[0], sts[0], first=True))["actions"].shape == (2, 13)
    np.testing.assert_allclose(good.infer(obs(imgs[5], sts[5]))["actions"], want[5], atol=1e-5)
    for key in ("wrong-key-0123456789", None):
        with pytest.raises(AuthError, match="API key"):
            PolicyClient(endpoint, api_key=key, timeout=30)
    with connect(endpoint) as raw, pytest.raises(Exception, match="API key"):  # what openpi-client meets
        raw.recv(timeout=30)
    with pytest.raises(urllib.error.HTTPError, match="401"):
        http_stats(endpoint, key=None)
    assert http_stats(endpoint)["refused"] >= 3
    good.close()
    bad.close()


@pytest.mark.slow
def test_killed_replica_is_restarted_and_clients_reconnect_and_continue(endpoint, policy_dir):
    """Kill the replica under an open connection: Serve restarts it, the client reconnects and replays its
    history, and every action still equals the uninterrupted in-process one."""
    from xlab.serve.client import PolicyClient

    imgs, sts = frames(6, seed=11), states(6, seed=11)
    want = expected_actions(policy_dir, imgs, sts)
    client = PolicyClient(endpoint, api_key=KEY, reconnect_s=180)
    got = [client.infer(obs(imgs[t], sts[t], first=t == 0))["actions"] for t in range(3)]
    pid = http_stats(endpoint)["pid"]
    os.kill(pid, signal.SIGKILL)
    got += [client.infer(obs(imgs[t], sts[t]))["actions"] for t in range(3, 6)]
    assert client.reconnects == 1
    s = http_stats(endpoint)
    assert s["pid"] != pid and s["connections"] == 1 and s["history_frames"] == 3, s
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, atol=1e-5, err_msg=f"step {t}")
    client.close()


OPENPI_SCRIPT = """
import sys, numpy as np
from openpi_client import websocket_client_policy
port, key, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = np.load(path)
policy = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port, api_key=key)
meta = policy.get_server_metadata()
out = [policy.infer({"observation/image": img, "observation/state": st, "prompt": sys.argv[4]})["actions"]
       for img, st in zip(data["images"], data["states"])]
np.savez(path.replace(".npz", "_openpi.npz"), actions=np.stack(out), history=meta["history"])
"""


def openpi_venv() -> Path:
    """A venv with PyPI's openpi-client (it pins numpy < 2, so never xlab's venv): $XLAB_OPENPI_VENV, else
    ~/.cache/xlab/venv-openpi, built on first use; skips the test if it cannot be built (offline)."""
    venv = Path(os.environ.get("XLAB_OPENPI_VENV", Path.home() / ".cache" / "xlab" / "venv-openpi"))
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import openpi_client.websocket_client_policy"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    for cmd in (
        ["python3", "-m", "venv", str(venv)],
        # openpi-client 0.1.2 imports typing_extensions without declaring it.
        [str(python), "-m", "pip", "install", "-q", "openpi-client", "typing_extensions"],
    ):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"cannot build a venv with openpi-client: {e}")
        if out.returncode:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            pytest.skip(f"cannot build a venv with openpi-client (offline?): {' '.join(cmd[:3])}: {last}")
    return python


@pytest.mark.slow
def test_openpi_client_drives_xlab_serve(endpoint, policy_dir, tmp_path):
    """PyPI's openpi-client WebsocketClientPolicy (its own venv, numpy 1.x) gets the in-process actions."""
    python = openpi_venv()
    imgs, sts = frames(4, seed=5), states(4, seed=5)
    np.savez(tmp_path / "frames.npz", images=imgs, states=sts)
    script = tmp_path / "openpi_client_run.py"
    script.write_text(OPENPI_SCRIPT)
    port = endpoint.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(
        [str(python), str(script), port, KEY, str(tmp_path / "frames.npz"), PROMPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "frames_openpi.npz")
    assert int(got["history"]) == 3
    # openpi's client never sends reset: a fresh connection starts the episode.
    for step, want in enumerate(expected_actions(policy_dir, imgs, sts)):
        np.testing.assert_allclose(got["actions"][step], want, atol=1e-5, err_msg=f"step {step}")


def test_remote_episode_runner_drives_a_robot_env(endpoint, tmp_path):
    """`python -m xlab.serve.remote_episode`: a plain process steps a registered MuJoCo env with the remote policy."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    cmd = [
        sys.executable,
        "-m",
        "xlab.serve.remote_episode",
        "--server",
        endpoint,
        "--api-key-file",
        str(key_file),
        "--env",
        "xlab/fetch-reach-v0",
        "--episodes",
        "2",
        "--parallel",
        "2",
        "--max-steps",
        "5",
    ]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    episodes = [line for line in out.stdout.splitlines() if line.startswith("[remote_episode] policy/")]
    assert len(episodes) == 2 and all("steps" in line and "latency" in line for line in episodes), out.stdout
    assert "xlab/fetch-reach-v0: " in out.stdout and "/2 episodes succeeded" in out.stdout
    bad = subprocess.run(
        [*cmd[:-8], "--env", "xlab/no-such-env-v0"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert bad.returncode != 0 and "no-such-env" in bad.stderr, bad.stderr[-2000:]
