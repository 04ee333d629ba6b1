"""One call from a scan and a model package to results on the scan's own grid."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from ..device import run_with_cpu_fallback
from ..errors import InputError
from ..geometry import same_grid
from ..models import ModelCard
from ..protocol import Progress, as_progress
from ..resample import resample_like
from .prepare import prepare_channels
from .sliding import ACTIVATIONS, WindowSettings, infer_volume, total_windows

OUTPUTS = ("labels", "probabilities", "both")


@dataclass
class InferenceResult:
    """Results on the input scan's grid (same size, spacing, origin and direction).

    ``labels``: UInt8 (UInt16 past 255) map of the card's label values, or None.
    ``probabilities``: one Float32 image per network output channel (index = channel), or empty.
    ``device``: where the network actually ran (the CPU after an out-of-memory fallback).
    """

    labels: sitk.Image | None = None
    probabilities: list[sitk.Image] = field(default_factory=list)
    device: str = "cpu"
    windows: int = 0
    seconds: float = 0.0


def label_values(card: ModelCard) -> list[int]:
    """The label value of each output channel: channel n is the n-th value of the card's labels, ascending."""
    try:
        return sorted(int(value) for value in card.labels)
    except ValueError:
        raise InputError(f"The labels of model {card.id!r} are not keyed by integer values; fix its card.") from None


def output_activation(card: ModelCard) -> str:
    """The card's ``output_activation`` (softmax for class scores unless it says sigmoid or none)."""
    activation = card.extra.get("output_activation", "softmax")
    if activation not in ACTIVATIONS:
        raise InputError(f"Model {card.id!r} names the output activation {activation!r}; use {', '.join(ACTIVATIONS)}.")
    return activation


def run_inference(image: sitk.Image, network: torch.nn.Module, card: ModelCard, *,
                  extra_channels: Sequence[sitk.Image] = (), device: torch.device | str = "cpu",
                  output: str = "labels", overlap: float = 0.25, sw_batch_size: int = 4, blend: str = "gaussian",
                  max_slab_voxels: int | None = None, progress: Progress | None = None,
                  cancel_event=None) -> InferenceResult:
    """Segment ``image`` with ``network`` as ``card`` prescribes; results on ``image``'s grid.

    Resample to ``card.spacing`` and normalise per ``card.normalisation``
    (:func:`~spinebrain.inference.prepare.prepare_channels`), run sliding windows of
    ``card.patch_size`` (:func:`~spinebrain.inference.sliding.infer_volume`) on ``device`` -- on a
    GPU out-of-memory error the run starts again on the CPU (logged through ``progress``) -- and
    resample back: labels by nearest neighbour, probabilities linearly. ``cancel_event`` (anything
    with ``is_set()``, e.g. :class:`threading.Event`) stops the run before the next batch of windows
    with :class:`~spinebrain.errors.CancelledError`.
    """
    if output not in OUTPUTS:
        raise InputError(f"Unknown output {output!r}; ask for one of {', '.join(OUTPUTS)}.")
    progress = as_progress(progress)
    started = time.perf_counter()
    progress.update("prepare", 0.0, f"resampling to {card.spacing} mm and normalising")
    grid, array = prepare_channels(image, card.spacing, card.normalisation, extra_channels)
    settings = WindowSettings(card.patch_size, overlap, sw_batch_size, blend)
    if max_slab_voxels:
        settings.max_slab_voxels = int(max_slab_voxels)
    used = {}

    def run_on(device: torch.device) -> dict[str, np.ndarray]:
        used["device"] = device
        return infer_volume(array, network, settings, device, output, output_activation(card), progress, cancel_event)

    outputs = run_with_cpu_fallback(run_on, device, on_fallback=progress.log)
    progress.update("resample", 0.0, "back onto the input grid")
    result = InferenceResult(device=str(used["device"]), windows=total_windows(array.shape[1:], settings))
    del array  # the normalised input is not needed on the way back
    if "labels" in outputs:
        result.labels = _labels_on_input(outputs.pop("labels"), card, grid, image)
    for channel in outputs.pop("probabilities", ()):
        result.probabilities.append(_on_input(channel.astype(np.float32), grid, image, is_label=False))
    progress.update("resample", 1.0, "done")
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _labels_on_input(indices: np.ndarray, card: ModelCard, grid: sitk.Image, image: sitk.Image) -> sitk.Image:
    values = label_values(card)
    if len(values) < 2:
        raise InputError(f"Model {card.id!r} lists fewer than two labels; its card must name background and the rest.")
    lookup = np.asarray(values, np.uint8 if max(values) <= 255 else np.uint16)
    if int(indices.max(initial=0)) >= len(lookup):
        raise InputError(f"Model {card.id!r} has more output channels than labels in its card; fix its labels.")
    return _on_input(lookup[indices], grid, image, is_label=True)


def _on_input(array_ijk: np.ndarray, grid: sitk.Image, image: sitk.Image, is_label: bool) -> sitk.Image:
    """An (i, j, k) array on the model grid as an image on the input grid."""
    result = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)))
    result.CopyInformation(grid)
    if same_grid(result, image, tolerance_mm=0.0):
        return result
    return resample_like(result, image, is_label=is_label, default_value=0.0)
