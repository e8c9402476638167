"""OpenGL backend selection and the TensorFlow/MuJoCo process guard, each in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

PY = sys.executable


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, timeout=120, env={**environ, **env}
    )


def test_backend_chosen_automatically_and_renders():
    proc = _run(
        "import os, gymnasium, robots\n"
        "env = gymnasium.make('xlab/fetch-reach-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        "print(os.environ['MUJOCO_GL'], robots.gl.BACKEND, obs['image'].std() > 5)\n"
    )
    assert proc.returncode == 0, proc.stderr
    gl, backend, ok = proc.stdout.split()
    assert gl == backend and gl in ("egl", "osmesa") and ok == "True"


def test_osmesa_backend_renders():
    proc = _run(
        "import gymnasium, robots\n"
        "obs, _ = gymnasium.make('xlab/sawyer-reach-v0').reset(seed=0)\n"
        "print(robots.gl.BACKEND, obs['image'].std() > 5)\n",
        MUJOCO_GL="osmesa",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["osmesa", "True"]


def test_no_backend_is_a_clear_error():
    proc = _run(
        "import gymnasium, robots\n"
        "gymnasium.make('xlab/sawyer-reach-v0', image_size=None).reset(seed=0)  # state only: fine\n"
        "try:\n"
        "    gymnasium.make('xlab/sawyer-reach-v0')\n"
        "except robots.RenderingUnavailableError as e:\n"
        "    print('ERR', e)\n",
        MUJOCO_GL="off",
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERR" in proc.stdout and "apt-get install libegl-mesa0 libgl1-mesa-dri libosmesa6" in proc.stdout


def test_tensorflow_in_process_is_refused():
    proc = _run(
        "import sys, types, gymnasium, robots\n"
        "sys.modules['tensorflow'] = types.ModuleType('tensorflow')  # stands in for a real import\n"
        "env = gymnasium.make('xlab/fetch-push-v0', image_size=None)  # no rendering: allowed\n"
        "env.reset(seed=0)\n"
        "for kwargs in ({}, {'image_size': None, 'render_mode': 'rgb_array'}):\n"
        "    try:\n"
        "        gymnasium.make('xlab/fetch-push-v0', **kwargs)\n"
        "    except robots.TensorFlowInProcessError as e:\n"
        "        print('REFUSED', e)\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("REFUSED") == 2
    assert "TensorFlow is imported in this process; MuJoCo rendering would segfault" in proc.stdout
    assert "Ray task" in proc.stdout


def test_tensorflow_imported_after_env_creation_is_refused_at_first_render():
    proc = _run(
        "import sys, types, gymnasium, robots\n"
        "env = gymnasium.make('xlab/fetch-push-v0')\n"
        "sys.modules['tensorflow'] = types.ModuleType('tensorflow')\n"
        "try:\n"
        "    env.reset(seed=0)\n"
        "except robots.TensorFlowInProcessError:\n"
        "    print('REFUSED')\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "REFUSED"
