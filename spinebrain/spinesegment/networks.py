"""2D networks for the slice-wise MR vertebral-body mode (seed 001: U-Net, FPN, Linknet, PSPNet).

U-Net and the ResNet-encoder U-Net come straight from MONAI (``BasicUNet``, ``FlexibleUNet``).
MONAI has a feature pyramid *block* but no FPN segmentation network, so :class:`FPNSegNet` joins
a small strided encoder, MONAI's ``FeaturePyramidNetwork`` and a light head (Kirillov et al.'s
"panoptic FPN" head, the one segmentation FPNs use). Every architecture is built from a card's
``network`` entry ({architecture, kwargs}) by :func:`spinebrain.models.network.build_network`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork
from torch import nn

#: Architecture names a user may choose, mapped to the card's class name and default kwargs.
#: All take a stack of ``in_channels`` adjacent slices and give one logit map (body vs background).
ARCHITECTURES = {
    "unet": ("BasicUNet", {"spatial_dims": 2, "features": (16, 24, 48, 96, 192, 16), "act": "relu",
                           "norm": "batch", "dropout": 0.1}),
    "fpn": ("spinebrain.spinesegment.networks.FPNSegNet", {"channels": (16, 32, 64, 128), "pyramid_channels": 48}),
    "resunet": ("FlexibleUNet", {"spatial_dims": 2, "backbone": "resnet10", "pretrained": False,
                                 "decoder_channels": (96, 48, 32, 24, 16)}),
}


def network_spec(architecture: str, in_channels: int) -> dict:
    """The card's ``network`` entry for a named architecture (unet / fpn / resunet)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    class_name, kwargs = ARCHITECTURES[architecture]
    kwargs = {**kwargs, "in_channels": int(in_channels), "out_channels": 1}
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}  # JSON-friendly
    return {"architecture": class_name, "kwargs": kwargs}


class FPNSegNet(nn.Module):
    """Feature pyramid network for 2D segmentation, from MONAI blocks.

    Encoder: one residual unit per level, each halving the resolution (1/2 … 1/2**n).
    Pyramid: MONAI ``FeaturePyramidNetwork`` (lateral 1x1 + top-down sum + 3x3 smoothing).
    Head: every pyramid level convolved and upsampled to 1/2, summed, then upsampled to the
    input size and mapped to ``out_channels`` logits. Input sides must be multiples of 2**n.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, channels=(16, 32, 64, 128),
                 pyramid_channels: int = 48, spatial_dims: int = 2):
        super().__init__()
        levels, previous = [], in_channels
        for width in channels:
            levels.append(ResidualUnit(spatial_dims, previous, width, strides=2, subunits=2, norm="batch", act="relu"))
            previous = width
        self.encoder = nn.ModuleList(levels)
        self.pyramid = FeaturePyramidNetwork(spatial_dims, list(channels), pyramid_channels)
        self.level_heads = nn.ModuleList(
            Convolution(spatial_dims, pyramid_channels, pyramid_channels, kernel_size=3, norm="batch", act="relu")
            for _ in channels
        )
        self.output = nn.Sequential(
            Convolution(spatial_dims, pyramid_channels, pyramid_channels // 2, kernel_size=3, norm="batch", act="relu"),
            nn.Conv2d(pyramid_channels // 2, out_channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        features = OrderedDict()
        for index, level in enumerate(self.encoder):
            x = level(x)
            features[str(index)] = x
        pyramid = self.pyramid(features)
        half = features["0"].shape[2:]
        merged = sum(
            F.interpolate(head(level), size=half, mode="bilinear", align_corners=False)
            for head, level in zip(self.level_heads, pyramid.values(), strict=True)
        )
        return F.interpolate(self.output(merged), size=size, mode="bilinear", align_corners=False)
