"""Ray Tune sweeps over dotted config names, one MLflow parent run with a nested run per trial."""

from xlab.tune.sweep import grid, raise_on_errors, run_sweep

__all__ = ["grid", "raise_on_errors", "run_sweep"]
