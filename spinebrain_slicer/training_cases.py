"""The cases a training run would use, found in the scene: (volume, reference) pairs and what is missing.

A reference is what the model learns to produce: a point list (vertebra labelling) or a segmentation
/ label map volume (segmentation tasks). For every scalar volume the reference is, in this order:

1. the one the user set (:func:`set_reference`, kept as a node reference, saved with the scene);
2. a segmentation whose reference geometry is this volume (what the Segment Editor sets);
3. the only unused reference in the same subject-hierarchy folder (study) as the volume;
4. a reference whose name starts with the volume's name (``case1`` -> ``case1 segmentation``, ``case1-label``).

Each case says what stops it from being used (``problem``): no reference, an empty one, a label map
on another grid (resampled on request, else refused), or an unreadable volume. No Qt, no
``slicer.app``: runs in Slicer and on slicer-core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import slicer

from spinebrain.errors import InputError
from spinebrain.geometry import same_grid

from .bridge.volumes import LABELMAP_VOLUME, SCALAR_VOLUME, grid_image

SEGMENTATION = "vtkMRMLSegmentationNode"
POINTS = "vtkMRMLMarkupsFiducialNode"
REFERENCE_ROLE = "SpineBrain.TrainingReference"  # node reference volume -> reference set by the user
EXCLUDED_ATTRIBUTE = "SpineBrain.TrainingExcluded"  # "1" on a volume the user left out


@dataclass
class TrainingCase:
    """One volume of the scene and the reference found for it; usable when ``problem`` is empty."""

    name: str
    volume: object
    reference: object | None
    matched_by: str = ""  # how the reference was found: user, geometry, folder, name
    problem: str = ""
    needs_resampling: bool = False  # a label map on another grid (usable only with resampling)

    @property
    def usable(self) -> bool:
        return not self.problem

    def row(self) -> dict:
        """The case as the module's table shows it."""
        return {"case": self.name, "volume": self.volume.GetName(),
                "reference": self.reference.GetName() if self.reference is not None else "",
                "matched by": self.matched_by, "status": self.problem or "ready"}


def reference_classes(kind: str) -> tuple[str, ...]:
    """Node classes that can be the reference of a task whose references are ``points`` or ``labels``."""
    if kind == "points":
        return (POINTS,)
    if kind == "labels":
        return (SEGMENTATION, LABELMAP_VOLUME)
    raise InputError(f"Unknown reference kind {kind!r}; use 'points' or 'labels'.")


def find_cases(scene, kind: str, resample: bool = False) -> list[TrainingCase]:
    """Every scalar volume of ``scene`` (not label maps, not excluded) with its reference and status."""
    volumes = [node for node in _nodes(scene, SCALAR_VOLUME) if not node.IsA(LABELMAP_VOLUME)
               and node.GetAttribute(EXCLUDED_ATTRIBUTE) != "1"]
    references = [node for cls in reference_classes(kind) for node in _nodes(scene, cls)]
    used: set[str] = set()
    cases = []
    for volume in sorted(volumes, key=lambda v: v.GetName()):
        reference, how = _match(scene, volume, references, used)
        if reference is not None:
            used.add(reference.GetID())
        cases.append(_checked(TrainingCase(_case_name(volume), volume, reference, how), kind, resample))
    _unique_names(cases)
    return cases


def set_reference(volume, reference) -> None:
    """Use ``reference`` for ``volume`` (None: back to automatic matching); saved with the scene."""
    volume.SetAndObserveNodeReferenceID(REFERENCE_ROLE, reference.GetID() if reference is not None else None)


def set_excluded(volume, excluded: bool) -> None:
    """Leave ``volume`` out of the case list (or take it back)."""
    volume.SetAttribute(EXCLUDED_ATTRIBUTE, "1" if excluded else "0")


