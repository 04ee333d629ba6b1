"""Body mask -> vertebra instances -> names, volumes, centroids and completeness.

Instances are SimpleITK connected components; bodies that touch (a prediction bridging a thin or
degenerate disc) are split by seeded watershed: seeds are the components of the mask eroded by a
few millimetres (a bridge is thinner than a body, so erosion cuts it), and the watershed runs on
1 - probability inside the mask, so the cut follows the least certain voxels — the disc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..anatomy import VERTEBRA_LABELS, vertebra_index
from ..geometry import lps_to_ras, ras_to_index
from ..points import LabelledPoint

#: Value of the k-th unnamed instance ("Vertebra k") in label maps: clear of every VerSe value.
UNNAMED_BASE = 100


@dataclass
class Vertebra:
    value: int
    name: str
    volume_mm3: float
    centroid_ras: tuple[float, float, float]
    complete: bool


def split_instances(mask: sitk.Image, probability: sitk.Image | None = None, erosion_mm: float = 3.0,
                    min_volume_mm3: float = 1000.0, min_seed_mm3: float = 300.0) -> sitk.Image:
    """Label image (1..n, uint16) of the separate bodies in a binary ``mask``.

    Components smaller than ``min_volume_mm3`` are dropped (specks). A component whose erosion
    leaves two or more seeds of ``min_seed_mm3`` is cut between them by watershed on
    ``1 - probability`` (or on the negated distance to the background when no probability is given).
    """
    mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    radius = [max(1, int(round(erosion_mm / s))) for s in mask.GetSpacing()]
    # Everything happens inside the mask's bounding box (plus the erosion radius): the bodies fill a
    # few percent of a scan, and the watershed over the whole image was most of the run time.
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    result = sitk.Image(mask.GetSize(), sitk.sitkUInt16)
    result.CopyInformation(mask)
    if 1 not in stats.GetLabels():
        return result
    box = stats.GetBoundingBox(1)
    low = [max(0, box[a] - radius[a] - 1) for a in range(3)]
    high = [min(mask.GetSize()[a], box[a] + box[a + 3] + radius[a] + 1) for a in range(3)]
    size = [h - lo for lo, h in zip(low, high, strict=True)]
    crop = sitk.RegionOfInterest(mask, size, low)
    crop_probability = None if probability is None else sitk.RegionOfInterest(probability, size, low)
    instances = _split_in_box(crop, crop_probability, radius, min_volume_mm3, min_seed_mm3)
    return sitk.Paste(result, instances, instances.GetSize(), [0, 0, 0], low)


def _split_in_box(mask: sitk.Image, probability: sitk.Image | None, radius: list[int], min_volume_mm3: float,
                  min_seed_mm3: float) -> sitk.Image:
    voxel_mm3 = float(np.prod(mask.GetSpacing()))
    eroded = sitk.BinaryErode(mask, radius, sitk.sitkBall)
    seeds = sitk.RelabelComponent(sitk.ConnectedComponent(eroded), int(np.ceil(min_seed_mm3 / voxel_mm3)))
    if probability is None:
        landscape = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=False, useImageSpacing=True)
    else:
        landscape = 1.0 - sitk.Cast(probability, sitk.sitkFloat32)
    split = sitk.MorphologicalWatershedFromMarkers(landscape, seeds, markWatershedLine=False, fullyConnected=True)
    split = _within_seed_components(sitk.Mask(sitk.Cast(split, sitk.sitkUInt16), mask), seeds, mask)
    # Parts of the mask no seed reached (thin pieces, small partial bodies) stay as their own components.
    leftover = sitk.ConnectedComponent(sitk.And(mask, split == 0))
    offset = int(sitk.GetArrayViewFromImage(split).max())
    leftover = sitk.Cast(sitk.Mask(leftover + offset, leftover > 0), sitk.sitkUInt16)
    # numbered by size, specks dropped
    relabelled = sitk.RelabelComponent(split + leftover, int(np.ceil(min_volume_mm3 / voxel_mm3)))
    return sitk.Cast(relabelled, sitk.sitkUInt16)


def _within_seed_components(split: sitk.Image, seeds: sitk.Image, mask: sitk.Image) -> sitk.Image:
    """Keep each watershed label only inside the mask component holding its seed.

    The watershed floods the whole image, so a separate speck would otherwise join the nearest body.
    """
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(mask))
    seed_array = sitk.GetArrayViewFromImage(seeds)
    labels = sitk.GetArrayFromImage(split)
    home = np.zeros(int(max(labels.max(), seed_array.max())) + 1, dtype=components.dtype)
    home[seed_array[seed_array > 0]] = components[seed_array > 0]  # each seed lies in one component
    labels[(labels > 0) & (home[labels] != components)] = 0
    result = sitk.GetImageFromArray(labels)
    result.CopyInformation(split)
    return result


def name_instances(instances: sitk.Image, points: list[LabelledPoint] | None = None,
                   max_distance_mm: float = 20.0) -> dict[int, str]:
    """Instance number -> name: the level of the point inside it (else the nearest within
    ``max_distance_mm`` of its centroid); without points, "Vertebra 1..n" from the top down."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(instances)
    numbers = list(stats.GetLabels())
    centroids = {n: lps_to_ras(np.array(stats.GetCentroid(n))) for n in numbers}
    names: dict[int, str] = {}
    if points:
        names = _names_from_points(instances, points, centroids, max_distance_mm)
    unnamed = sorted((n for n in numbers if n not in names), key=lambda n: -centroids[n][2])  # superior first
    for order, number in enumerate(unnamed, start=1):
        names[number] = f"Vertebra {order}"
    return names


