"""Sagittal slices for the 2D detectors, on a patient-aligned grid at the model's pixel size.

The paper (Forsberg 2017) runs its detectors on the mid-sagittal slice only. A scoliotic or rotated
spine leaves that plane, so :func:`extract_sagittal_slab` also takes slices either side of it at a
fixed step; the detections of all slices are merged in 3D later (:mod:`.candidates`).

Slab grid (whatever the scan's orientation or spacing):

* slice index ``s`` -- increases to the patient's **right** (``r_positions[s]`` is its R in mm);
* row -- increases **inferiorly** (row 0 is the most superior);
* column -- increases **posteriorly** (column 0 is the most anterior),

so ``arrays[s]`` shows the spine as a radiologist's sagittal view (patient facing left). The grid is
a real 3D image geometry, so :meth:`SagittalSlab.pixel_to_ras` / :meth:`SagittalSlab.ras_to_pixel`
are exact (continuous indices, :mod:`spinebrain.geometry` conventions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import LPS_TO_RAS, index_to_ras, ras_to_index, set_geometry_from_ijk_to_ras

#: Detector pixel size per spine region (paper: 1x1 mm cervical, 2x2 mm lumbar).
MODEL_PIXEL_MM = {"cervical": 1.0, "lumbar": 2.0}

# Directions of the slab's (column, row, slice) axes in RAS: posterior, inferior, right.
_SLAB_AXES_RAS = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]).T


@dataclass
class SagittalSlab:
    """Sagittal slices resampled onto one patient-aligned grid (see the module docstring)."""

    arrays: np.ndarray  # (slices, rows, columns) float32
    r_positions: np.ndarray  # (slices,) R coordinate of each slice, mm
    pixel_mm: float
    ijk_to_ras: np.ndarray  # 4x4: continuous (column, row, slice, 1) -> RAS
    mid_index: int  # index of the mid-sagittal slice

    def __len__(self) -> int:
        return len(self.arrays)

    def image(self) -> sitk.Image:
        """The slab as a 3D SimpleITK image (to save or resample; geometry included)."""
        return set_geometry_from_ijk_to_ras(sitk.GetImageFromArray(self.arrays), self.ijk_to_ras)

    def pixel_to_ras(self, slice_index, row, col) -> np.ndarray:
        """RAS (mm) of continuous pixel positions: scalars give (3,), arrays of N give (N, 3)."""
        ijk = np.stack(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (col, row, slice_index))), -1)
        return index_to_ras(self._geometry(), ijk)

    def ras_to_pixel(self, ras) -> np.ndarray:
        """Continuous (slice, row, col) of RAS points: (3,) gives (3,), (N, 3) gives (N, 3)."""
        return ras_to_index(self._geometry(), ras)[..., ::-1]

    def crop(self, slices: slice = slice(None), rows: slice = slice(None), cols: slice = slice(None)) -> SagittalSlab:
        """A sub-block of the slab (plain, positive-step slices), with the grid moved so pixel_to_ras stays exact."""
        windows = [range(n)[w] for n, w in zip(self.arrays.shape, (slices, rows, cols))]
        if any(len(w) == 0 or w.step != 1 for w in windows):
            raise InputError("A slab crop needs a non-empty, contiguous block of slices, rows and columns.")
        start = np.array([windows[2].start, windows[1].start, windows[0].start], float)  # (col, row, slice)
        matrix = self.ijk_to_ras.copy()
        matrix[:3, 3] = self.ijk_to_ras[:3, :3] @ start + self.ijk_to_ras[:3, 3]
        mid = min(max(self.mid_index - windows[0].start, 0), len(windows[0]) - 1)
        return SagittalSlab(self.arrays[slices, rows, cols], self.r_positions[slices], self.pixel_mm, matrix, int(mid))

    def _geometry(self) -> sitk.Image:
        """A one-voxel image carrying only the slab's geometry, for the :mod:`spinebrain.geometry` helpers."""
        return set_geometry_from_ijk_to_ras(sitk.Image(1, 1, 1, sitk.sitkUInt8), self.ijk_to_ras)


def _corner_ras(image: sitk.Image) -> np.ndarray:
    """RAS of the centres of the 8 corner voxels."""
    size = np.array(image.GetSize()) - 1
    corners = np.array([[i, j, k] for i in (0, size[0]) for j in (0, size[1]) for k in (0, size[2])], float)
    return index_to_ras(image, corners)


#: DiscreteGaussian's largest kernel is 32 voxels wide (``_antialias``): a crop this much wider than the
#: region read keeps every smoothed voxel there as it was.
_KERNEL_PAD = 17


def _blur_variance(image: sitk.Image, pixel_mm: float) -> np.ndarray:
    """Anti-aliasing variance per axis (mm²): sigma about half the width the pixel adds to the voxel."""
    spacing = np.array(image.GetSpacing())
    return np.maximum(pixel_mm**2 - spacing**2, 0.0) / 4.0


def _blur_pad(image: sitk.Image, pixel_mm: float) -> np.ndarray:
    """Voxels per axis the blur reaches: 4 sigma (the kernel's tail past it is far under its 0.01 error), at
    most :data:`_KERNEL_PAD`."""
    sigma = np.sqrt(_blur_variance(image, pixel_mm)) / np.array(image.GetSpacing())
    return np.minimum(np.ceil(4.0 * sigma).astype(int) + 2, _KERNEL_PAD)


def _around_band(image: sitk.Image, low: np.ndarray, high: np.ndarray, r_low: float, r_high: float,
                 pad=_KERNEL_PAD, bins=1) -> sitk.Image:
    """The part of ``image`` the slab between R ``r_low`` and ``r_high`` (mm) reads, padded for the blur.

    ``low``, ``high``: the volume's RAS bounds (its corner voxels). Smoothing the whole volume before
    resampling cost about 5 s of 10 on a 512 x 512 x 300 CT; the band is a fifth of its width. The crop
    is the index box of the band's corners (any orientation), its bounds on multiples of ``bins`` per axis
    (:func:`_antialias` averages voxels in those bins: the crop's bins are then the whole volume's).
    """
    band = np.array([[r, a, s] for r in (r_low, r_high) for a in (low[1], high[1]) for s in (low[2], high[2])])
    index = ras_to_index(image, band)
    size = np.array(image.GetSize())
    start = np.clip(np.floor(index.min(axis=0)).astype(int) - pad, 0, size - 1)
    stop = np.clip(np.ceil(index.max(axis=0)).astype(int) + pad + 1, start + 1, size)
    start, stop = start - start % bins, np.minimum(stop + (-stop) % bins, size)
    if np.all(start == 0) and np.all(stop == size):
        return image
    return sitk.RegionOfInterest(image, [int(v) for v in stop - start], [int(v) for v in start])


#: A bin of voxels may span at most this share of the target pixel. Linear interpolation from the binned grid adds
#: smoothing that grows with its spacing: at 0.8 the slab of a 0.8 mm CT stays close to the Gaussian's alone,
#: while binning 1 mm MR to 2 mm moved detections by up to 5 mm (session 14, development scans).
BIN_SHARE = 0.8


def _bins(image: sitk.Image, pixel_mm: float) -> np.ndarray:
    """Whole voxels per axis averaged before the blur: as many as fit in :data:`BIN_SHARE` of a pixel (at least 1)."""
    return np.maximum(np.floor(BIN_SHARE * pixel_mm / np.array(image.GetSpacing()) + 1e-6), 1).astype(int)


