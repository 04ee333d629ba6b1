"""The iterative instance network of seed 002 (Lessmann 2018), built from MONAI blocks.

A 3D U-Net-shaped FCN with a constant filter count, batch norm and padding (output size = patch
size). Input: two channels, the image patch and the instance-memory patch (1 where an earlier
iteration already segmented a vertebra). Outputs: the segmentation logit of the *next* vertebra
(sigmoid -> probability) and a completeness logit from a small classification branch appended to
the compression path (convolution, global pooling, dense layers).

So that MONAI's engines (which pass one tensor from network to loss, metric and post-processing)
can carry both outputs, :meth:`IterativeInstanceNet.forward` returns one ``[B, 2, D, H, W]`` tensor:
channel 0 the segmentation logits, channel 1 the completeness logit broadcast over the patch
(an expanded view, no copy). :func:`split_outputs` takes them apart again.

The paper's GPU network is ``filters=64, levels=4`` on 128^3 patches at 1 mm; the CPU model of
this project uses far fewer filters on 64^3 patches at 2 mm (card parameters).
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn


def _double_conv(in_channels: int, filters: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        Convolution(3, in_channels, filters, kernel_size=3, norm="batch", act="relu", dropout=dropout),
        Convolution(3, filters, filters, kernel_size=3, norm="batch", act="relu", dropout=dropout),
    )


class IterativeInstanceNet(nn.Module):
    """U-Net with an instance memory input and a completeness classifier (seed 002, Fig. 1).

    ``levels`` max-pooling steps (patch sides must be multiples of ``2**levels``); ``filters``
    channels at every level; ``dropout`` on every convolution.
    """

    def __init__(self, in_channels: int = 2, filters: int = 16, levels: int = 4, dropout: float = 0.2):
        super().__init__()
        self.levels = int(levels)
        self.encoder = nn.ModuleList(
            _double_conv(in_channels if level == 0 else filters, filters, dropout) for level in range(levels)
        )
        self.pool = nn.MaxPool3d(2)
        self.bottom = _double_conv(filters, filters, dropout)
        self.upsample = nn.ModuleList(
            UpSample(3, filters, filters, scale_factor=2, mode="deconv") for _ in range(levels)
        )
        self.decoder = nn.ModuleList(_double_conv(2 * filters, filters, dropout) for _ in range(levels))
        self.segmentation = nn.Conv3d(filters, 1, kernel_size=1)
        # classification branch on the compression path: sees the bottom features of the whole patch
        self.classifier_conv = Convolution(3, filters, filters, kernel_size=3, strides=2, norm="batch", act="relu")
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * filters, filters), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(filters, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        complete = self._classify(x)
        for up, block, skip in zip(self.upsample, self.decoder, reversed(skips), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        segmentation = self.segmentation(x)
        return torch.cat([segmentation, complete[:, :, None, None, None].expand_as(segmentation)], dim=1)

    def _classify(self, bottom: torch.Tensor) -> torch.Tensor:
        features = self.classifier_conv(bottom)
        pooled = torch.cat([features.mean(dim=(2, 3, 4)), features.amax(dim=(2, 3, 4))], dim=1)
        return self.classifier(pooled)


def split_outputs(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(segmentation logits ``[B, 1, D, H, W]``, completeness logits ``[B]``) of a network output."""
    return output[:, :1], output[:, 1, 0, 0, 0]


def network_spec(filters: int, levels: int, dropout: float) -> dict:
    """The card's ``network`` entry (rebuilt by :func:`spinebrain.models.network.build_network`)."""
    return {"architecture": "spinebrain.spinesegment.network3d.IterativeInstanceNet",
            "kwargs": {"in_channels": 2, "filters": int(filters), "levels": int(levels), "dropout": float(dropout)}}
