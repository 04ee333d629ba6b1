"""Training targets from point annotations only (Forsberg 2017, "Training Data").

Each annotated vertebra centre splits a sagittal slice's pixels into four coarse classes:

* ``CENTRE`` -- a small circle around each point (the detector's positive class);
* ``DISC`` -- the lens where two circles on adjacent vertebrae overlap, each with a radius of
  ``disc_fraction`` (65 %) of the distance between the two points;
* ``EDGE`` -- a larger circle around each point, minus the two classes above;
* ``BACKGROUND`` -- everything else.

Radii default to fractions of the vertebra spacing (the median distance between adjacent points),
so one rule serves cervical (~16 mm apart) and lumbar (~35 mm apart) spines.
:func:`balanced_sample` then keeps every centre pixel and as many pixels of each other class.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

BACKGROUND, CENTRE, DISC, EDGE = 0, 1, 2, 3
CLASS_NAMES = {BACKGROUND: "background", CENTRE: "vertebra centre", DISC: "intervertebral disc", EDGE: "vertebra edge"}

#: Default radii as fractions of the vertebra spacing: the centre circle stays well inside the
#: body (half a body is ~0.37 spacings high), the edge circle reaches just past its corners.
CENTRE_FRACTION = 0.2
EDGE_FRACTION = 0.6
DISC_FRACTION = 0.65


def vertebra_spacing_mm(points_px, pixel_mm: float) -> float:
    """Median distance (mm) between adjacent points, taken in order from superior to inferior (row)."""
    points = _sorted_points(points_px)
    if len(points) < 2:
        raise InputError("At least two annotated vertebrae are needed to estimate their spacing; pass spacing_mm.")
    return float(np.median(np.linalg.norm(np.diff(points, axis=0), axis=1)) * pixel_mm)


def _sorted_points(points_px) -> np.ndarray:
    points = np.asarray(points_px, dtype=float).reshape(-1, 2)
    return points[np.argsort(points[:, 0], kind="stable")]


def pixel_classes(
    shape: tuple[int, int],
    points_px,
    pixel_mm: float,
    centre_radius_mm: float | None = None,
    edge_radius_mm: float | None = None,
    disc_fraction: float = DISC_FRACTION,
    spacing_mm: float | None = None,
    anchor_index: int | None = None,
) -> np.ndarray:
    """Class of every pixel of a ``shape`` (rows, columns) slice, as an int8 array.

    ``points_px`` are the annotated vertebra centres on this slice as (row, col) pixel positions
    (continuous); adjacent vertebrae are consecutive in superior-to-inferior (row) order. Radii
    default to :data:`CENTRE_FRACTION` / :data:`EDGE_FRACTION` of ``spacing_mm`` (default: the
    median adjacent distance). With ``anchor_index`` (an index into ``points_px`` as given) the
    targets are those of the anchor detector (C2 / S1): only the anchor's centre circle is
    ``CENTRE``; the other vertebrae's centre circles become ``EDGE`` (vertebra, but negative).
    """
    points = np.asarray(points_px, dtype=float).reshape(-1, 2)
    classes = np.full(shape, BACKGROUND, dtype=np.int8)
    if len(points) == 0:
        return classes
    if spacing_mm is None:
        spacing_mm = vertebra_spacing_mm(points, pixel_mm)
    centre_r = (CENTRE_FRACTION * spacing_mm if centre_radius_mm is None else centre_radius_mm) / pixel_mm
    edge_r = (EDGE_FRACTION * spacing_mm if edge_radius_mm is None else edge_radius_mm) / pixel_mm
    if not 0 < centre_r < edge_r:
        raise InputError("The centre radius must be positive and smaller than the edge radius; check the radii.")

    rows, cols = np.indices(shape, dtype=float)
    distance = np.stack([np.hypot(rows - r, cols - c) for r, c in points])  # (points, rows, cols)
    edge = (distance <= edge_r).any(axis=0)
    disc = np.zeros(shape, dtype=bool)
    order = np.argsort(points[:, 0], kind="stable")
    for upper, lower in zip(order[:-1], order[1:]):
        radius = disc_fraction * np.linalg.norm(points[upper] - points[lower])
        disc |= (distance[upper] <= radius) & (distance[lower] <= radius)
    centre_of = distance <= centre_r
    classes[edge] = EDGE
    classes[disc] = DISC
    if anchor_index is None:
        classes[centre_of.any(axis=0)] = CENTRE
    else:
        classes[centre_of.any(axis=0)] = EDGE
        classes[centre_of[anchor_index]] = CENTRE
    return classes


def balanced_sample(classes: np.ndarray, rng: np.random.Generator, positive: int = CENTRE) -> np.ndarray:
    """Flat indices into ``classes``: every ``positive`` pixel plus as many from each other class.

    A class with fewer pixels contributes all of them; a slice without positive pixels gives
    nothing (its negatives would unbalance the set). The result is shuffled.
    """
    flat = np.asarray(classes).ravel()
    chosen = [np.flatnonzero(flat == positive)]
    count = len(chosen[0])
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    for value in (BACKGROUND, CENTRE, DISC, EDGE):
        if value == positive:
            continue
        pool = np.flatnonzero(flat == value)
        chosen.append(rng.choice(pool, size=min(count, len(pool)), replace=False))
    indices = np.concatenate(chosen).astype(np.int64)
    rng.shuffle(indices)
    return indices


def points_on_slice(slab, points_ras, slice_index: int, tolerance_mm: float | None = None) -> np.ndarray:
    """(row, col) of the RAS points lying within ``tolerance_mm`` of slice ``slice_index`` of a slab.

    Default tolerance: half the slab's slice step (each point counts on its nearest slice), or
    one pixel for a single-slice slab. Returns an (N, 2) array, N possibly 0.
    """
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    step = float(np.linalg.norm(slab.ijk_to_ras[:3, 2]))
    if tolerance_mm is None:
        tolerance_mm = 0.5 * step if len(slab) > 1 else slab.pixel_mm
    pixels = slab.ras_to_pixel(points)
    near = np.abs(pixels[:, 0] - slice_index) * step <= tolerance_mm + 1e-6
    return pixels[near, 1:]
