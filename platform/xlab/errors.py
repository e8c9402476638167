"""User-facing errors.

An :class:`XlabError` is a problem with the user's input or environment (unknown job, bad config
value, unreachable cluster...). The CLI prints it as one line and exits non-zero without a
traceback; everything else is a bug and keeps its traceback.
"""


class XlabError(Exception):
    """A problem the user can fix; the message says what was wrong and how to fix it."""


class NonFiniteLossError(XlabError):
    """The training loss became NaN or infinite: the run fails (never retried) and no model is registered."""


def check_finite_loss(value: float, step: int, where: str, hint: str = "lower the learning rate or clip gradients") -> None:
    """Raise :class:`NonFiniteLossError` (one line, naming ``where`` and the step) if ``value`` is NaN or infinite."""
    import math

    if not math.isfinite(value):
        raise NonFiniteLossError(f"{where}: the training loss is {value} at step {step}; {hint}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``xlab stop``, ``ray job stop``, preemption) in a job session: handled like Ctrl-C (runs end
    KILLED, Ray work stops), and the process exits ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum
