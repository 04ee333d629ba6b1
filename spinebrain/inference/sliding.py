"""MONAI sliding-window inference over a whole volume with bounded memory, progress and cancel.

The volume is cut into slabs along its last axis (k); each slab runs through
:class:`monai.inferers.SlidingWindowInferer` (overlapping windows, Gaussian blending, several windows
per forward pass, stitching on the CPU), and only the slab's core is kept, converted at once to
labels (uint8/uint16) or float16 probabilities. So the float32 stitching buffers MONAI needs cover
one slab, not the scan: a 512x512x600 CT with a small network stays under 4 GB
(``benchmarks/bench_inference_memory.py`` measures it). Slabs are laid on MONAI's own window grid
(:func:`slab_ranges`), so the result equals MONAI's whole-volume result.

MONAI has no per-window callback, so progress and cancel live in a wrapper around the network that
MONAI calls once per batch of windows: it raises :class:`~spinebrain.errors.CancelledError` before
the next batch once ``cancel_event`` is set, and reports "window n of N" after each batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import SlidingWindowInferer
from monai.inferers.utils import _get_scan_interval  # MONAI's own window placement, to count windows up front

from ..errors import CancelledError, InputError
from ..protocol import Progress, as_progress

ACTIVATIONS = ("softmax", "sigmoid", "none")


@dataclass
class WindowSettings:
    """How windows are laid and blended. ``roi_size`` is the card's patch size in (i, j, k)."""

    roi_size: Sequence[int]
    overlap: float = 0.25
    sw_batch_size: int = 4
    blend: str = "gaussian"  # or "constant"
    #: voxels per slab: MONAI's stitching buffers take (classes + 1) x this x 4 bytes (~0.8 GB for 2 classes)
    max_slab_voxels: int = 64_000_000


