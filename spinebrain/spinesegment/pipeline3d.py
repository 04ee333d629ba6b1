"""SpineSegment's 3D mode: iterative vertebra instances on CT (seed 002), scan in -> instances out.

1. Refuse what is not CT in Hounsfield units (the 3D model is a CT model).
2. Bring the scan onto the model grid (LPS axes, the card's isotropic spacing) and window it.
3. Run the traversal (:mod:`.traversal`) with the network as predictor; bottom-up runs the same
   traversal on the scan flipped along the spine (the network was trained for both that way);
   SpineLabel points, when given, are the first search positions.
4. Bring each instance back to the scan's own grid (linear interpolation of its mask, then 0.5),
   then the CT refinement: grow each vertebra by ``grow_mm`` into unlabelled voxels and peel voxels
   under ``refine_hu`` (200 HU) off its surface, a few layers deep (the cortex stops the peeling).
5. Names: the SpineLabel level of the point inside each instance, else "Vertebra k" in traversal order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from ..errors import InputError
from ..geometry import lps_to_ras
from ..inference.prepare import normalise
from ..tables import Column
from .data3d import to_canonical
from .instances import UNNAMED_BASE, label_values, name_instances
from .traversal import TraversalSettings, run_traversal

TASK = "spine-segment-3d"
DEFAULT_REFINEMENT = {"refine_hu": 200.0, "grow_mm": 1.0, "peel_layers": 1}
#: Largest model grid processed (voxels): a whole-body CT at 4 mm is about 3 M.
MAX_MODEL_VOXELS = 40_000_000


@dataclass
class Model3D:
    card: object
    network: torch.nn.Module
    device: torch.device

    @property
    def traversal(self) -> TraversalSettings:
        extra = self.card.extra.get("traversal", {})
        return TraversalSettings(patch=int(self.card.patch_size[0]), n_min=int(extra.get("n_min", 16)),
                                 delta_max=int(extra.get("delta_max", 2)),
                                 max_iterations=int(extra.get("max_iterations", 20)),
                                 threshold=float(extra.get("threshold", 0.5)))

    @property
    def refinement(self) -> dict:
        return {**DEFAULT_REFINEMENT, **self.card.extra.get("refinement", {})}

    def predict(self, image: np.ndarray, memory: np.ndarray) -> tuple[np.ndarray, float]:
        inputs = torch.from_numpy(np.stack([image, memory])[None].astype(np.float32)).to(self.device)
        with torch.no_grad():
            output = self.network(inputs)
        return torch.sigmoid(output[0, 0]).cpu().numpy(), float(torch.sigmoid(output[0, 1, 0, 0, 0]))


@dataclass
class Vertebra3D:
    value: int
    name: str
    complete: bool
    complete_probability: float
    volume_mm3: float
    centroid_ras: tuple[float, float, float]


@dataclass
class Segmentation3D:
    label_image: sitk.Image  # the scan's grid; VerSe values, or 100 + k for "Vertebra k"
    names: dict[int, str]
    vertebrae: list[Vertebra3D] = field(default_factory=list)
    steps: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def load_model_3d(model: str | None = None, device: str | torch.device = "cpu", registry=None) -> Model3D:
    from ..device import select_device
    from ..models.network import load_network

    device = select_device(device)
    card, network = load_network(model, task=TASK, registry=registry, device=device)
    return Model3D(card, network, device)


def load_models(region=None, model=None, device="auto") -> Model3D:
    return load_model_3d(model, device=device)


def run_case(image: sitk.Image, models: Model3D, fixed_points=(), device=None, progress=None, direction="down",
             **_options) -> Segmentation3D:
    """The task registry's ``run_case`` for the 3D mode: one CT in memory, SpineLabel points name the vertebrae."""
    return segment_vertebrae(image, models, list(fixed_points) or None, direction, progress)


def check_ct(image: sitk.Image, model: Model3D | None = None) -> None:
    """Refuse a scan that is not CT in Hounsfield units (nothing below -150 HU: no fat, no air) or shows no bone."""
    sample = sitk.GetArrayViewFromImage(image)[::2, ::2, ::2]
    low, high = float(np.min(sample)), float(np.max(sample))
    if low > -150:
        name = f" ({model.card.id})" if model is not None else ""
        raise InputError(f"This scan's intensities ({low:.0f} to {high:.0f}) are not CT in Hounsfield units, and the "
                         f"3D vertebra model{name} is a CT-only model; give a CT scan, or use --mode 2d for MR.")
    if np.count_nonzero(sample >= 200) < 50:
        raise InputError("This CT shows no bone (almost nothing at 200 HU or above); give a scan with the spine "
                         "in its field of view.")


