"""audioclf: reproducible, tracked audio classification (DVC + MLflow + PyTorch).

Importing the package does nothing else: the environment check, logging and error
handling belong to the entry points (:mod:`audioclf.cli` and ``stages/``).
"""

__version__ = "0.1.0"
