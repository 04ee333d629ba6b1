"""The 2D MR vertebral-body pipeline: scan -> slice-wise body probability -> instances -> names.

1. The scan goes to the model's working frame and is normalised exactly as in training
   (:mod:`.slices2d`, settings from the card).
2. Every slice of the card's plane, with its neighbours as channels, goes through the network
   whole (padded to a multiple of 16); with ``flip`` the superior-inferior mirror image is
   predicted too and the probabilities are averaged.
3. Probability (Gaussian-smoothed by ``smooth_mm`` when set) > threshold -> bodies -> instances
   (:func:`.instances.split_instances`), named from SpineLabel points when given, then put back on
   the scan's own grid (nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import DivisiblePad

from ..errors import InputError
from ..points import LabelledPoint
from ..tables import Column
from .instances import (Vertebra, describe, label_values, name_instances, relabel, split_instances,
                        superior_inferior_axis)
from .slices2d import PLANE_AXIS, prepare_volume, stack, volume_from_slices

TASK = "spine-segment-2d"
#: Inference settings a card may override under ``extra["inference"]``.
DEFAULT_INFERENCE = {"threshold": 0.5, "flip": False, "smooth_mm": 0.0, "erosion_mm": 3.0, "min_volume_mm3": 1000.0,
                     "min_seed_mm3": 300.0, "batch_size": 8, "roi_step": 4, "roi_margin_px": 40}
MIN_SLICES = 3
#: Largest working grid (voxels at the card spacing) processed whole: about 1.5 GB of float arrays.
MAX_VOXELS = 80_000_000


@dataclass
class Model2D:
    card: object  # spinebrain.models.ModelCard
    network: torch.nn.Module
    device: torch.device

    @property
    def settings(self) -> dict:
        return {**DEFAULT_INFERENCE, **self.card.extra.get("inference", {})}

    @property
    def plane(self) -> str:
        return self.card.extra.get("plane", "sagittal")

    @property
    def context(self) -> int:
        return int(self.card.extra.get("context", 1))


@dataclass
class Segmentation2D:
    label_image: sitk.Image  # on the input scan's grid; values: VerSe level or 100 + k ("Vertebra k")
    names: dict[int, str]  # label value -> segment name
    vertebrae: list[Vertebra] = field(default_factory=list)
    probability: sitk.Image | None = None  # working grid (kept for evaluation and pictures)


def load_model_2d(model: str | None = None, device: str | torch.device = "cpu", registry=None) -> Model2D:
    from ..device import select_device
    from ..models.network import load_network

    device = select_device(device)
    card, network = load_network(model, task=TASK, registry=registry, device=device)
    # channels-last convolutions are about 1.4x faster on CPUs (oneDNN); the weights are the same
    return Model2D(card, network.to(memory_format=torch.channels_last), device)


def load_models(region=None, model=None, device="auto", mode: str = "2d") -> Model2D:
    """The task registry's ``load_models`` entry: one 2D model (the region does not choose among them yet)."""
    if mode != "2d":
        raise InputError(f"The {mode} mode is not available yet; use the 2d mode (MR vertebral bodies) for now.")
    return load_model_2d(model, device=device)


def run_case(image: sitk.Image, models: Model2D, fixed_points=(), device=None, progress=None, **_options):
    """The task registry's ``run_case`` entry: one scan in memory, SpineLabel points name the bodies."""
    return segment_bodies(image, models, list(fixed_points) or None, progress=progress)


def body_probability(image: sitk.Image, model: Model2D, flip: bool | None = None) -> tuple[sitk.Image, object]:
    """Per-voxel body probability on the working grid, and the prepared volume."""
    normalisation = model.card.normalisation
    _check_size(image, float(model.card.spacing[0]))
    volume = prepare_volume(image, model.plane, float(model.card.spacing[0]), bool(normalisation.get("n4", False)))
    if volume.slice_count < MIN_SLICES or min(volume.array.shape[1:]) < 16:
        raise InputError(f"The scan has too few voxels for slice-wise segmentation (working grid "
                         f"{tuple(volume.array.shape)}); give a 3D scan of the spine at least 16 mm across.")
    flip = model.settings["flip"] if flip is None else flip
    slices = np.zeros(volume.array.shape, dtype=np.float32)
    roi = _region_of_interest(volume.array, model) if model.settings["roi_step"] else None
    if roi is None:
        roi = (slice(0, volume.slice_count), slice(None), slice(None))
    indices = range(volume.slice_count)[roi[0]]
    slices[roi[0], roi[1], roi[2]] = _predict_slices(volume.array[:, roi[1], roi[2]], indices, model, flip)
    return volume_from_slices(slices, volume), volume