def segment_vertebrae(image: sitk.Image, model: Model3D, points=None, direction: str = "down",
                      progress=None, refine: bool = True) -> Segmentation3D:
    if direction not in ("down", "up"):
        raise InputError(f"The direction must be 'down' or 'up', not {direction!r}.")
    check_ct(image, model)
    started = time.perf_counter()
    spacing = float(model.card.spacing[0])
    grid = to_canonical(image, spacing)
    if np.prod(grid.GetSize()) > MAX_MODEL_VOXELS:
        raise InputError(f"The scan covers {np.prod(grid.GetSize()) * spacing ** 3 / 1e6:.0f} litres; crop it to the "
                         "spine (at most about 2.5 m³ of field of view) and run again.")
    volume = normalise(grid, model.card.normalisation)  # [z, y, x], z inferior -> superior
    flip = direction == "up"  # bottom-up = top-down on the scan flipped along the spine
    if flip:
        volume = volume[::-1].copy()
    starts = _start_points(points, grid, flip)
    report = _reporter(progress)
    result = run_traversal(volume, model.predict, model.traversal, starts, report)
    labels = to_scan_grid([_on_grid(i.mask, grid, flip) for i in result.instances],
                          [_on_grid(i.probability, grid, flip) for i in result.instances], image)
    probabilities = [i.complete_probability for i in result.instances]
    if refine and result.instances:
        labels = refine_on_ct(labels, image, **model.refinement)
    segmentation = _named(labels, points, probabilities)
    segmentation.steps = dict(result.steps)
    segmentation.seconds = time.perf_counter() - started
    return segmentation


def _start_points(points, grid: sitk.Image, flip: bool) -> list:
    if not points:
        return []
    from ..geometry import ras_to_index

    starts = []
    for point in points:
        i, j, k = ras_to_index(grid, point.ras)
        z = grid.GetSize()[2] - 1 - k if flip else k
        starts.append((z, j, i))
    return starts


def _reporter(progress):
    if progress is None:
        return None

    def report(result):
        progress.update("segment", min(0.95, len(result.instances) / 26),
                        f"{len(result.instances)} vertebrae, {result.total_steps} steps")

    return report


def _on_grid(array: np.ndarray, grid: sitk.Image, flip: bool) -> sitk.Image:
    image = sitk.GetImageFromArray((array[::-1] if flip else array).astype(np.float32))
    image.CopyInformation(grid)
    return image


def to_scan_grid(masks: list[sitk.Image], probabilities: list[sitk.Image], image: sitk.Image) -> sitk.Image:
    """Instance numbers 1..n on the scan's grid: each instance's probability interpolated linearly
    (sub-voxel boundaries from the coarse model grid), at least 0.5, highest wins where two meet."""
    labels = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint16)
    best = np.zeros(labels.shape, np.float16)
    for number, (mask, probability) in enumerate(zip(masks, probabilities, strict=True), start=1):
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(sitk.Cast(mask > 0.5, sitk.sitkUInt8))
        if not stats.GetNumberOfLabels():
            continue
        lo, size = _padded_box(stats.GetBoundingBox(1), mask.GetSize(), 2)
        crop = sitk.RegionOfInterest(probability, size, lo)
        region = _scan_region(crop, image)
        if region is None:
            continue
        start, extent = region
        reference = sitk.RegionOfInterest(image, extent, start)
        values = sitk.GetArrayFromImage(sitk.Resample(crop, reference, sitk.Transform(), sitk.sitkLinear, 0.0))
        window = tuple(slice(s, s + e) for s, e in zip(start[::-1], extent[::-1], strict=True))
        wins = (values >= 0.5) & (values > best[window])
        labels[window][wins] = number
        best[window][wins] = values[wins]
    result = sitk.GetImageFromArray(labels)
    result.CopyInformation(image)
    return result


def _padded_box(box, size, margin: int) -> tuple[list[int], list[int]]:
    lo = [max(0, int(box[a]) - margin) for a in range(3)]
    hi = [min(int(size[a]), int(box[a] + box[a + 3]) + margin) for a in range(3)]
    return lo, [h - l for l, h in zip(lo, hi, strict=True)]


def _scan_region(crop: sitk.Image, image: sitk.Image):
    """(index, size) of the scan's voxels covering ``crop``'s extent, or None when it lies outside."""
    corners = []
    for corner in np.ndindex(2, 2, 2):
        index = [(-0.5 if c == 0 else n - 0.5) for c, n in zip(corner, crop.GetSize(), strict=True)]
        point = crop.TransformContinuousIndexToPhysicalPoint(index)
        corners.append(image.TransformPhysicalPointToContinuousIndex(point))
    corners = np.array(corners)
    lo = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    hi = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, np.array(image.GetSize()))
    if np.any(hi <= lo):
        return None
    return [int(v) for v in lo], [int(v) for v in hi - lo]