def _names_from_points(instances, points, centroids, max_distance_mm) -> dict[int, str]:
    array = sitk.GetArrayViewFromImage(instances)
    claims: dict[int, tuple[float, str]] = {}  # instance -> (distance, name); inside a body = distance 0
    for point in points:
        ijk = np.round(ras_to_index(instances, point.ras)).astype(int)
        inside = all(0 <= ijk[a] < instances.GetSize()[a] for a in range(3)) and array[ijk[2], ijk[1], ijk[0]] > 0
        if inside:
            number, distance = int(array[ijk[2], ijk[1], ijk[0]]), 0.0
        else:
            number, distance = min(((n, float(np.linalg.norm(c - point.ras))) for n, c in centroids.items()),
                                   key=lambda item: item[1], default=(None, np.inf))
            if number is None or distance > max_distance_mm:
                continue
        if number not in claims or distance < claims[number][0]:
            claims[number] = (distance, point.label)
    names, used = {}, set()
    for number, (_, name) in sorted(claims.items(), key=lambda item: item[1][0]):
        if name not in used:  # one level names one body: the closest claim wins
            names[number] = name
            used.add(name)
    return names


def label_values(names: dict[int, str]) -> dict[int, int]:
    """Instance number -> label value: the VerSe value of a level, 100 + k for "Vertebra k"."""
    values = {}
    for number, name in names.items():
        values[number] = VERTEBRA_LABELS.get(name, UNNAMED_BASE + int(name.split()[-1]) if name.startswith("Vertebra ")
                                             else UNNAMED_BASE + number)
    return values


def relabel(instances: sitk.Image, values: dict[int, int]) -> sitk.Image:
    array = sitk.GetArrayViewFromImage(instances)
    lookup = np.zeros(int(array.max()) + 1, dtype=np.uint16)
    for number, value in values.items():
        lookup[number] = value
    result = sitk.GetImageFromArray(lookup[array])
    result.CopyInformation(instances)
    return result


def describe(label_image: sitk.Image, names: dict[int, str], along_axis: int) -> list[Vertebra]:
    """Per-vertebra records in spine order; complete unless it touches the first or last slice along
    ``along_axis`` (the image index axis closest to superior-inferior)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(label_image)
    size = label_image.GetSize()
    records = []
    for value in stats.GetLabels():
        box = stats.GetBoundingBox(value)  # (x, y, z, size_x, size_y, size_z)
        touches = box[along_axis] == 0 or box[along_axis] + box[along_axis + 3] >= size[along_axis]
        centroid = lps_to_ras(np.array(stats.GetCentroid(value)))
        records.append(Vertebra(int(value), names[int(value)], float(stats.GetPhysicalSize(value)),
                                tuple(round(float(c), 2) for c in centroid), not touches))
    return sorted(records, key=_spine_order)


def _spine_order(vertebra: Vertebra):
    try:
        return (0, vertebra_index(vertebra.name), 0.0)
    except ValueError:
        return (1, 0.0, -vertebra.centroid_ras[2])


def superior_inferior_axis(image: sitk.Image) -> int:
    """Index axis (0, 1, 2) whose direction is closest to the superior-inferior axis."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return int(np.argmax(np.abs(direction[2, :])))
