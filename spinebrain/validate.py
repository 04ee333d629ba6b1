"""Checks that turn unusable input into one clear sentence before any work starts.

Each check raises :class:`~spinebrain.errors.InputError` whose message names the problem and
says what to do. Nothing is written before these checks pass.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .geometry import same_grid

MIN_SPACING_MM = 0.01
MAX_SPACING_MM = 50.0


def check_volume(image: sitk.Image, name: str = "image") -> sitk.Image:
    """Raise InputError unless ``image`` is a usable 3D scalar volume; return it unchanged."""
    _check_dimension(image, name)
    _check_spacing(image, name)
    _check_direction(image, name)
    _check_values(image, name)
    return image


def _check_dimension(image: sitk.Image, name: str) -> None:
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"The {name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (a colour or "
            "vector image); load a single-channel grayscale scan instead."
        )
    if image.GetDimension() > 3:
        raise InputError(
            f"The {name} is {image.GetDimension()}D (size {size}); extract a single 3D volume "
            "(one time point or one echo) and run again."
        )
    if image.GetDimension() < 3 or min(size) < 2:
        raise InputError(
            f"The {name} is 2D (size {size}); a 3D volume with several slices is needed -- load the "
            "whole series rather than a single slice."
        )


def _check_spacing(image: sitk.Image, name: str) -> None:
    spacing = np.array(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise InputError(
            f"The {name} has voxel spacing {tuple(float(s) for s in spacing)} mm, outside the plausible "
            f"range {MIN_SPACING_MM}-{MAX_SPACING_MM} mm; fix the spacing in the file header (the file may "
            "have lost its geometry) and run again."
        )


def _check_direction(image: sitk.Image, name: str) -> None:
    direction = np.array(image.GetDirection(), dtype=float).reshape(image.GetDimension(), -1)
    if not np.allclose(direction.T @ direction, np.eye(len(direction)), atol=1e-3):
        raise InputError(
            f"The {name} has a non-orthogonal direction matrix (sheared axes); resample it onto an "
            "orthogonal grid (e.g. with Slicer's Resample Scalar Volume) and run again."
        )


def _check_values(image: sitk.Image, name: str) -> None:
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0:
        raise InputError(f"The {name} has no voxels; load a non-empty scan.")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(
            f"The {name} contains {bad} NaN or infinite voxels; replace them (e.g. with 0) or re-export "
            "the scan, and run again."
        )
    if array.min() == array.max():
        raise InputError(
            f"The {name} is constant (every voxel is {array.flat[0]}); it holds no anatomy -- check that "
            "the right file or series was chosen."
        )


def check_label_map(labels: sitk.Image, image: sitk.Image, name: str = "label map") -> sitk.Image:
    """Raise InputError unless ``labels`` is an integer map on exactly the grid of ``image``."""
    _check_dimension(labels, name)
    if labels.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        values = sitk.GetArrayViewFromImage(labels)
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise InputError(f"The {name} holds non-integer values; a label map must hold whole numbers.")
    if not same_grid(labels, image):
        raise InputError(
            f"The {name} is on a different grid than its image (size {labels.GetSize()} vs "
            f"{image.GetSize()}, or different spacing/origin/direction); resample the {name} onto the "
            "image with nearest-neighbour interpolation and run again."
        )
    return labels
