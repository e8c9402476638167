"""Training: one loop for every study, single-process or data parallel under Ray Train.

    from xlab.train import Task, TrainConfig, fit
"""

from xlab.train.loop import FitResult, Task, TrainConfig, evaluate, seed_everything, train
from xlab.train.runner import LocalReporter, fit, fit_ray

__all__ = ["FitResult", "LocalReporter", "Task", "TrainConfig", "evaluate", "fit", "fit_ray", "seed_everything",
           "train"]