def refine_on_ct(labels: sitk.Image, image: sitk.Image, refine_hu: float = 200.0, grow_mm: float = 1.0,
                 peel_layers: int = 1) -> sitk.Image:
    """Grow each vertebra into unlabelled voxels, then peel voxels under ``refine_hu`` off its surface.

    Peeling takes only surface voxels, layer by layer (at most ``peel_layers``), so the soft
    cancellous bone inside a closed cortex stays; discs and soft tissue at the border go.
    """
    array = sitk.GetArrayFromImage(labels)
    hu = sitk.GetArrayViewFromImage(image)
    spacing = np.array(image.GetSpacing()[::-1])
    grow = np.where(grow_mm > 0, np.maximum(np.rint(grow_mm / spacing), 1), 0).astype(int)  # at least a voxel
    structure = ndimage.generate_binary_structure(3, 1)
    for number in [int(v) for v in np.unique(array) if v]:
        where = np.argwhere(array == number)
        lo = np.maximum(where.min(0) - grow - 1, 0)
        hi = np.minimum(where.max(0) + grow + 2, array.shape)
        window = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        part, dense = array[window], hu[window]
        mask = part == number
        if grow.any():
            grown = ndimage.binary_dilation(mask, np.ones(2 * grow + 1, bool))
            mask = mask | (grown & (part == 0))
        for _ in range(peel_layers):
            surface = mask & ~ndimage.binary_erosion(mask, structure)
            remove = surface & (dense < refine_hu)
            if not remove.any():
                break
            mask &= ~remove
        part[(part == number) & ~mask] = 0
        part[mask & (part == 0)] = number
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(labels)
    return result


def _named(numbers: sitk.Image, points, probabilities: list[float]) -> Segmentation3D:
    """Instance numbers (traversal order) -> named label map and per-vertebra records."""
    present = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(numbers)) if v]
    if not present:
        return Segmentation3D(numbers, {}, [])
    names = name_instances(numbers, points)
    unnamed = [n for n in present if names[n].startswith("Vertebra ")]
    for order, number in enumerate(sorted(unnamed), start=1):  # traversal order, not position
        names[number] = f"Vertebra {order}"
    values = label_values({n: names[n] for n in present})
    lookup = np.zeros(max(present) + 1, np.uint16)
    for number in present:
        lookup[number] = values[number]
    labels = sitk.GetImageFromArray(lookup[sitk.GetArrayViewFromImage(numbers)])
    labels.CopyInformation(numbers)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    vertebrae = []
    for number in present:
        value, probability = int(values[number]), float(probabilities[number - 1])
        centroid = lps_to_ras(np.array(stats.GetCentroid(value)))
        vertebrae.append(Vertebra3D(value, names[number], probability >= 0.5, round(probability, 3),
                                    round(float(stats.GetPhysicalSize(value)), 1),
                                    tuple(round(float(c), 2) for c in centroid)))
    return Segmentation3D(labels, {values[n]: names[n] for n in present}, vertebrae)


VERTEBRA_COLUMNS = [Column("name", "text"), Column("label value", "int"), Column("complete", "bool"),
                    Column("completeness probability", "float"), Column("volume", "float", "mm³"),
                    Column("centroid R", "float", "mm"), Column("centroid A", "float", "mm"),
                    Column("centroid S", "float", "mm")]


def vertebra_records(result: Segmentation3D) -> list[dict]:
    return [{"name": v.name, "label value": v.value, "complete": v.complete,
             "completeness probability": v.complete_probability, "volume": v.volume_mm3,
             "centroid R": v.centroid_ras[0], "centroid A": v.centroid_ras[1], "centroid S": v.centroid_ras[2]}
            for v in result.vertebrae]


def write_results(image: sitk.Image, result: Segmentation3D, seg_path, png_path=None, title: str = "") -> list:
    """The ``.seg.nrrd`` (segment names), the per-vertebra ``.csv`` beside it and, given ``png_path``, the picture."""
    from ..pictures import save_overview_png
    from ..points import LabelledPoint
    from .review import write_segmentation_and_table

    written = write_segmentation_and_table(result, vertebra_records(result), VERTEBRA_COLUMNS, seg_path)
    if png_path is not None:
        bone_window = sitk.IntensityWindowing(sitk.Cast(image, sitk.sitkFloat32), -500.0, 1300.0, 0.0, 1.0)
        centres = [LabelledPoint(v.name + ("" if v.complete else " (partial)"), np.array(v.centroid_ras))
                   for v in result.vertebrae]
        written.append(save_overview_png(bone_window, png_path, points=centres or None,
                                         label_image=result.label_image, names=result.names, plane="sagittal",
                                         title=title or f"SpineSegment 3D CT: {len(centres)} vertebrae "
                                                        f"(bone window)"))
    return written


__all__ = ["TASK", "Model3D", "Segmentation3D", "Vertebra3D", "load_model_3d", "segment_vertebrae", "check_ct",
           "refine_on_ct", "to_scan_grid", "write_results", "UNNAMED_BASE"]
