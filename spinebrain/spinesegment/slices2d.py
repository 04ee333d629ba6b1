"""Volumes <-> stacks of 2D slices for the slice-wise MR vertebral-body mode (seed 001).

A volume is brought to the model's working frame — DICOM orientation ``IPR`` (SimpleITK's array
order is then [right-left, anterior-posterior, superior-inferior]) at the card's spacing — then
normalised (percentile clip, z-score, min-max to [0, 1]; N4 first when asked) and cut into
slices along the plane's axis. Each network input is ``context`` slices either side of the slice
it predicts, as channels. Masks come back the same way, so prediction and image share one grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .. import preprocess
from ..errors import InputError

#: Working orientation: the real MR training scans' own (sagittal slices are array axis 0).
WORKING_ORIENTATION = "IPR"
#: Array axis (of the working-frame array) that each plane's slices are taken along.
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


@dataclass
class SliceVolume:
    """A normalised volume in the working frame, ready to cut into slices along ``plane``."""

    image: sitk.Image  # working frame (orientation + spacing), float32 in [0, 1]
    array: np.ndarray  # slices first: [slice, rows, columns], float32
    plane: str

    @property
    def slice_count(self) -> int:
        return self.array.shape[0]


def to_working_frame(image: sitk.Image, spacing_mm: float, interpolator=sitk.sitkLinear) -> sitk.Image:
    """Reorient to :data:`WORKING_ORIENTATION` and resample to isotropic ``spacing_mm`` when needed."""
    oriented = sitk.DICOMOrient(image, WORKING_ORIENTATION)
    spacing = np.array(oriented.GetSpacing())
    if np.allclose(spacing, spacing_mm, atol=1e-3):
        return oriented
    size = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(oriented.GetSize(), spacing, strict=True)]
    return sitk.Resample(oriented, size, sitk.Transform(), interpolator, oriented.GetOrigin(),
                         (spacing_mm,) * 3, oriented.GetDirection(), 0.0, oriented.GetPixelID())


def normalise(image: sitk.Image, n4: bool = False) -> sitk.Image:
    """Thesis preprocessing: optional N4, then z-score and min-max to [0, 1].

    A 0.5/99.5 percentile clip comes first: without it one hot voxel squeezes the whole min-max range.
    """
    image = sitk.Cast(image, sitk.sitkFloat32)
    if n4:
        image = preprocess.n4_bias_correction(image)
    return preprocess.minmax(preprocess.zscore(preprocess.clip_percentiles(image, 0.5, 99.5)))


def prepare_volume(image: sitk.Image, plane: str = "sagittal", spacing_mm: float = 1.0,
                   n4: bool = False) -> SliceVolume:
    if plane not in PLANE_AXIS:
        raise InputError(f"Unknown plane {plane!r}; choose sagittal, coronal or axial.")
    working = normalise(to_working_frame(image, spacing_mm), n4=n4)
    array = np.moveaxis(sitk.GetArrayFromImage(working), PLANE_AXIS[plane], 0)
    return SliceVolume(working, np.ascontiguousarray(array, dtype=np.float32), plane)


def mask_slices(mask: sitk.Image, volume: SliceVolume) -> np.ndarray:
    """A reference mask on the volume's working grid, slices first (nearest neighbour)."""
    working = sitk.Resample(sitk.DICOMOrient(mask, WORKING_ORIENTATION), volume.image, sitk.Transform(),
                            sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return np.moveaxis(sitk.GetArrayFromImage(working), PLANE_AXIS[volume.plane], 0)


def stack(array: np.ndarray, index: int, context: int) -> np.ndarray:
    """Slices ``index - context … index + context`` as channels; edges repeat the outermost slice."""
    picks = np.clip(np.arange(index - context, index + context + 1), 0, array.shape[0] - 1)
    return array[picks]


def volume_from_slices(slices: np.ndarray, volume: SliceVolume) -> sitk.Image:
    """Per-slice predictions [slice, rows, columns] back to an image on the working grid."""
    array = np.moveaxis(slices, 0, PLANE_AXIS[volume.plane])
    result = sitk.GetImageFromArray(np.ascontiguousarray(array))
    result.CopyInformation(volume.image)
    return result
