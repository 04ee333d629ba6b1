"""Labelled points (:class:`spinebrain.points.LabelledPoint`) <-> markups point list node.

How a point's fields are kept so they survive ``.mrk.json`` files and scenes:

- label -> control point label; ras -> control point position (the node's own frame, RAS);
- user_set -> the control point's *locked* flag (a point the user set cannot be dragged by
  accident, and no run moves it);
- confidence and description -> the control point description, ``"confidence=0.93; text"``
  (format defined once in :mod:`spinebrain.points`, shared with the CLI's ``.mrk.json`` writer).

The node attribute ``SpineBrain.Content = vertebra-labels`` marks nodes written here; it is kept in
scenes but not in ``.mrk.json``, so :func:`check_output_markups_node` also accepts a node whose
labels are all vertebra names and that holds at least one point with a confidence (a detection).
"""

from __future__ import annotations

import slicer
import vtk

from spinebrain.anatomy import VERTEBRA_LABELS
from spinebrain.errors import InputError
from spinebrain.points import LabelledPoint, parse_point_description, point_description

from .nodes import output_node

POINT_LIST = "vtkMRMLMarkupsFiducialNode"
CONTENT_ATTRIBUTE = "SpineBrain.Content"
CONTENT_VALUE = "vertebra-labels"


def check_output_markups_node(node) -> None:
    """Raise InputError when ``node`` cannot receive vertebra labels without losing someone's points.

    Accepted: None (a new node will be made), an empty point list, or a point list written by this
    project (attribute, or vertebra labels with detection confidences). Anything else -- another
    markups type, other labels, a manual vertebra annotation -- is somebody else's data.
    """
    if node is None:
        return
    if not node.IsA(POINT_LIST):
        raise InputError(
            f"The output '{node.GetName()}' is a {node.GetClassName()}, not a point list; choose a point list "
            "(markups fiducial) node or create a new one."
        )
    if node.GetAttribute(CONTENT_ATTRIBUTE) == CONTENT_VALUE:
        return
    count = node.GetNumberOfControlPoints()
    labels = [node.GetNthControlPointLabel(i) for i in range(count)]
    foreign = [label for label in labels if label not in VERTEBRA_LABELS]
    if foreign:
        raise InputError(
            f"The point list '{node.GetName()}' holds {len(foreign)} point(s) that are not vertebra labels "
            f"(e.g. '{foreign[0]}'); choose an empty point list or create a new one so they are not overwritten."
        )
    scored = any(parse_point_description(node.GetNthControlPointDescription(i))[0] is not None for i in range(count))
    if count and not scored:
        raise InputError(
            f"The point list '{node.GetName()}' holds vertebra points that were not made by SpineLabel (a manual "
            "annotation?); choose an empty point list or create a new one so they are not overwritten."
        )


def markups_node_from_points(scene, points: list[LabelledPoint], name: str, node=None):
    """Replace the control points of ``node`` (or a new point list) with ``points``; returns the node."""
    check_output_markups_node(node)
    node = output_node(scene, POINT_LIST, name, node, kind="point list")
    was_modifying = node.StartModify()
    try:
        node.RemoveAllControlPoints()
        for point in points:
            index = node.AddControlPoint(vtk.vtkVector3d(*(float(c) for c in point.ras)), point.label)
            node.SetNthControlPointDescription(index, point_description(point))
            node.SetNthControlPointLocked(index, bool(point.user_set))
        node.SetAttribute(CONTENT_ATTRIBUTE, CONTENT_VALUE)
    finally:
        node.EndModify(was_modifying)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def points_from_markups_node(node) -> list[LabelledPoint]:
    """The node's placed control points as labelled points (points still being placed are skipped)."""
    if node is None or not node.IsA("vtkMRMLMarkupsNode"):
        raise InputError("Select a point list (markups) node to read the points from.")
    points = []
    for i in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(i) != slicer.vtkMRMLMarkupsNode.PositionDefined:
            continue
        confidence, description = parse_point_description(node.GetNthControlPointDescription(i))
        points.append(
            LabelledPoint(
                label=node.GetNthControlPointLabel(i),
                ras=tuple(float(c) for c in node.GetNthControlPointPosition(i)),
                confidence=confidence,
                user_set=bool(node.GetNthControlPointLocked(i)),
                description=description,
            )
        )
    return points