def usable_cases(cases: list[TrainingCase]) -> list[TrainingCase]:
    """The usable cases; InputError naming the first problem when there is none."""
    usable = [case for case in cases if case.usable]
    if not usable:
        if not cases:
            raise InputError("The scene has no volume to train on; load the scans and their references first.")
        raise InputError(f"No case can be used: {cases[0].name}: {cases[0].problem} Fix the references "
                         "(or set them in the case table) and try again.")
    return usable


# ---------------------------------------------------------------------------------------- matching

def _nodes(scene, class_name: str) -> list:
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]


def _match(scene, volume, references: list, used: set[str]):
    chosen = volume.GetNodeReference(REFERENCE_ROLE)
    if chosen is not None:
        return chosen, "user"
    free = [r for r in references if r.GetID() not in used and not _chosen_elsewhere(scene, r, volume)]
    by_geometry = [r for r in free if r.IsA(SEGMENTATION) and r.GetNodeReference(
        slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()) is volume]
    if len(by_geometry) == 1:
        return by_geometry[0], "geometry"
    same_folder = [r for r in free if _folder(scene, r) is not None and _folder(scene, r) == _folder(scene, volume)]
    if len(same_folder) == 1:
        return same_folder[0], "folder"
    name = volume.GetName().lower()
    by_name = [r for r in free if r.GetName().lower().startswith(name) and r is not volume]
    if by_name:
        return min(by_name, key=lambda r: len(r.GetName())), "name"
    return None, ""


def _chosen_elsewhere(scene, reference, volume) -> bool:
    """Whether another volume's user-set reference is ``reference``."""
    for other in _nodes(scene, SCALAR_VOLUME):
        if other is not volume and other.GetNodeReference(REFERENCE_ROLE) is reference:
            return True
    return False


def _folder(scene, node):
    """The subject-hierarchy parent item of ``node`` (None at the scene's top level)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return None
    item = hierarchy.GetItemByDataNode(node)
    if not item:
        return None
    parent = hierarchy.GetItemParent(item)
    return None if parent in (0, hierarchy.GetSceneItemID()) else parent


# ---------------------------------------------------------------------------------------- checking

def _checked(case: TrainingCase, kind: str, resample: bool) -> TrainingCase:
    try:
        grid = grid_image(case.volume)
    except InputError as error:
        case.problem = str(error)
        return case
    reference = case.reference
    if reference is None:
        what = "point list" if kind == "points" else "segmentation or label map"
        case.problem = f"No reference: no {what} found for this volume; set one in the case table."
    elif reference.IsA(POINTS):
        if reference.GetNumberOfControlPoints() == 0:
            case.problem = f"The point list '{reference.GetName()}' is empty; place the named body centres."
    elif reference.IsA(SEGMENTATION):
        case.problem = _segmentation_problem(reference)
    else:
        case.problem = _labelmap_problem(reference, grid, resample)
        case.needs_resampling = not case.problem and not same_grid(grid_image(reference), grid)
    return case


def _segmentation_problem(node) -> str:
    segmentation = node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        return f"The segmentation '{node.GetName()}' has no segments; paint or load them."
    return ""  # empty segments are found on export, where the voxels are read anyway


def _labelmap_problem(node, grid, resample: bool) -> str:
    try:
        labels = grid_image(node)
    except InputError as error:
        return str(error)
    if not np.any(slicer.util.arrayFromVolume(node)):
        return f"The label map '{node.GetName()}' is empty (all zero); paint or load the labels."
    if not same_grid(labels, grid) and not resample:
        return (f"The label map '{node.GetName()}' is on another grid than its volume; turn on resampling "
                "(nearest neighbour onto the volume) or resample it in Slicer.")
    return ""


def _case_name(volume) -> str:
    """A file-safe case name from the volume's name."""
    text = "".join(c if c.isalnum() or c in "-_." else "_" for c in volume.GetName()).strip("._") or "case"
    return text[:60]


def _unique_names(cases: list[TrainingCase]) -> None:
    seen: dict[str, int] = {}
    for case in cases:
        count = seen.get(case.name, 0)
        seen[case.name] = count + 1
        if count:
            case.name = f"{case.name}_{count + 1}"
