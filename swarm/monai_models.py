"""MONAI's 2D classification networks under medswarm's ``--model`` names.

Imported only when such a model is asked for (``import monai`` takes seconds). Weights are
always randomly initialised: pretrained ImageNet weights would need a download, and
peers run offline.
"""

from __future__ import annotations

from torch import nn

from swarm.errors import ConfigError
from swarm.models import ModelSpec


def monai_model(spec: ModelSpec) -> nn.Module:
    """Build ``spec.arch`` (``densenet121``, ``resnet18`` or ``efficientnet-b0``) for 2D images.

    Input channels and classes come from ``spec``; batch norm throughout (the caller swaps
    it for group norm when asked).

    Raises
    ------
    ConfigError
        (field ``model``) if ``spec.arch`` is not one of those, MONAI is not installed, or
        the images are smaller than the network's downsampling (32 pixels).
    """
    channels, height, width = spec.input_shape
    if min(height, width) < 32:
        raise ConfigError("model", f"{spec.arch} needs images of at least 32x32 (use --image-size), "
                                   f"got {height}x{width}")
    try:
        from monai.networks import nets
    except ImportError as exc:  # pragma: no cover - monai is a dependency
        raise ConfigError("model", f"{spec.arch} needs MONAI (pip install monai): {exc}") from None
    if spec.arch == "densenet121":
        return nets.DenseNet121(spatial_dims=2, in_channels=channels, out_channels=spec.num_classes)
    if spec.arch == "resnet18":
        return nets.resnet18(spatial_dims=2, n_input_channels=channels, num_classes=spec.num_classes)
    if spec.arch == "efficientnet-b0":
        return nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=channels,
                                   num_classes=spec.num_classes)
    raise ConfigError("model", f"{spec.arch!r} is not a MONAI model medswarm knows")
