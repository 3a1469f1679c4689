"""What predict runs on the CPU -- a copy of the network with each conv + batch norm fused, in the
channels-last layout -- scores every model family as the network itself does, and leaves the
network (trained, exported) as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.deploy.test_onnx import _checkpoint
from tests.models.test_registry import TINY

from audioclf.config import parse_params
from audioclf.deploy.export import example_features
from audioclf.deploy.model import from_checkpoint
from audioclf.models.inference import for_cpu_inference


def _features_cfg():
    from tests.conftest import repo_params, shrink

    return parse_params(shrink(repo_params())).features


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_inference_copy_scores_as_the_network_does(name, tmp_path):
    model = from_checkpoint(_checkpoint(name, _features_cfg(), tmp_path / "best.pt"))
    gen = torch.Generator().manual_seed(1)
    for m in model.classifier.modules():  # statistics off (0, 1), so a fusion that drops them fails
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    x = example_features(model, 6, seed=3)
    with torch.inference_mode():
        want = model.classifier(x).softmax(dim=1).numpy()
    got = model.probabilities(x)  # through the copy
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all() and want.std(axis=1).min() > 1e-4


def test_the_default_cnn_is_fused_and_channels_last_and_the_original_kept(tmp_path):
    model = from_checkpoint(_checkpoint("cnn", _features_cfg(), tmp_path / "best.pt"))
    fast = for_cpu_inference(model.classifier)
    kinds = {type(m) for m in fast.modules()}
    assert torch.nn.BatchNorm2d not in kinds and torch.nn.Conv2d in kinds
    convs = [m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert torch.nn.BatchNorm2d in {type(m) for m in model.classifier.modules()}
    model.probabilities(example_features(model, 2))
    assert model._copies["cpu"][0] is model.classifier  # made once, for this classifier
    model.classifier = from_checkpoint(tmp_path / "best.pt").classifier
    model.probabilities(example_features(model, 2))
    assert model._copies["cpu"][0] is model.classifier  # and again for a new one
