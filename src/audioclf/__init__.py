"""audioclf: reproducible, tracked audio classification (DVC + MLflow + PyTorch)."""
__version__ = "0.1.0"
