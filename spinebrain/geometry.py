"""The one place where axis order and the RAS/LPS convention are decided.

Axis order
    numpy arrays hold voxels as ``array[k, j, i]`` (slice, row, column) -- the order of both
    ``SimpleITK.GetArrayFromImage`` and Slicer's ``slicer.util.arrayFromVolume``. Index triples
    written ``(i, j, k)`` follow ITK/Slicer IJK order (column first).

World coordinates
    SimpleITK images live in LPS (DICOM, ITK); Slicer's scene and every point this project
    writes (markups, records, tables) is RAS. Converting between them flips the sign of the
    first two axes. Everything below derives from the image's spacing, origin and direction, so
    oblique directions and anisotropic spacing are handled exactly.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

#: Multiply an LPS point by this (or a RAS point -- it is its own inverse) to change convention.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(points) -> np.ndarray:
    """Convert one point (3,) or many points (N, 3) from LPS to RAS."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


ras_to_lps = lps_to_ras  # the flip is its own inverse


def ijk_to_ras_matrix(image: sitk.Image) -> np.ndarray:
    """4x4 matrix taking a continuous (i, j, k, 1) index to RAS millimetres."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(image.GetSpacing(), dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.array(image.GetOrigin(), dtype=float)
    return matrix


def geometry_from_ijk_to_ras(matrix) -> tuple[tuple, tuple, tuple]:
    """Split an IJK-to-RAS matrix into SimpleITK (spacing, origin, direction) in LPS."""
    matrix = np.asarray(matrix, dtype=float)
    columns = LPS_TO_RAS @ matrix[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0):
        raise ValueError("IJK-to-RAS matrix has a zero-length axis")
    direction = columns / spacing
    origin = LPS_TO_RAS @ matrix[:3, 3]
    return tuple(spacing), tuple(origin), tuple(direction.ravel())


def set_geometry_from_ijk_to_ras(image: sitk.Image, matrix) -> sitk.Image:
    """Give ``image`` the geometry described by an IJK-to-RAS matrix (in place; returns it)."""
    spacing, origin, direction = geometry_from_ijk_to_ras(matrix)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def index_to_ras(image: sitk.Image, ijk) -> np.ndarray:
    """Continuous (i, j, k) index -- one (3,) or many (N, 3) -- to RAS millimetres."""
    ijk = np.asarray(ijk, dtype=float)
    single = ijk.ndim == 1
    ijk = np.atleast_2d(ijk)
    homogeneous = np.c_[ijk, np.ones(len(ijk))]
    ras = (ijk_to_ras_matrix(image) @ homogeneous.T).T[:, :3]
    return ras[0] if single else ras


def extent_ras(image: sitk.Image) -> np.ndarray:
    """Extent (mm) of the voxel centres along R, A and S (the corners' spread, so oblique grids are exact)."""
    size = np.array(image.GetSize()) - 1
    corners = np.array([[i, j, k] for i in (0, size[0]) for j in (0, size[1]) for k in (0, size[2])], float)
    ras = index_to_ras(image, corners)
    return ras.max(axis=0) - ras.min(axis=0)


def ras_to_index(image: sitk.Image, ras) -> np.ndarray:
    """RAS millimetres -- one (3,) or many (N, 3) -- to continuous (i, j, k) index."""
    ras = np.asarray(ras, dtype=float)
    single = ras.ndim == 1
    ras = np.atleast_2d(ras)
    homogeneous = np.c_[ras, np.ones(len(ras))]
    ijk = (np.linalg.inv(ijk_to_ras_matrix(image)) @ homogeneous.T).T[:, :3]
    return ijk[0] if single else ijk


def array_from_image(image: sitk.Image) -> np.ndarray:
    """Voxel array in ``[k, j, i]`` order (a copy)."""
    return sitk.GetArrayFromImage(image)


def image_from_array(array: np.ndarray, reference: sitk.Image | None = None) -> sitk.Image:
    """Image from a ``[k, j, i]`` array, taking spacing/origin/direction from ``reference``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    if reference is not None:
        if tuple(reversed(array.shape[:3])) != reference.GetSize()[:3]:
            raise ValueError(
                f"array shape {array.shape} (k, j, i) does not match the reference image size "
                f"{reference.GetSize()} (i, j, k)"
            )
        image.CopyInformation(reference)
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tolerance_mm: float = 1e-3) -> bool:
    """True when both images have the same size and voxel-to-world mapping (within tolerance)."""
    if a.GetSize() != b.GetSize():
        return False
    corners = np.array([[0, 0, 0], np.array(a.GetSize()) - 1], dtype=float)
    return bool(np.allclose(index_to_ras(a, corners), index_to_ras(b, corners), atol=tolerance_mm)
                and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4))
