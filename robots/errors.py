"""Errors raised by the simulated robots.

All of them are :class:`xlab.errors.XlabError`\\ s: problems with the user's input or machine that
the message explains how to fix (the ``xlab`` CLI prints them as one line, without a traceback).
"""

from __future__ import annotations

from xlab.errors import XlabError

#: What to install on Debian/Ubuntu for headless MuJoCo rendering on CPU.
GL_APT_PACKAGES = "libegl-mesa0 libgl1-mesa-dri libosmesa6"


class RobotsError(XlabError):
    """Base class for errors of the ``robots`` package."""


class UnknownRobotEnvError(RobotsError, ValueError):
    """An env id, task or embodiment name that is not registered."""


class RobotEnvConfigError(RobotsError, ValueError):
    """An invalid env option (render_mode, image_size, action_format...)."""


class RenderingUnavailableError(RobotsError, RuntimeError):
    """No headless OpenGL backend works in this process, so MuJoCo cannot render images."""


class TensorFlowInProcessError(RobotsError, RuntimeError):
    """TensorFlow is imported in a process that is about to render with MuJoCo (they segfault together)."""