def _antialias(image: sitk.Image, pixel_mm: float) -> sitk.Image:
    """Blur along the input axes finer than the target pixel, so downsampling does not alias.

    Axes 2.5 or more times finer than the pixel are first averaged in bins of whole voxels (SimpleITK's
    BinShrink: a box filter, and a quarter of the voxels left for the Gaussian on a 0.8 mm CT; the Gaussian
    was 0.5-0.9 s of a 1.7 s run on a 512 x 512 x 300 CT). The Gaussian then adds the variance the box lacks,
    so the smoothing per axis stays :func:`_blur_variance`.
    """
    variance = _blur_variance(image, pixel_mm)
    if not np.any(variance > 0):
        return image
    bins = _bins(image, pixel_mm)
    if np.any(bins > 1):
        spacing = np.array(image.GetSpacing())
        variance = np.maximum(variance - spacing**2 * (bins**2 - 1) / 12.0, 0.0)  # a box of n voxels: (n² - 1) / 12
        upper = (-np.array(image.GetSize())) % bins  # the volume's last bin filled by its edge voxels
        if np.any(upper):
            image = sitk.ZeroFluxNeumannPad(image, [0, 0, 0], [int(v) for v in upper])
        image = sitk.BinShrink(image, [int(v) for v in bins])
    if not np.any(variance > 0):
        return image
    return sitk.DiscreteGaussian(image, [float(v) for v in variance], 32, 0.01, True)


def _check(image, pixel_mm, slices_each_side, step_mm) -> None:
    if not isinstance(image, sitk.Image) or image.GetDimension() != 3:
        raise InputError("SpineLabel needs a 3D scalar volume; load the scan as a 3D image.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("The volume has several components per voxel (colour or vector); use a scalar scan.")
    if pixel_mm <= 0 or step_mm <= 0 or slices_each_side < 0:
        raise InputError("Pixel size and slice step must be positive and the slice count non-negative.")


def extract_sagittal_slab(
    image: sitk.Image,
    pixel_mm: float,
    slices_each_side: int = 2,
    step_mm: float = 4.0,
    center_r: float | None = None,
    antialias: bool = True,
) -> SagittalSlab:
    """Resample the mid-sagittal slice and ``slices_each_side`` slices either side, ``step_mm`` apart.

    The mid-sagittal plane is at the middle of the volume's left-right extent unless ``center_r``
    (mm, RAS) is given. Slices that would leave the volume are dropped (the mid slice always stays).
    In-plane, the grid covers the volume's whole anterior-posterior and superior-inferior extent
    at ``pixel_mm`` (see :data:`MODEL_PIXEL_MM`). Pixels outside the volume get its minimum value.
    """
    _check(image, pixel_mm, slices_each_side, step_mm)
    corners = _corner_ras(image)
    low, high = corners.min(axis=0), corners.max(axis=0)
    center_r = 0.5 * (low[0] + high[0]) if center_r is None else float(center_r)
    offsets = step_mm * np.arange(-slices_each_side, slices_each_side + 1)
    inside = (center_r + offsets >= low[0] - 1e-3) & (center_r + offsets <= high[0] + 1e-3)
    inside[slices_each_side] = True
    offsets = offsets[inside]
    r_positions = center_r + offsets

    columns = int(np.floor((high[1] - low[1]) / pixel_mm + 1e-6)) + 1
    rows = int(np.floor((high[2] - low[2]) / pixel_mm + 1e-6)) + 1
    origin_ras = np.array([r_positions[0], high[1], high[2]])  # first slice, most anterior, most superior
    matrix = np.eye(4)
    matrix[:3, :3] = _SLAB_AXES_RAS @ np.diag([pixel_mm, pixel_mm, step_mm])
    matrix[:3, 3] = origin_ras

    source = image
    if antialias:
        band = _around_band(image, low, high, r_positions[0], r_positions[-1], _blur_pad(image, pixel_mm),
                            _bins(image, pixel_mm))
        source = _antialias(band, pixel_mm)
    background = float(np.min(sitk.GetArrayViewFromImage(image)))
    slab = sitk.Resample(
        source, [columns, rows, len(offsets)], sitk.Transform(), sitk.sitkLinear,
        tuple(LPS_TO_RAS @ origin_ras), (pixel_mm, pixel_mm, step_mm),
        tuple((LPS_TO_RAS @ _SLAB_AXES_RAS).ravel()), background, sitk.sitkFloat32,
    )
    return SagittalSlab(
        arrays=sitk.GetArrayFromImage(slab), r_positions=r_positions, pixel_mm=float(pixel_mm),
        ijk_to_ras=matrix, mid_index=int(np.flatnonzero(np.isclose(offsets, 0.0))[0]),
    )
