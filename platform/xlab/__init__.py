"""xlab: a lab's research platform on Ray.

Robot policies (RT-1-X), simulated robots, LLM pretraining, optimizers and pruning studies,
all tracked in MLflow. Jobs live in the top-level ``jobs`` package and run with
``xlab run JOB --preset smoke`` locally or ``xlab submit JOB --address http://HOST:8265`` on a cluster.
"""

import os as _os

# Ray reads RAY_AUTH_MODE once, when it is first imported, and 2.60 turns token auth on for local
# clusters: choose the mode before any Ray import so that local clusters, `ray start --head`
# clusters and job submission all agree (override by exporting RAY_AUTH_MODE=disabled).
_os.environ.setdefault("RAY_AUTH_MODE", "token")

__version__ = "0.1.0"
