"""Fast headless MuJoCo rendering for the robot envs: one renderer per env, one frame per step.

MuJoCo's defaults (4x multisampling, shadows, reflections, skybox) render at 3-4 frames/s on a CPU
with Mesa. :class:`FastRenderer` turns them off before the OpenGL context exists, which gives over a
hundred frames/s at 128x128 (see ``benchmarks/env_steps.py``)::

    renderer = FastRenderer(model, 128, 128, CameraSpec(lookat=(0, 0.6, 0.1), distance=1.3))
    rgb = renderer.render(data)      # uint8 (128, 128, 3), right side up
    renderer.close()

Cameras are either a free camera (:class:`CameraSpec`: look-at point, distance, azimuth,
elevation: always upright) or a camera named in the model. Several of MetaWorld's named cameras
(``corner``, ``corner2``, ``corner3``) are mounted upside down (their up axis points at the floor);
such frames are rotated by 180 degrees, which is exactly the image of the same camera rolled upright.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robots import gl


@dataclass(frozen=True)
class Marker:
    """A visual-only shape drawn into a frame (no physics): ``kind`` a ``mujoco.mjtGeom`` value, ``size``
    MuJoCo's geom size triple, ``pos`` its centre (world frame, metres), ``rgba`` its colour."""

    kind: int
    size: tuple[float, float, float]
    pos: tuple[float, float, float]
    rgba: tuple[float, float, float, float]


def goal_markers(goal: Sequence[float], floor_z: float, rgba: tuple[float, float, float, float],
                 radius: float = 0.03) -> list[Marker]:
    """A goal in the air drawn so that ONE camera shows where it is in 3-D: a sphere, a thin stem down to
    the table and a disc where the stem meets it (a single view otherwise leaves the goal's depth along
    the camera ray ambiguous; the disc on the known table plane pins its x, y, the stem its height)."""
    import mujoco

    x, y, z = (float(v) for v in goal)
    g = mujoco.mjtGeom
    sphere = Marker(int(g.mjGEOM_SPHERE), (radius, radius, radius), (x, y, z), rgba)
    if z < floor_z + 0.01:  # on (or in) the table: nothing to show the height of
        return [sphere]
    half = (z - floor_z) / 2
    return [
        sphere,
        Marker(int(g.mjGEOM_CYLINDER), (0.008, half, 0.0), (x, y, floor_z + half), rgba),
        Marker(int(g.mjGEOM_CYLINDER), (radius, 0.002, 0.0), (x, y, floor_z + 0.002), rgba),
    ]


def table_goal_marker(goal: Sequence[float], floor_z: float, radius: float,
                      rgba: tuple[float, float, float, float]) -> Marker:
    """A goal on the table drawn as a flat disc of ``radius`` (the task's success region) at the goal."""
    import mujoco

    x, y, _ = (float(v) for v in goal)
    return Marker(int(mujoco.mjtGeom.mjGEOM_CYLINDER), (radius, 0.001, 0.0), (x, y, floor_z + 0.001), rgba)


@dataclass(frozen=True)
class CameraSpec:
    """A free (orbiting) camera: where it looks, from how far, from which direction (degrees)."""

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float


_LIVE: weakref.WeakSet[FastRenderer] = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_all() -> None:
    # mujoco.egl registers eglTerminate at exit when the first context is made; renderers still open
    # then raise EGL errors from __del__ during shutdown. This hook is registered after that one, so
    # it runs first (atexit is last-in first-out) and closes them cleanly.
    for renderer in list(_LIVE):
        renderer.close()


class FastRenderer:
    """A ``mujoco.Renderer`` with the costly effects off and a fixed camera.

    Args:
        model: the env's ``MjModel``; its offscreen settings are changed in place (multisampling off,
            framebuffer enlarged if the image is bigger), which only affects rendering.
        height, width: image size in pixels.
        camera: a :class:`CameraSpec` or the name of a camera in the model.
    """

    def __init__(self, model: Any, height: int, width: int, camera: CameraSpec | str) -> None:
        gl.check_no_tensorflow()
        gl.require_rendering()
        import mujoco

        # Multisampling is the largest cost on a software rasteriser; it must be off before the
        # offscreen framebuffer is created (in the MjrContext), so before the Renderer exists.
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
        try:
            self._renderer = mujoco.Renderer(model, height, width)
        except Exception as exc:  # any GL failure means the same thing to the user
            raise gl.rendering_failed(exc) from exc
        flags = self._renderer.scene.flags
        for flag in (
            mujoco.mjtRndFlag.mjRND_SHADOW,
            mujoco.mjtRndFlag.mjRND_REFLECTION,
            mujoco.mjtRndFlag.mjRND_SKYBOX,
        ):
            flags[flag] = 0

        self._fixed_id = -1
        if isinstance(camera, CameraSpec):
            self._camera = self.free_camera(camera)
        else:
            self._camera = mujoco.MjvCamera()
            self._fixed_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if self._fixed_id < 0:
                names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
                raise ValueError(f"camera {camera!r} is not in the model; cameras: {names}")
            self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
            self._camera.fixedcamid = self._fixed_id
        self._mujoco = mujoco
        self.height, self.width = height, width

        global _ATEXIT_REGISTERED
        _LIVE.add(self)
        if not _ATEXIT_REGISTERED:
            atexit.register(_close_all)
            _ATEXIT_REGISTERED = True

    @staticmethod
    def free_camera(spec: CameraSpec) -> Any:
        """A ``mujoco.MjvCamera`` for a CameraSpec (usable with any ``mujoco.Renderer``)."""
        import mujoco

        camera = mujoco.MjvCamera()
        camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        camera.lookat[:] = spec.lookat
        camera.distance = spec.distance
        camera.azimuth = spec.azimuth
        camera.elevation = spec.elevation
        return camera

    def render(self, data: Any, markers: Sequence[Marker] = ()) -> np.ndarray:
        """Render the current state of ``data`` (plus visual-only ``markers``) into a new uint8 (height,
        width, 3) RGB array."""
        if self._renderer is None:
            raise RuntimeError("render() called after close()")
        self._renderer.update_scene(data, camera=self._camera)
        scene = self._renderer.scene
        for marker in markers:
            if scene.ngeom >= scene.maxgeom:
                break
            self._mujoco.mjv_initGeom(scene.geoms[scene.ngeom], int(marker.kind), np.asarray(marker.size, np.float64),
                                      np.asarray(marker.pos, np.float64), np.eye(3).reshape(-1),
                                      np.asarray(marker.rgba, np.float32))
            scene.ngeom += 1
        image = self._renderer.render()
        if self._fixed_id >= 0 and data.cam_xmat[self._fixed_id, 7] < 0:
            # The camera's up axis (column 1 of its frame) points down: the frame is upside down.
            image = np.ascontiguousarray(image[::-1, ::-1])
        return image

    def close(self) -> None:
        """Free the OpenGL context (also done at exit); the renderer cannot be used afterwards."""
        renderer, self._renderer = getattr(self, "_renderer", None), None
        if renderer is not None:
            renderer.close()
        _LIVE.discard(self)
