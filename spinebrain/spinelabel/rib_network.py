"""The rib classifier's network (torch): MONAI residual units, then global max and mean pooling.

Pooled over the whole plane, so any plane size runs (the ONNX export is checked off its training size,
as every exported network here is) and a rib counts wherever it lies.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import ResidualUnit

from .architectures import RIBS as ARCHITECTURE


class RibClassifier(torch.nn.Module):
    """(N, channels, H, W) planes -> (N, outputs) logits: "this vertebra carries a rib", and with ``outputs`` 2
    "this is the sacrum (S1)"."""

    def __init__(self, channels: int = 6, features=(16, 32, 64, 64), dropout: float = 0.1, outputs: int = 1):
        super().__init__()
        self.kwargs = {"channels": int(channels), "features": [int(f) for f in features], "dropout": float(dropout)}
        if outputs != 1:  # kept out of a one-answer card, so packages made before the sacrum answer load unchanged
            self.kwargs["outputs"] = int(outputs)
        units, previous = [], int(channels)
        for width in features:
            units.append(ResidualUnit(2, previous, int(width), strides=2, subunits=2, act="PRELU",
                                      norm=("instance", {"affine": True}), dropout=dropout))
            previous = int(width)
        self.body = torch.nn.Sequential(*units)
        self.head = torch.nn.Linear(2 * previous, int(outputs))

    @property
    def config(self) -> dict:
        return {"architecture": ARCHITECTURE, "kwargs": dict(self.kwargs)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        pooled = torch.cat([features.amax(dim=(2, 3)), features.mean(dim=(2, 3))], dim=1)
        return self.head(pooled)

    def onnx_parts(self) -> dict:
        """What :func:`spinebrain.models.onnx_network.export_onnx` exports: the whole network (no padding)."""
        return {"network": (self, 1, self.kwargs["channels"])}