def _region_of_interest(array: np.ndarray, model: Model2D):
    """Slices and in-plane box worth predicting, from a quick pass on every ``roi_step``-th slice.

    Most of a spine MR is not vertebral body: predicting only where the quick pass found bodies
    (plus a margin) cuts the time by two to four. None when the quick pass finds nothing (then
    every slice is predicted, so a faint scan is not dropped on the quick pass's word).
    """
    step, margin = int(model.settings["roi_step"]), int(model.settings["roi_margin_px"])
    coarse = range(0, array.shape[0], step)
    found = _predict_slices(array, coarse, model, flip=False) > float(model.settings["threshold"])
    if not found.any():
        return None
    hits = np.flatnonzero(found.reshape(len(coarse), -1).any(axis=1))
    first, last = coarse[hits[0]] - step, coarse[hits[-1]] + step + 1
    rows = np.flatnonzero(found.any(axis=(0, 2)))
    cols = np.flatnonzero(found.any(axis=(0, 1)))
    return (slice(max(0, first), min(array.shape[0], last)),
            slice(max(0, rows[0] - margin), rows[-1] + margin + 1),
            slice(max(0, cols[0] - margin), cols[-1] + margin + 1))


def _predict_slices(array: np.ndarray, indices, model: Model2D, flip: bool) -> np.ndarray:
    """Probabilities [len(indices), rows, cols] of the given slices of ``array`` (neighbours from ``array``)."""
    padded = DivisiblePad(k=16)(array)  # channels = slices; pads the two in-plane axes
    padded = np.asarray(padded.as_tensor() if hasattr(padded, "as_tensor") else padded)
    rows, cols = array.shape[1:]
    offset = [(padded.shape[1] - rows) // 2, (padded.shape[2] - cols) // 2]
    indices = list(indices)
    result = np.empty((len(indices), rows, cols), dtype=np.float32)
    batch = int(model.settings["batch_size"])
    with torch.inference_mode():
        for start in range(0, len(indices), batch):
            chunk = indices[start:start + batch]
            inputs = torch.stack([torch.as_tensor(stack(padded, i, model.context)) for i in chunk])
            probability = _predict(model, inputs, flip)
            result[start:start + len(chunk)] = probability[:, 0, offset[0]:offset[0] + rows, offset[1]:offset[1] + cols]
    return result


def _check_size(image: sitk.Image, spacing_mm: float) -> None:
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    if np.prod(np.maximum(extent / spacing_mm, 1)) > MAX_VOXELS:
        raise InputError(f"The scan covers {' x '.join(f'{e:.0f}' for e in extent)} mm, too large to segment at "
                         f"{spacing_mm:g} mm in one piece; crop it to the spine and run again.")


def _predict(model: Model2D, inputs: torch.Tensor, flip: bool) -> np.ndarray:
    inputs = inputs.to(model.device, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
    probability = torch.sigmoid(model.network(inputs))
    if flip:  # last axis of a slice is superior-inferior in the sagittal and coronal planes
        axis = -1 if model.plane != "axial" else -2
        probability = 0.5 * (probability + torch.sigmoid(model.network(inputs.flip(axis))).flip(axis))
    return probability.cpu().numpy()


def segment_bodies(image: sitk.Image, model: Model2D, points: list[LabelledPoint] | None = None,
                   progress=None) -> Segmentation2D:
    """Segment and name the vertebral bodies of an MR scan (see the module docstring)."""
    _report(progress, 0.05, "predicting body probability slice by slice")
    probability, _volume = body_probability(image, model)
    _report(progress, 0.8, "splitting bodies into instances")
    result = bodies_from_probability(image, probability, model.settings, points)
    _report(progress, 0.95, f"{len(result.vertebrae)} vertebral bodies")
    return result


def bodies_from_probability(image: sitk.Image, probability: sitk.Image, settings: dict,
                            points: list[LabelledPoint] | None = None) -> Segmentation2D:
    """(Smooth,) threshold, fill holes, split into instances, name, and bring back to the scan's grid."""
    smoothed = _smoothed(probability, settings)
    bodies = sitk.BinaryFillhole(sitk.Cast(smoothed > float(settings["threshold"]), sitk.sitkUInt8))
    instances = split_instances(bodies, smoothed, float(settings["erosion_mm"]),
                                float(settings["min_volume_mm3"]), float(settings["min_seed_mm3"]))
    numbers = name_instances(instances, points)
    values = label_values(numbers)
    working = relabel(instances, values)
    labels = sitk.Resample(working, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    names = {values[n]: name for n, name in numbers.items()}
    # completeness is judged in the working frame, where one index axis runs superior-inferior
    records = describe(working, names, superior_inferior_axis(working))
    vertebrae = [v for v in (_measured_on(labels, record) for record in records) if v.volume_mm3 > 0]
    present = {v.value for v in vertebrae}
    return Segmentation2D(labels, {v: n for v, n in names.items() if v in present}, vertebrae, probability)


def _smoothed(probability: sitk.Image, settings: dict) -> sitk.Image:
    """The probability after a Gaussian of ``smooth_mm``: slices are predicted one by one, so the
    stacked volume is jagged across them, and a body's outline there is noise, not anatomy."""
    sigma = float(settings.get("smooth_mm", 0.0))
    return sitk.SmoothingRecursiveGaussian(probability, sigma) if sigma > 0 else probability


def _measured_on(labels: sitk.Image, record: Vertebra) -> Vertebra:
    """Volume and centroid measured on the scan's own grid (what the user's file holds)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    if record.value not in stats.GetLabels():
        return Vertebra(record.value, record.name, 0.0, record.centroid_ras, record.complete)
    from ..geometry import lps_to_ras

    centroid = lps_to_ras(np.array(stats.GetCentroid(record.value)))
    return Vertebra(record.value, record.name, round(float(stats.GetPhysicalSize(record.value)), 1),
                    tuple(round(float(c), 2) for c in centroid), record.complete)


#: The per-vertebra table (CSV + Slicer schema), also the review table's columns.
VERTEBRA_COLUMNS = [Column("name", "text"), Column("label value", "int"), Column("complete", "bool"),
                    Column("volume", "float", "mm³"), Column("centroid R", "float", "mm"),
                    Column("centroid A", "float", "mm"), Column("centroid S", "float", "mm")]


def vertebra_records(result: Segmentation2D) -> list[dict]:
    return [{"name": v.name, "label value": v.value, "complete": v.complete, "volume": v.volume_mm3,
             "centroid R": v.centroid_ras[0], "centroid A": v.centroid_ras[1], "centroid S": v.centroid_ras[2]}
            for v in result.vertebrae]


def write_results(image: sitk.Image, result: Segmentation2D, seg_path, png_path=None, title: str = "") -> list:
    """Write the ``.seg.nrrd``, the per-vertebra ``.csv`` beside it and, given ``png_path``, the picture."""
    from ..pictures import save_overview_png
    from .review import write_segmentation_and_table

    written = write_segmentation_and_table(result, vertebra_records(result), VERTEBRA_COLUMNS, seg_path)
    if png_path is not None:
        # the picture's sagittal slice goes through the bodies' centroids, which it labels by name
        centres = [LabelledPoint(v.name, np.array(v.centroid_ras)) for v in result.vertebrae]
        written.append(save_overview_png(image, png_path, points=centres or None, label_image=result.label_image,
                                         names=result.names, plane="sagittal",
                                         title=title or f"SpineSegment 2D MR: {len(centres)} vertebral bodies",
                                         labels_legend="result: one segment per vertebral body",
                                         points_legend="segment names (at each centroid)",
                                         faint_labels=[v.value for v in result.vertebrae if not v.complete]))
    return written


def _report(progress, fraction: float, message: str) -> None:
    if progress is not None:
        progress.update("segment", fraction, message)


__all__ = ["TASK", "Model2D", "Segmentation2D", "load_model_2d", "body_probability", "segment_bodies", "PLANE_AXIS"]
