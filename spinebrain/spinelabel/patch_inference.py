"""Running the paper's patch detectors (:mod:`.detector`) over whole sagittal slices: in torch, or from their ONNX
export without importing torch (the command line's fast start on the CPU).

The module docstring of :mod:`.detector` says how a dense map relates to the patch classifier.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import softmax

from ..errors import InputError, ModelError
from ..models.onnx_network import OnnxNetwork
from .slices import SagittalSlab

POOL_KERNEL, POOL_STRIDE = 3, 2


def normalise_intensities(array, low_percentile: float = 1.0, high_percentile: float = 99.0) -> np.ndarray:
    """Scale to [0, 1] between two percentiles (clipped), the detectors' input range for MR and CT alike.

    Apply it to the whole slab (all slices together) before training and before detection.
    """
    array = np.asarray(array, dtype=np.float32)
    low, high = np.percentile(array, [low_percentile, high_percentile])
    if high <= low:
        return np.zeros_like(array)
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


def pad_for_patches(array: np.ndarray, patch: int, value: float) -> np.ndarray:
    """Pad a 2D slice so every pixel has a full patch centred on it (offset ``patch // 2``)."""
    before = patch // 2
    return np.pad(array, ((before, patch - 1 - before),) * 2, constant_values=value)


def detect_dense(model, slice_array, full_resolution: bool = True, device="cpu") -> np.ndarray:
    """Probability of class 1 (vertebra centre) at every pixel of a normalised 2D slice (same shape).

    Pixel p's value is the classifier's output for the patch centred at p (:mod:`.detector`). ``model``: a
    :class:`~.detector.VertebraDetector`, or its ONNX export (the strided network only: ``full_resolution=False``).
    """
    array = np.asarray(slice_array, dtype=np.float32)
    if array.ndim != 2:
        raise InputError(f"detect_dense needs one 2D slice, got an array of shape {array.shape}.")
    padded = pad_for_patches(array, int(model.kwargs["patch"]), 0.0)[None, None]
    height, width = array.shape
    if isinstance(model, OnnxNetwork):  # numpy in, numpy out
        if full_resolution:
            raise ModelError("The full-resolution dense map needs the torch detector; load the model with onnx=False.")
        probability = softmax(model(padded)[0], axis=0)[1]
    else:
        import torch

        model.eval()
        with torch.no_grad():
            inputs = torch.from_numpy(padded).to(device)
            if full_resolution:
                return torch.softmax(model.dense_logits(inputs)[0], 0)[1, :height, :width].cpu().numpy()
            probability = torch.softmax(model(inputs)[0], 0)[1].cpu().numpy()
    step = POOL_STRIDE**2
    rows, cols = np.meshgrid(np.arange(height) / step, np.arange(width) / step, indexing="ij")
    return ndimage.map_coordinates(probability, [rows, cols], order=1, mode="nearest").astype(np.float32)


def detect_slab(model, slab: SagittalSlab, full_resolution: bool = True, device="cpu") -> np.ndarray:
    """Detection maps (slices, rows, cols) of every slice of a slab, normalised as in training."""
    arrays = normalise_intensities(slab.arrays)
    return np.stack([detect_dense(model, plane, full_resolution, device) for plane in arrays])
