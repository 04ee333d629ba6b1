"""From detection maps to candidate vertebra centres (Forsberg 2017, "Detection and Labeling Pipeline").

Per slice, the thresholded map is split into connected components (8-connected); each gives a
centroid and an area. Components of neighbouring slices of a slab whose in-plane centroids lie
within ``merge_distance_mm`` are the same detection seen on several slices and merge into one 3D
candidate: its position is the RAS centroid of all its pixels, its probability ``p_i`` is its total
area divided by the largest candidate's area in the slab (the paper's area normalisation, over the
slab instead of one image), and its mean detector probability is kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .graph import Candidate
from .slices import SagittalSlab

__all__ = ["Candidate", "Detection", "attach_anchor", "candidates_from_maps", "detections_from_maps",
           "slice_components"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass
class Detection:
    """One merged detection: RAS centroid, area-normalised probability, and what it was made of."""

    position: np.ndarray  # (3,) RAS mm
    probability: float  # area / largest area in the slab (paper's p_i)
    mean_probability: float  # mean detector output over the component's pixels
    area_px: int  # pixels over all slices
    slices: tuple[int, ...]  # slab slice indices it was seen on

    def to_candidate(self, anchor_probability: float = 0.0) -> Candidate:
        return Candidate(position=np.asarray(self.position, float), probability=float(self.probability),
                         anchor_probability=float(anchor_probability))


def slice_components(probability_map, threshold: float = 0.5, min_area_px: int = 1) -> list[tuple]:
    """Components of ``probability_map > threshold``: list of (row, col, area_px, mean_probability)."""
    probability = np.asarray(probability_map, dtype=float)
    labels, count = ndimage.label(probability > threshold, structure=_EIGHT_CONNECTED)
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(np.ones_like(probability), labels, index)
    means = ndimage.mean(probability, labels, index)
    centres = ndimage.center_of_mass(np.ones_like(probability), labels, index)
    return [(float(r), float(c), int(a), float(m))
            for (r, c), a, m in zip(centres, areas, means) if a >= min_area_px]


def detections_from_maps(maps, slab: SagittalSlab, threshold: float = 0.5, merge_distance_mm: float = 6.0,
                         min_area_px: int = 1) -> list[Detection]:
    """Candidates of a slab's detection maps ((slices, rows, cols), as ``slab.arrays``), strongest first."""
    maps = np.asarray(maps, dtype=float)
    if maps.shape != slab.arrays.shape:
        raise InputError(f"The detection maps {maps.shape} do not match the slab {slab.arrays.shape}; "
                         "run the detector on every slice of this slab.")
    parts = [(s, *component) for s in range(len(maps))
             for component in slice_components(maps[s], threshold, min_area_px)]
    groups = _merge_across_slices(parts, merge_distance_mm / slab.pixel_mm)
    detections = []
    for members in groups:
        rows = np.array([parts[m] for m in members], dtype=float)  # slice, row, col, area, mean
        area = rows[:, 3]
        centroid = slab.pixel_to_ras(rows[:, 0], rows[:, 1], rows[:, 2])
        detections.append(Detection(
            position=np.average(centroid, axis=0, weights=area),
            probability=float(area.sum()),  # normalised below
            mean_probability=float(np.average(rows[:, 4], weights=area)),
            area_px=int(area.sum()),
            slices=tuple(sorted({int(s) for s in rows[:, 0]})),
        ))
    largest = max((d.probability for d in detections), default=1.0)
    for detection in detections:
        detection.probability /= largest
    return sorted(detections, key=lambda d: -d.probability)


def _merge_across_slices(parts: list[tuple], distance_px: float) -> list[list[int]]:
    """Group components of neighbouring slices whose centroids are within ``distance_px`` in-plane."""
    from scipy.cluster.hierarchy import DisjointSet  # here: scipy.cluster costs a heatmap run's start 0.17 s

    groups = DisjointSet(range(len(parts)))
    for a, first in enumerate(parts):
        for b in range(a + 1, len(parts)):
            second = parts[b]
            if second[0] - first[0] == 1 and np.hypot(second[1] - first[1], second[2] - first[2]) <= distance_px:
                groups.merge(a, b)
    return [sorted(subset) for subset in groups.subsets()]


def candidates_from_maps(maps, slab: SagittalSlab, threshold: float = 0.5, merge_distance_mm: float = 6.0,
                         min_area_px: int = 1) -> list[Candidate]:
    """The graph model's candidates (position RAS, probability p_i) of a slab's detection maps."""
    return [d.to_candidate() for d in detections_from_maps(maps, slab, threshold, merge_distance_mm, min_area_px)]


def attach_anchor(candidates: list[Candidate], anchor_detections: list[Detection],
                  distance_mm: float = 10.0, add_unmatched: bool = True) -> tuple[list[Candidate], int | None]:
    """Give candidates the anchor detector's (C2 / S1) confidence; return (candidates, anchor index or None).

    Each anchor detection sets ``anchor_probability`` -- its mean detector probability, since its
    area-normalised p is 1 for the largest component whatever its strength -- on the nearest
    candidate within ``distance_mm``; one with no candidate near is added as a new candidate (or, with
    ``add_unmatched`` False, dropped: the anchor detector's stray answers off the spine are no vertebrae). The
    anchor index is the candidate with the highest anchor probability (None without anchor
    detections); it is what :func:`spinebrain.spinelabel.graph.label_candidates` takes as anchor.
    """
    result = [replace(c, position=np.asarray(c.position, float), probability=float(c.probability),
                      anchor_probability=float(c.anchor_probability)) for c in candidates]
    for detection in anchor_detections:
        confidence = float(detection.mean_probability)
        distances = [np.linalg.norm(c.position - detection.position) for c in result]
        nearest = int(np.argmin(distances)) if distances else -1
        if nearest >= 0 and distances[nearest] <= distance_mm:
            result[nearest].anchor_probability = max(result[nearest].anchor_probability, confidence)
        elif add_unmatched:
            result.append(detection.to_candidate(anchor_probability=confidence))
    scores = [c.anchor_probability for c in result]
    anchor = int(np.argmax(scores)) if scores and max(scores) > 0 else None
    return result, anchor


def merge_nearby(detections: list[Detection], distance_mm: float) -> list[Detection]:
    """Merge detections closer than ``distance_mm`` in 3D (one vertebra body split into two components).

    Greedy from the largest: each detection absorbs the smaller ones near it (area-weighted position
    and mean probability); probabilities are normalised by the largest area again. Strongest first.
    """
    remaining = sorted(detections, key=lambda d: -d.area_px)
    merged = []
    while remaining:
        seed, rest = remaining[0], remaining[1:]
        near = [d for d in rest if np.linalg.norm(d.position - seed.position) < distance_mm]
        group = [seed] + near
        areas = np.array([d.area_px for d in group], float)
        merged.append(Detection(
            position=np.average([d.position for d in group], axis=0, weights=areas),
            probability=float(areas.sum()),
            mean_probability=float(np.average([d.mean_probability for d in group], weights=areas)),
            area_px=int(areas.sum()),
            slices=tuple(sorted({s for d in group for s in d.slices})),
        ))
        remaining = [d for d in rest if not any(d is n for n in near)]
    largest = max((d.probability for d in merged), default=1.0)
    for detection in merged:
        detection.probability /= largest
    return sorted(merged, key=lambda d: -d.probability)
