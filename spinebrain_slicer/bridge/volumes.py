"""Scalar volume node <-> SimpleITK image, with exact geometry and unchanged voxel type.

Geometry goes through :mod:`spinebrain.geometry` only: the node's IJK-to-RAS matrix becomes the
image's LPS spacing/origin/direction and back, so oblique and anisotropic grids survive. Both
sides use ``array[k, j, i]``. Coordinates are the node's own frame: a parent transform is not
applied (results go back onto the same node frame, so they line up with the input).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer

from spinebrain.errors import InputError
from spinebrain.geometry import ijk_to_ras_matrix, set_geometry_from_ijk_to_ras

from .nodes import array_to_matrix, ijk_to_ras_of, output_node

SCALAR_VOLUME = "vtkMRMLScalarVolumeNode"  # label map volume nodes are scalar volume nodes too
LABELMAP_VOLUME = "vtkMRMLLabelMapVolumeNode"


def image_from_volume_node(node) -> sitk.Image:
    """Copy of a scalar volume node's voxels (same dtype) with its geometry, as a SimpleITK image."""
    check_volume_node(node)
    image = sitk.GetImageFromArray(slicer.util.arrayFromVolume(node))  # copies out of VTK memory
    return set_geometry_from_ijk_to_ras(image, ijk_to_ras_of(node))


def grid_image(node) -> sitk.Image:
    """An empty (uint8) image on the volume node's grid: for geometry checks without copying voxels."""
    check_volume_node(node)
    image = sitk.Image([int(n) for n in node.GetImageData().GetDimensions()], sitk.sitkUInt8)
    return set_geometry_from_ijk_to_ras(image, ijk_to_ras_of(node))


def check_volume_node(node) -> None:
    """Raise InputError unless ``node`` is a scalar volume node holding a single-component 3D image."""
    if node is None:
        raise InputError("No input volume is selected; select a scalar volume and run again.")
    if not node.IsA(SCALAR_VOLUME):
        raise InputError(
            f"The input '{node.GetName()}' is a {node.GetClassName()}, not a scalar volume; select a "
            "grayscale (scalar) volume."
        )
    image_data = node.GetImageData()
    if image_data is None or image_data.GetNumberOfPoints() == 0:
        raise InputError(f"The volume '{node.GetName()}' has no voxels loaded; load the image data and run again.")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(
            f"The volume '{node.GetName()}' has {image_data.GetNumberOfScalarComponents()} components per "
            "voxel; select a single-channel grayscale volume."
        )


def volume_node_from_image(scene, image: sitk.Image, name: str, node=None, class_name: str = SCALAR_VOLUME):
    """Put ``image`` into ``node`` (replacing its voxels and geometry, keeping its ID) or a new node.

    ``class_name`` picks the class of a new node (e.g. ``vtkMRMLLabelMapVolumeNode``).
    64-bit integer voxels are stored as int32 (Slicer does not display 64-bit volumes).
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"Only single-component 3D images can become volume nodes (got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} components)."
        )
    node = output_node(scene, class_name, name, node, kind="volume")
    array = _displayable(sitk.GetArrayViewFromImage(image))
    was_modifying = node.StartModify()
    try:
        slicer.util.updateVolumeFromArray(node, array)
        node.SetIJKToRASMatrix(array_to_matrix(ijk_to_ras_matrix(image)))
    finally:
        node.EndModify(was_modifying)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def _displayable(array: np.ndarray) -> np.ndarray:
    if array.dtype not in (np.int64, np.uint64):
        return array
    if array.size and (array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max):
        raise InputError("The image holds 64-bit integer values beyond the int32 range, which Slicer cannot show.")
    return array.astype(np.int32)
