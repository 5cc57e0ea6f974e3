"""MONAI's networks under --model: shapes from the data, group norm, weights that travel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gossip.codec import WeightsMessage, decode, encode
from swarm.averaging import Contribution, weighted_average
from swarm.models import build_model, get_weights, set_weights


@pytest.mark.parametrize("arch, params", [  # millions of parameters: DenseNet121 ~7, ResNet-18 ~11, B0 ~4
    ("densenet121", (6.9e6, 7.0e6)), ("resnet18", (11.1e6, 11.3e6)), ("efficientnet-b0", (3.9e6, 4.1e6)),
])
def test_a_monai_model_takes_channels_and_classes_from_the_data(arch, params):
    torch.manual_seed(0)
    model = build_model((3, 32, 32), 5, arch, norm="group")
    assert params[0] < sum(p.numel() for p in model.parameters()) < params[1]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert convs[0].in_channels == 3 and linears[-1].out_features == 5


def test_a_monai_model_runs_forward_with_group_norm():
    torch.manual_seed(0)
    model = build_model((1, 32, 32), 3, "resnet18", norm="group").eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 3)


def test_batch_norm_buffers_travel_and_average_with_the_weights():
    torch.manual_seed(0)
    model = build_model((1, 32, 32), 2, "resnet18")
    weights = get_weights(model)
    assert weights["bn1.num_batches_tracked"].dtype == np.int64
    message = decode(encode(WeightsMessage("m", 0, "a", 10, weights)))
    mean = weighted_average([Contribution("a", message.tensors, 1.0), Contribution("b", weights, 1.0)])
    set_weights(model, mean)
    assert np.array_equal(get_weights(model)["bn1.running_var"], weights["bn1.running_var"])