class _WindowRunner(torch.nn.Module):
    """The network as MONAI calls it: cancel check, AMP on CUDA, activation, progress per batch of windows."""

    def __init__(self, network, activation: str, device: torch.device, total: int, progress: Progress,
                 cancel_event=None):
        super().__init__()
        self.network, self.activation, self.device = network, activation, device
        self.total, self.done, self.progress, self.cancel_event = total, 0, progress, cancel_event

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if self.cancel_event is not None and self.cancel_event.is_set():
            raise CancelledError(f"Inference cancelled after {self.done} of {self.total} windows.")
        amp = torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda" else contextlib.nullcontext()
        with amp:
            logits = self.network(windows)
        probabilities = activate(logits.float(), self.activation)
        self.done += windows.shape[0]
        self.progress.update("inference", self.done / self.total, f"window {self.done} of {self.total}")
        return probabilities


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "softmax":
        return torch.softmax(logits, dim=1)
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    return logits


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Where MONAI starts its windows along one axis of ``size`` voxels (the last one flush with the end)."""
    roi = min(roi, size)
    interval = _get_scan_interval((size,), (roi,), 1, (overlap,))
    return sorted({window[0].start for window in dense_patch_slices((size,), (roi,), interval)})


def slab_ranges(depth: int, plane_voxels: int, roi_depth: int, overlap: float,
                max_slab_voxels: int) -> list[tuple[int, int, int, int]]:
    """(lo, hi, core_lo, core_hi) along k: run windows on [lo, hi), keep [core_lo, core_hi).

    One slab when the volume fits the budget. Otherwise the cores start at MONAI's own window
    positions and each slab spans exactly the windows of the whole-volume run that touch its core,
    so MONAI lays those same windows inside the slab and every kept voxel gets the very windows and
    weights it would get in one whole-volume run -- the same result, with a window row at each
    core boundary computed twice (the price of the memory bound).
    """
    roi = min(roi_depth, depth)
    if depth * plane_voxels <= max_slab_voxels or roi >= depth:
        return [(0, depth, 0, depth)]
    starts = window_starts(depth, roi, overlap)
    interval = starts[1] - starts[0]
    per_core = max(1, (max_slab_voxels // max(plane_voxels, 1) - roi) // interval)  # window rows per core
    boundaries = starts[::per_core][1:]
    ranges = []
    for core_lo, core_hi in zip([0, *boundaries], [*boundaries, depth]):
        used = [start for start in starts if start < core_hi and start + roi > core_lo]
        ranges.append((min(used), max(used) + roi, core_lo, core_hi))
    return ranges


def slabs_of(spatial: Sequence[int], settings: WindowSettings) -> list[tuple[int, int, int, int]]:
    return slab_ranges(spatial[-1], math.prod(spatial[:-1]), int(settings.roi_size[-1]), settings.overlap,
                       settings.max_slab_voxels)


def total_windows(spatial: Sequence[int], settings: WindowSettings) -> int:
    """Windows over all slabs of a volume of ``spatial`` size: the N of "window n of N"."""
    return sum(window_count((*spatial[:-1], hi - lo), settings) for lo, hi, _, _ in slabs_of(spatial, settings))


def window_count(shape: Sequence[int], settings: WindowSettings) -> int:
    """Number of windows MONAI lays over a volume of ``shape`` (spatial)."""
    roi = [int(r) if int(r) > 0 else int(s) for r, s in zip(settings.roi_size, shape)]
    size = [max(int(s), r) for s, r in zip(shape, roi)]  # MONAI pads a volume smaller than the window
    interval = _get_scan_interval(size, roi, len(shape), (settings.overlap,) * len(shape))
    return len(dense_patch_slices(size, roi, interval))


def infer_volume(array: np.ndarray, network: torch.nn.Module, settings: WindowSettings, device: torch.device,
                 keep: str = "labels", activation: str = "softmax", progress: Progress | None = None,
                 cancel_event=None) -> dict[str, np.ndarray]:
    """Run ``network`` over ``array`` (channels, i, j, k) float32 on ``device``; stitch on the CPU.

    Returns ``{"labels": (i, j, k) uint8/uint16 channel index}`` and/or ``{"probabilities":
    (classes, i, j, k) float16}`` as ``keep`` asks ("labels", "probabilities" or "both"). Labels are
    the argmax over channels (softmax) or probability > 0.5 (a single sigmoid/none channel).
    """
    if activation not in ACTIVATIONS:
        raise InputError(f"Unknown output activation {activation!r}; use one of {', '.join(ACTIVATIONS)}.")
    if array.ndim != len(settings.roi_size) + 1:
        raise InputError(f"The network input has shape {array.shape} but the patch size {list(settings.roi_size)} "
                         f"is {len(settings.roi_size)}D; give (channels, i, j, k).")
    progress = as_progress(progress)
    spatial = array.shape[1:]
    slabs, total = slabs_of(spatial, settings), total_windows(spatial, settings)
    runner = _WindowRunner(network.to(device).eval(), activation, device, total, progress, cancel_event)
    inferer = SlidingWindowInferer(settings.roi_size, settings.sw_batch_size, settings.overlap, mode=settings.blend,
                                   sw_device=device, device=torch.device("cpu"), progress=False,
                                   cache_roi_weight_map=True)  # one Gaussian map for all slabs
    outputs: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for lo, hi, core_lo, core_hi in slabs:
            slab = torch.from_numpy(array[..., lo:hi])[None]  # a view: windows are copied out one batch at a time
            probabilities = inferer(slab, runner)[0][..., core_lo - lo:core_hi - lo]
            _store(outputs, probabilities, spatial, (core_lo, core_hi), keep)
    return outputs


def _store(outputs: dict, probabilities: torch.Tensor, spatial, core: tuple[int, int], keep: str) -> None:
    """Write one slab core into the full-size outputs, allocating them on first use."""
    classes = probabilities.shape[0]
    where = (Ellipsis, slice(*core))
    if keep in ("labels", "both"):
        if "labels" not in outputs:
            outputs["labels"] = np.zeros(spatial, np.uint8 if classes <= 256 else np.uint16)
        labels = probabilities.argmax(0) if classes > 1 else (probabilities[0] > 0.5)
        outputs["labels"][where] = labels.numpy()
    if keep in ("probabilities", "both"):
        if "probabilities" not in outputs:
            outputs["probabilities"] = np.zeros((classes, *spatial), np.float16)
        outputs["probabilities"][where] = probabilities.to(torch.float16).numpy()
