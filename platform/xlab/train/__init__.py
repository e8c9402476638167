"""Training: one loop for every study, single-process or data parallel under the one Ray Train harness.

    from xlab.train import Task, TrainConfig, fit
    from xlab.train import ScaleConfig, launch, run_key      # the harness (xlab.train.distributed)
"""

from xlab.train.distributed import LaunchResult, WorkerContext, launch
from xlab.train.loop import FitResult, Task, TrainConfig, evaluate, seed_everything, train
from xlab.train.runner import LocalReporter, fit, fit_ray
from xlab.train.scale import ScaleConfig, run_key

__all__ = ["FitResult", "LaunchResult", "LocalReporter", "ScaleConfig", "Task", "TrainConfig", "WorkerContext",
           "evaluate", "fit", "fit_ray", "launch", "run_key", "seed_everything", "train"]
