"""The loss of seed 002: distance-weighted soft false positives / negatives plus completeness BCE.

    FP_soft = sum_i w_i (1 - t_i) p_i,   FN_soft = sum_i w_i t_i (1 - p_i)
    w_i = gamma * exp(-d_i^2 / sigma^2) + 1,   d_i = distance (voxels) to the target's surface
    loss = lambda * FP_soft + FN_soft + BCE(completeness)

No library has this weighted loss (MONAI's Tversky loss is unweighted and normalised), so it is
written here once. The sums are divided by the number of voxels of the patch so the segmentation
term does not dwarf the classification term at any patch size (a constant factor the paper's
"sum" leaves open; it does not change the optimum). The weights need the target's surface
distance, which the training sampler computes (:func:`surface_weights`) and passes in the label.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .network3d import split_outputs

LAMBDA, GAMMA, SIGMA = 0.1, 8.0, 6.0


def surface_weights(target: np.ndarray, gamma: float = GAMMA, sigma: float = SIGMA) -> np.ndarray:
    """w = gamma * exp(-d^2 / sigma^2) + 1, d the distance (voxels) of each voxel to the target's surface.

    The surface is the boundary between target and non-target voxels: d is the distance to the
    nearest voxel of the other side (0.5-voxel offset ignored). No target: all weights 1.
    """
    target = target.astype(bool)
    if not target.any():
        return np.ones(target.shape, np.float32)
    outside = ndimage.distance_transform_edt(~target)  # background voxels: distance to the target
    inside = ndimage.distance_transform_edt(target)  # target voxels: distance to the background
    distance = np.where(target, inside, outside)
    return (gamma * np.exp(-(distance ** 2) / sigma ** 2) + 1.0).astype(np.float32)


def instance_loss(segmentation_logits: torch.Tensor, complete_logits: torch.Tensor, target: torch.Tensor,
                  weights: torch.Tensor, complete: torch.Tensor, lam: float = LAMBDA) -> torch.Tensor:
    """lambda * FP_soft + FN_soft (per voxel of the patch) + BCE of the completeness, averaged over the batch."""
    probability = torch.sigmoid(segmentation_logits)
    voxels = float(np.prod(segmentation_logits.shape[2:]))
    false_positive = (weights * (1 - target) * probability).flatten(1).sum(1) / voxels
    false_negative = (weights * target * (1 - probability)).flatten(1).sum(1) / voxels
    classification = F.binary_cross_entropy_with_logits(complete_logits, complete, reduction="none")
    return (lam * false_positive + false_negative + classification).mean()


class IterativeInstanceLoss(torch.nn.Module):
    """The loss as MONAI's trainer calls it: ``loss(network output, label)``.

    ``label`` is ``[B, 3, D, H, W]``: the target mask, its surface weights, and the completeness flag
    broadcast over the patch (the sampler's layout, :func:`spinebrain.spinesegment.sampler3d.pack_label`).
    """

    def __init__(self, lam: float = LAMBDA):
        super().__init__()
        self.lam = lam

    def forward(self, output: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        segmentation, complete_logits = split_outputs(output.float())  # sums over the patch in float32 under AMP
        return instance_loss(segmentation, complete_logits, label[:, :1], label[:, 1:2], label[:, 2, 0, 0, 0],
                             self.lam)
