"""The dense heatmap detector's network (torch, MONAI's BasicUNet); :mod:`.heatmap` runs it or its ONNX export."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet

from .architectures import HEATMAP as ARCHITECTURE

UNET_MULTIPLE = 16  # four 2x poolings


class HeatmapDetector(torch.nn.Module):
    """BasicUNet (2D) from ``in_slices`` slices to ``outputs`` heatmap logits; any input size (padded)."""

    def __init__(self, in_slices: int = 3, outputs: int = 2, features=(16, 16, 32, 64, 128, 16)):
        super().__init__()
        self.kwargs = {"in_slices": int(in_slices), "outputs": int(outputs), "features": [int(f) for f in features]}
        self.unet = BasicUNet(spatial_dims=2, in_channels=in_slices, out_channels=outputs, features=tuple(features),
                              norm=("instance", {"affine": True}), dropout=0.0)

    @property
    def in_slices(self) -> int:
        return self.kwargs["in_slices"]

    @property
    def config(self) -> dict:
        """The card's ``network`` entry (rebuilt by :func:`spinebrain.models.build_network`)."""
        return {"architecture": ARCHITECTURE, "kwargs": dict(self.kwargs)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % UNET_MULTIPLE, (-width) % UNET_MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # 0 = the low end of the normalised range
        return self.unet(x)[..., :height, :width]

    def onnx_parts(self) -> dict:
        """What :func:`spinebrain.models.onnx_network.export_onnx` exports: the U-Net, padding left to the caller."""
        return {"network": (self.unet, UNET_MULTIPLE, self.in_slices)}
