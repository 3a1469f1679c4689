"""One rule for the devices params name (features.device, train.device)."""

import pytest
import torch

from audioclf.config import ParamsError
from audioclf.devices import resolve_device


def test_auto_follows_cuda_availability():
    assert resolve_device("auto", "train.device").type == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    assert resolve_device("cpu", "features.device") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("key", ["train.device", "features.device"])
def test_cuda_without_a_gpu_names_the_key(key):
    with pytest.raises(
        ParamsError, match=f"'{key}' is 'cuda' but torch sees no CUDA device; use {key}=auto or cpu"
    ):
        resolve_device("cuda", key)


def test_unknown_device_names_the_choices():
    with pytest.raises(ParamsError, match="allowed values: auto, cpu, cuda"):
        resolve_device("tpu", "train.device")
