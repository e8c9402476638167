"""Ray Train without retries of deterministic errors.

Ray Train V2 (2.60) retries every worker error up to ``FailureConfig.max_failures`` times: a config
error, a dataset too small or a NaN loss would run ``max_failures + 1`` times before failing. An
:class:`~xlab.errors.XlabError` raised in a worker is deterministic by construction (the user must
change something), so :class:`XlabTorchTrainer` hands the controller a failure policy that fails the
run at once on one, and keeps Ray's default policy (restart from the latest checkpoint, up to
``max_failures`` times) for everything else -- a killed worker, a lost node, an OOM.

The hook is ``DataParallelTrainer._initialize_and_run_controller(failure_policy=...)``, the private
seam ``fit`` uses to build the controller (Ray 2.60; pinned by ``tests/train/test_ray_failures.py``).
Import this module only where Ray is wanted (it imports Ray).

:func:`worker_error` returns the XlabError inside a Ray Train failure, so drivers can re-raise the
one-line message instead of Ray's wrapped traceback.
"""

from __future__ import annotations

import logging

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy, FailureDecision
from ray.train.v2.api.exceptions import TrainingFailedError, WorkerGroupError

from xlab.errors import XlabError

logger = logging.getLogger(__name__)


def worker_error(error: BaseException) -> XlabError | None:
    """The first :class:`XlabError` a worker raised in a Ray Train failure (by rank), or None."""
    if isinstance(error, WorkerGroupError):
        for _, e in sorted(error.worker_failures.items()):
            if isinstance(e, XlabError):
                return e
    return None


class XlabFailurePolicy(DefaultFailurePolicy):
    """Ray's default failure policy, except that a worker's XlabError fails the run without a retry."""

    def make_decision(self, training_failed_error: TrainingFailedError) -> FailureDecision:
        error = worker_error(training_failed_error)
        if error is not None:
            logger.info("[xlab] not retrying a deterministic worker error: %s", error)
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


class XlabTorchTrainer(TorchTrainer):
    """``TorchTrainer`` whose failure policy is :class:`XlabFailurePolicy`; ``fit`` re-raises a worker's XlabError;
    Ctrl-C is left to xlab (no graceful-abort SIGINT handler)."""

    def _initialize_and_run_controller(self, **controller_init_kwargs):
        controller_init_kwargs["failure_policy"] = XlabFailurePolicy(self.run_config.failure_config)
        return super()._initialize_and_run_controller(**controller_init_kwargs)

    def _register_sigint_handler(self, controller) -> None:
        # Ray's handler aborts the run "gracefully" and exits 0, as if it had finished; in an xlab job
        # Ctrl-C is a KeyboardInterrupt that ends the MLflow run KILLED and stops the Ray work (xlab.session).
        pass

    def fit(self):
        try:
            return super().fit()
        except TrainingFailedError as e:
            error = worker_error(e)
            if error is None:
                raise
            raise error from None
