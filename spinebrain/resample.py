"""Changing an image's grid without moving anything in the world.

Every function here keeps world positions fixed: resampling keeps origin and direction,
cropping and padding update the origin so a voxel's physical position never changes, and
:func:`resample_like` brings a result back onto the original grid exactly. Images are
interpolated linearly, label maps by nearest neighbour (so they keep their set of values).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .geometry import same_grid

ORIENTATIONS_HELP = "three letters, one from each pair R/L, A/P, S/I (e.g. RAS, LPS, LAS)"
_AXIS_OF = {letter: pair for pair in ("RL", "AP", "SI") for letter in pair}


def _per_axis(value, dimension: int) -> tuple[float, ...]:
    values = (value,) * dimension if np.isscalar(value) else tuple(value)
    if len(values) != dimension:
        raise ValueError(f"expected {dimension} values, got {values}")
    return tuple(float(v) for v in values)


def _interpolator(is_label: bool) -> int:
    return sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear


def _default_value(image: sitk.Image, is_label: bool, default_value: float | None) -> float:
    """Value given to voxels outside the input: 0 for labels, the image minimum (air, background) otherwise."""
    if default_value is not None:
        return float(default_value)
    if is_label:
        return 0.0
    return float(np.min(sitk.GetArrayViewFromImage(image)))


def resample_to_spacing(
    image: sitk.Image,
    spacing: float | Sequence[float],
    is_label: bool = False,
    default_value: float | None = None,
) -> sitk.Image:
    """Resample onto a grid with ``spacing`` (mm; one value or one per axis) over the same extent.

    Origin (the centre of voxel 0) and direction are kept; the size is chosen so the new grid
    spans the same physical length as the old one along each axis. The pixel type is kept.
    """
    new_spacing = np.array(_per_axis(spacing, image.GetDimension()))
    if np.any(new_spacing <= 0):
        raise ValueError(f"spacing must be positive, got {tuple(new_spacing)}")
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    new_size = [max(1, int(round(n))) for n in extent / new_spacing]
    return sitk.Resample(
        image, new_size, sitk.Transform(), _interpolator(is_label), image.GetOrigin(),
        tuple(new_spacing), image.GetDirection(), _default_value(image, is_label, default_value),
        image.GetPixelID(),
    )


def resample_like(
    image: sitk.Image, reference: sitk.Image, is_label: bool = False, default_value: float | None = None
) -> sitk.Image:
    """Resample ``image`` onto the grid (size, spacing, origin, direction) of ``reference``.

    Use it to bring a result computed on a resampled or cropped grid back onto the original scan.
    """
    return sitk.Resample(
        image, reference, sitk.Transform(), _interpolator(is_label),
        _default_value(image, is_label, default_value), image.GetPixelID(),
    )


def orientation_of(image: sitk.Image) -> str:
    """Three-letter code of the directions the i, j, k axes point to (e.g. 'LPS', 'RAS', 'LAS')."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def reorient(image: sitk.Image, orientation: str = "RAS") -> sitk.Image:
    """Permute/flip the voxel axes so i, j, k point towards ``orientation`` (e.g. 'RAS').

    The letters name where each axis points (DICOM / nibabel axis codes, as in ``aff2axcodes``):
    'RAS' means i increases to the right, j anteriorly, k superiorly. World positions are kept;
    no interpolation happens (oblique scans are permuted to the closest orientation).
    """
    code = orientation.upper()
    if len(code) != 3 or sorted(_AXIS_OF.get(letter, "?") for letter in code) != ["AP", "RL", "SI"]:
        raise InputError(f"Orientation {orientation!r} is not valid; use {ORIENTATIONS_HELP}.")
    return sitk.DICOMOrient(image, code)


def bounding_box(mask: sitk.Image, margin_mm: float | Sequence[float] = 0.0) -> tuple[list[int], list[int]]:
    """(index, size) in (i, j, k) of the non-zero voxels of ``mask``, grown by ``margin_mm``, clipped to the image."""
    array = sitk.GetArrayViewFromImage(mask)
    nonzero = np.nonzero(array)
    if len(nonzero[0]) == 0:
        raise InputError("The mask is empty (no non-zero voxel), so there is nothing to crop to; check the mask.")
    low_kji = np.array([axis.min() for axis in nonzero])
    high_kji = np.array([axis.max() for axis in nonzero])
    margin = np.array(_per_axis(margin_mm, mask.GetDimension())) / np.array(mask.GetSpacing())
    margin_voxels = np.ceil(margin - 1e-6).astype(int)[::-1]  # to (k, j, i)
    low = np.maximum(low_kji - margin_voxels, 0)
    high = np.minimum(high_kji + margin_voxels, np.array(array.shape) - 1)
    return [int(v) for v in low[::-1]], [int(v) for v in (high - low + 1)[::-1]]


def crop_to_bounding_box(
    image: sitk.Image, mask: sitk.Image, margin_mm: float | Sequence[float] = 0.0
) -> sitk.Image:
    """Crop ``image`` to the box around ``mask``'s non-zero voxels plus ``margin_mm`` (origin updated)."""
    if not same_grid(image, mask):
        raise InputError(
            "The mask is on a different grid than the image; resample it onto the image "
            "(nearest neighbour) before cropping."
        )
    index, size = bounding_box(mask, margin_mm)
    return sitk.RegionOfInterest(image, size, index)


def _split(total: Sequence[int]) -> tuple[list[int], list[int]]:
    """Split per-axis amounts into (lower, upper) halves, the odd voxel going to the upper side."""
    lower = [int(t) // 2 for t in total]
    return lower, [int(t) - low for t, low in zip(total, lower)]


def pad_to_size(image: sitk.Image, size: Sequence[int], value: float | None = None) -> sitk.Image:
    """Pad evenly on both sides up to at least ``size`` (i, j, k); axes already large enough are untouched.

    ``value`` defaults to the image minimum. The origin moves so the existing voxels keep their
    world positions.
    """
    missing = [max(0, int(target) - current) for target, current in zip(size, image.GetSize())]
    if not any(missing):
        return sitk.Image(image)  # a copy, like the padded result, so callers can edit it freely
    lower, upper = _split(missing)
    return sitk.ConstantPad(image, lower, upper, _default_value(image, False, value))


def crop_or_pad(image: sitk.Image, size: Sequence[int], value: float | None = None) -> sitk.Image:
    """Centre-crop or pad each axis to exactly ``size`` (i, j, k), keeping world positions."""
    excess = [max(0, current - int(target)) for target, current in zip(size, image.GetSize())]
    if any(excess):
        lower, upper = _split(excess)
        image = sitk.Crop(image, lower, upper)
    return pad_to_size(image, size, value)


def extract_slab(image: sitk.Image, axis: int, center: int, thickness: int = 1) -> sitk.Image:
    """The ``thickness`` slices around index ``center`` along ``axis`` (0=i, 1=j, 2=k), as a 3D image.

    Used for mid-sagittal slabs; clipped to the image, origin updated.
    """
    size = list(image.GetSize())
    start = min(max(0, int(center) - thickness // 2), max(0, size[axis] - thickness))
    index = [0, 0, 0]
    index[axis] = start
    size[axis] = min(thickness, size[axis] - start)
    return sitk.RegionOfInterest(image, size, index)
