"""Crafted checkpoints and resume states: refused with a reason, never executed."""

import pickle
from pathlib import Path

import pytest
import torch

from audioclf.models.checkpoint import CheckpointError, load_checkpoint, read_state
from audioclf.training.resume import find_resumable

MARKER = Path("/tmp/audioclf-pwned-by-checkpoint")


class Payload:
    """Unpickling it would run code: it writes MARKER."""

    def __reduce__(self):
        return (Path.write_text, (MARKER, "code from a checkpoint ran"))


@pytest.fixture(autouse=True)
def no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a crafted file ran code when loaded"


def _crafted(path: Path, how: str) -> Path:
    if how == "torch.save":  # a torch zip whose pickle holds the payload
        torch.save({"model_name": "cnn", "state_dict": {}, "labels": Payload()}, path)
    elif how == "plain pickle":
        path.write_bytes(pickle.dumps({"model_name": Payload()}))
    else:  # a state dict with an arbitrary object beside the tensors
        torch.save(
            {
                "model_name": "cnn",
                "state_dict": {"w": torch.zeros(1)},
                "x": object.__new__(Payload),
            },
            path,
        )
    return path


@pytest.mark.parametrize("how", ["torch.save", "plain pickle", "foreign object"])
def test_a_crafted_best_checkpoint_is_refused_without_running_anything(tmp_path, how):
    path = _crafted(tmp_path / "best.pt", how)
    with pytest.raises(CheckpointError, match="refusing to load it|not a readable checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("how", ["torch.save", "plain pickle", "foreign object"])
def test_a_crafted_resume_state_starts_a_fresh_training(tmp_path, how):
    last = _crafted(tmp_path / "last.pt", how)
    state, note = find_resumable(last, tmp_path / "best.pt", "some-run-key")
    assert state is None and note.startswith(f"starting fresh: {last} is unreadable")


def test_files_that_are_not_checkpoints_get_a_reason(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a zip, not a pickle")
    with pytest.raises(
        CheckpointError, match="junk.pt (is not a readable checkpoint|holds objects)"
    ):
        read_state(tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a checkpoint"):
        read_state(tmp_path / "list.pt")
    torch.save({"model_name": "nope", "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an audioclf checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_our_own_checkpoints_load_through_the_safe_path(tiny_params, tiny_cache, tmp_path):
    from audioclf.features.table import FeatureTable
    from audioclf.training.loop import train

    cache, split = tiny_cache
    table = FeatureTable(cache)
    spec = tiny_params.train_spec()
    spec = type(spec)(
        **{**spec.__dict__, "train": type(spec.train)(**{**spec.train.__dict__, "epochs": 1})}
    )
    train(
        spec,
        table,
        [e.path for e in split["train"]],
        [e.path for e in split["val"]],
        tmp_path / "best.pt",
        lambda m, s: None,
        last=tmp_path / "last.pt",
    )
    model, ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["labels"] == table.labels and ckpt["frontend"] == table.meta["frontend"]
    assert read_state(tmp_path / "last.pt")["run_key"]
