"""Headless OpenGL for MuJoCo, and the TensorFlow/MuJoCo process boundary.

Imported first by ``robots/__init__.py`` because MuJoCo reads ``MUJOCO_GL`` once, when it is first
imported. When ``MUJOCO_GL`` is unset this module chooses a backend that works on a machine without a
display or GPU: ``egl`` (Mesa's software EGL device) if an EGL display initialises, else ``osmesa``.
Each probe is a few ``ctypes`` calls (tens of milliseconds), so ``import robots`` stays cheap. A
``MUJOCO_GL`` the user exported is respected as is.

Nothing fails at import when no backend works, since state-only envs need no OpenGL: envs that render
call :func:`require_rendering`, which raises :class:`~robots.errors.RenderingUnavailableError` naming
the Debian packages to install.

TensorFlow (used to read and write RLDS data) and MuJoCo rendering segfault in the same process, so
every env that renders calls :func:`check_no_tensorflow` first: record or read RLDS in another process
(a Ray task) and send images across.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from robots.errors import GL_APT_PACKAGES, RenderingUnavailableError, TensorFlowInProcessError

_EGL_PLATFORM_DEVICE_EXT = 0x313F
_DISABLED = ("disable", "disabled", "off", "false", "0")

#: The backend chosen here ("egl", "osmesa"), the user's own ``MUJOCO_GL``, or None when none works.
BACKEND: str | None = None
#: How BACKEND was decided, for error messages.
_REASON = ""


def _egl_works() -> bool:
    """True if libEGL loads and a device display initialises (what ``mujoco.egl`` needs)."""
    try:
        egl = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return False
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query_ptr = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    display_ptr = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if not query_ptr or not display_ptr:
        return False
    query_devices = ctypes.CFUNCTYPE(
        ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)
    )(query_ptr)
    get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(
        display_ptr
    )
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglInitialize.restype = ctypes.c_uint
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    devices = (ctypes.c_void_p * 16)()
    count = ctypes.c_int(0)
    if not query_devices(16, devices, ctypes.byref(count)):
        return False
    for i in range(count.value):
        display = get_display(_EGL_PLATFORM_DEVICE_EXT, devices[i], None)
        if display and egl.eglInitialize(display, None, None):
            egl.eglTerminate(display)
            return True
    return False


def _osmesa_works() -> bool:
    """True if libOSMesa loads and can create a context (PyOpenGL's osmesa platform loads the same)."""
    for name in ("libOSMesa.so.8", "libOSMesa.so.6", ctypes.util.find_library("OSMesa")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        return hasattr(lib, "OSMesaCreateContextExt")
    return False


def select_backend() -> str | None:
    """Choose ``MUJOCO_GL`` if unset (egl, then osmesa) and return the backend in use (None if none).

    Called on ``import robots``; calling it again is cheap and changes nothing once decided.
    """
    global BACKEND, _REASON
    if _REASON:
        return BACKEND
    user = os.environ.get("MUJOCO_GL")
    if user is not None:
        BACKEND = None if user.strip().lower() in _DISABLED else user.strip().lower()
        _REASON = f"MUJOCO_GL={user!r} was set before robots was imported"
        return BACKEND
    if "mujoco" in sys.modules:
        # Too late to choose: mujoco already picked its default (glfw, which needs a display).
        BACKEND = "glfw"
        _REASON = "mujoco was imported before robots with MUJOCO_GL unset, so it uses glfw (needs a display)"
        return BACKEND
    for backend, works in (("egl", _egl_works), ("osmesa", _osmesa_works)):
        if works():
            os.environ["MUJOCO_GL"] = backend
            # Only the matching PyOpenGL platform works with each backend; mujoco sets it when unset.
            BACKEND = backend
            _REASON = f"chosen automatically by robots.gl ({backend} initialised)"
            return BACKEND
    BACKEND = None
    _REASON = "neither EGL nor OSMesa initialised"
    return BACKEND


def require_rendering() -> str:
    """Return the backend that will render, or raise RenderingUnavailableError saying what to install."""
    backend = select_backend()
    if backend is None:
        raise RenderingUnavailableError(
            f"MuJoCo cannot render images in this process: {_REASON}. Install headless OpenGL with "
            f"`apt-get install {GL_APT_PACKAGES}` (then MUJOCO_GL=egl or osmesa works), or create the env "
            "with image_size=None and render_mode=None for state only."
        )
    return backend


def rendering_failed(exc: BaseException) -> RenderingUnavailableError:
    """Wrap an exception from creating a MuJoCo renderer into a RenderingUnavailableError."""
    return RenderingUnavailableError(
        f"MuJoCo could not create an OpenGL context (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}, "
        f"{_REASON}): {type(exc).__name__}: {exc}. On a headless machine install "
        f"`apt-get install {GL_APT_PACKAGES}` and use MUJOCO_GL=egl or MUJOCO_GL=osmesa."
    )


def check_no_tensorflow() -> None:
    """Raise TensorFlowInProcessError if TensorFlow is imported in this process.

    TensorFlow and MuJoCo's OpenGL rendering segfault when they share a process (both load their own
    copies of low-level libraries), and a segfault kills a Ray worker without a Python traceback.
    """
    if "tensorflow" in sys.modules:
        raise TensorFlowInProcessError(
            "TensorFlow is imported in this process; MuJoCo rendering would segfault. Record or read "
            "RLDS (tensorflow_datasets) in another process (a Ray task or actor) and pass images and "
            "actions across, or create this env with image_size=None and render_mode=None (no rendering)."
        )


select_backend()
