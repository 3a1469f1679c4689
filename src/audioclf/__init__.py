"""audioclf: reproducible, tracked audio classification (DVC + MLflow + PyTorch)."""

from audioclf.environment import BrokenEnvironment, check_environment, print_message_only

__version__ = "0.1.0"

# before any stage does work: a torch/torchaudio pair that does not load together fails here,
# with the versions and the fix, not with `undefined symbol` deep inside an import
try:
    check_environment()
except BrokenEnvironment:
    print_message_only()
    raise
