"""Read and write nodes with Slicer's own storage nodes, without the application's IO manager.

Works the same in Slicer and on the slicer-core wheel (where ``slicer.util.loadVolume`` /
``saveNode`` and, for markups, ``CreateDefaultStorageNode`` are not available): the storage node
class is chosen explicitly, added to the scene and attached to the data node before
``ReadData`` / ``WriteData``. Writes go to a temporary folder first and are moved into place
only when complete, so a failure never leaves a half-written file (tables write two files).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import slicer

from spinebrain.errors import InputError

# checked in order with IsA: the first match decides
_STORAGE_CLASSES = (
    ("vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode"),
    ("vtkMRMLVolumeNode", "vtkMRMLVolumeArchetypeStorageNode"),
    ("vtkMRMLMarkupsNode", "vtkMRMLMarkupsJsonStorageNode"),
    ("vtkMRMLTableNode", "vtkMRMLTableStorageNode"),
)


def storage_node_for(node):
    """The node's storage node of the right class, created and attached if it has none."""
    storage_class = next((s for n, s in _STORAGE_CLASSES if node.IsA(n)), None)
    if storage_class is None:
        raise ValueError(f"no storage node class known for {node.GetClassName()}")
    storage = node.GetStorageNode()
    if storage is None or not storage.IsA(storage_class):
        storage = getattr(slicer, storage_class)()
        node.GetScene().AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    return storage


def load_node(scene, path: str | os.PathLike, class_name: str, name: str | None = None):
    """Read a file into a new node of ``class_name`` (e.g. ``vtkMRMLScalarVolumeNode``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"File not found: {path}. Check the path and try again.")
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name or path.name.split(".")[0]))
    storage = storage_node_for(node)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        scene.RemoveNode(node)
        raise InputError(f"Slicer could not read {path} as a {class_name[len('vtkMRML'):]}; check the file type.")
    if node.IsA("vtkMRMLDisplayableNode") and node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def save_node(node, path: str | os.PathLike) -> Path:
    """Write ``node`` to ``path`` (format from the extension) with its storage node; atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = storage_node_for(node)
    folder = Path(tempfile.mkdtemp(prefix=".spinebrain-", dir=path.parent))
    try:
        storage.SetFileName(str(folder / path.name))
        if not storage.WriteData(node):
            raise InputError(f"Slicer could not write {node.GetName()} to {path}; check the file extension and folder.")
        for written in folder.iterdir():  # e.g. table.tsv and table.schema.tsv
            os.replace(written, path.parent / written.name)
    finally:
        storage.SetFileName(str(path))
        shutil.rmtree(folder, ignore_errors=True)
    return path
