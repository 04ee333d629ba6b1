"""Output nodes: create a new one with a unique name, or check and reuse the one the user chose."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from spinebrain.errors import InputError


def output_node(scene, class_name: str, name: str, node=None, kind: str = "node"):
    """Return ``node`` after checking its class, or a new ``class_name`` node named ``name``.

    A given node keeps its ID and name (the user chose it); only a new node gets ``name``,
    made unique in the scene so an earlier result is never shadowed.
    """
    if node is not None:
        if not node.IsA(class_name):
            raise InputError(
                f"The output node '{node.GetName()}' is a {node.GetClassName()}, not a {kind}; "
                f"choose a {kind} or let the module create a new one."
            )
        return node
    return scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))


def matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return slicer.util.arrayFromVTKMatrix(matrix)


def array_to_matrix(array) -> vtk.vtkMatrix4x4:
    return slicer.util.vtkMatrixFromArray(np.asarray(array, dtype=float))


def ijk_to_ras_of(volume_node) -> np.ndarray:
    """The volume's IJK-to-RAS matrix as a 4x4 array (its own frame: parent transforms not applied)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_to_array(matrix)
