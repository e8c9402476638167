"""xlab: a lab's research platform on Ray.

Robot policies (RT-1-X), simulated robots, LLM pretraining, optimizers and pruning studies,
all tracked in MLflow. Jobs live in the top-level ``jobs`` package and run with
``xlab run JOB --preset smoke`` locally or ``xlab submit JOB --address http://HOST:8265`` on a cluster.
"""

__version__ = "0.1.0"
