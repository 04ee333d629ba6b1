"""The 2D MR vertebral-body pipeline: scan -> slice-wise body probability -> instances -> names.

1. The scan goes to the model's working frame and is normalised exactly as in training
   (:mod:`.slices2d`, settings from the card).
2. Every slice of the card's plane, with its neighbours as channels, goes through the network
   whole (padded to a multiple of 16); with ``flip`` the superior-inferior mirror image is
   predicted too and the probabilities are averaged.
3. Probability > threshold -> bodies -> instances (:func:`.instances.split_instances`), named from
   SpineLabel points when given, then put back on the scan's own grid (nearest neighbour).
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
from .instances import Vertebra, describe, label_values, name_instances, relabel, split_instances, superior_inferior_axis
from .slices2d import PLANE_AXIS, prepare_volume, stack, volume_from_slices

TASK = "spine-segment-2d"
#: Inference settings a card may override under ``extra["inference"]``.
DEFAULT_INFERENCE = {"threshold": 0.5, "flip": True, "erosion_mm": 3.0, "min_volume_mm3": 1000.0,
                     "min_seed_mm3": 300.0, "batch_size": 8}
MIN_SLICES = 3


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
    return Model2D(card, network, device)


def body_probability(image: sitk.Image, model: Model2D, flip: bool | None = None) -> tuple[sitk.Image, object]:
    """Per-voxel body probability on the working grid, and the prepared volume."""
    normalisation = model.card.normalisation
    volume = prepare_volume(image, model.plane, float(model.card.spacing[0]), bool(normalisation.get("n4", False)))
    if volume.slice_count < MIN_SLICES or min(volume.array.shape[1:]) < 16:
        raise InputError(f"The scan has too few voxels for slice-wise segmentation (working grid "
                         f"{tuple(volume.array.shape)}); give a 3D scan of the spine at least 16 mm across.")
    flip = model.settings["flip"] if flip is None else flip
    padded = DivisiblePad(k=16)(volume.array)  # channels = slices; pads the two in-plane axes
    padded = padded.as_tensor() if hasattr(padded, "as_tensor") else torch.as_tensor(padded)
    rows, cols = volume.array.shape[1:]
    offset = [(padded.shape[1] - rows) // 2, (padded.shape[2] - cols) // 2]
    slices = np.empty(volume.array.shape, dtype=np.float32)
    batch = int(model.settings["batch_size"])
    with torch.no_grad():
        for start in range(0, volume.slice_count, batch):
            indices = range(start, min(start + batch, volume.slice_count))
            inputs = torch.stack([torch.as_tensor(stack(padded.numpy(), i, model.context)) for i in indices])
            probability = _predict(model, inputs, flip)
            slices[start:start + len(indices)] = probability[:, 0, offset[0]:offset[0] + rows, offset[1]:offset[1] + cols]
    return volume_from_slices(slices, volume), volume


def _predict(model: Model2D, inputs: torch.Tensor, flip: bool) -> np.ndarray:
    inputs = inputs.to(model.device, dtype=torch.float32)
    probability = torch.sigmoid(model.network(inputs))
    if flip:  # last axis of a slice is superior-inferior in the sagittal and coronal planes
        axis = -1 if model.plane != "axial" else -2
        probability = 0.5 * (probability + torch.sigmoid(model.network(inputs.flip(axis))).flip(axis))
    return probability.cpu().numpy()


def segment_bodies(image: sitk.Image, model: Model2D, points: list[LabelledPoint] | None = None,
                   progress=None) -> Segmentation2D:
    """Segment and name the vertebral bodies of an MR scan (see the module docstring)."""
    _report(progress, 0.05, "predicting body probability slice by slice")
    probability, volume = body_probability(image, model)
    settings = model.settings
    _report(progress, 0.8, "splitting bodies into instances")
    instances = split_instances(probability > float(settings["threshold"]), probability, float(settings["erosion_mm"]),
                                float(settings["min_volume_mm3"]), float(settings["min_seed_mm3"]))
    numbers = name_instances(instances, points)
    values = label_values(numbers)
    working = relabel(instances, values)
    labels = sitk.Resample(working, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    names = {values[n]: name for n, name in numbers.items()}
    _report(progress, 0.95, f"{len(names)} vertebral bodies")
    # completeness is judged in the working frame, where one index axis runs superior-inferior
    records = {v.value: v for v in describe(working, names, superior_inferior_axis(working))}
    vertebrae = [_measured_on(labels, record) for record in records.values()]
    present = {v.value for v in vertebrae}
    return Segmentation2D(labels, {v: n for v, n in names.items() if v in present},
                          [v for v in vertebrae if v.volume_mm3 > 0], probability)


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
    from pathlib import Path

    from ..outputs import write_segmentation, write_table
    from ..pictures import save_overview_png

    seg_path = Path(seg_path)
    stem = seg_path.name[: -len(".seg.nrrd")] if seg_path.name.endswith(".seg.nrrd") else seg_path.stem
    written = [write_segmentation(result.label_image, result.names, seg_path),
               write_table(vertebra_records(result), VERTEBRA_COLUMNS, seg_path.with_name(stem + ".csv"))]
    if png_path is not None:
        # the picture's sagittal slice goes through the bodies' centroids, which it labels by name
        centres = [LabelledPoint(v.name, np.array(v.centroid_ras)) for v in result.vertebrae]
        written.append(save_overview_png(image, png_path, points=centres or None, label_image=result.label_image,
                                         names=result.names, plane="sagittal",
                                         title=title or f"SpineSegment 2D MR: {len(result.vertebrae)} vertebral bodies"))
    return written


def _report(progress, fraction: float, message: str) -> None:
    if progress is not None:
        progress.update("segment", fraction, message)


__all__ = ["TASK", "Model2D", "Segmentation2D", "load_model_2d", "body_probability", "segment_bodies", "PLANE_AXIS"]
