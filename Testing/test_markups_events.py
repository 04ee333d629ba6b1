"""The markups edit observer (spinebrain_slicer.markups_events) on real MRML, events invoked like Slicer's widget."""

from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")
import vtk  # noqa: E402

from spinebrain_slicer.markups_events import MOVING_INDEX_ATTRIBUTE, PointEditObserver  # noqa: E402

MARKUPS = slicer.vtkMRMLMarkupsNode


@pytest.fixture
def node(scene):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    for k in range(4):
        node.AddControlPoint(vtk.vtkVector3d(0, 0, -30.0 * k), f"P{k}")
    return node


def watch(node):
    calls = []
    observer = PointEditObserver(node, on_moved=lambda n, i: calls.append(("moved", i)),
                                 on_added=lambda n, i: calls.append(("added", i)),
                                 on_removed=lambda n, i: calls.append(("removed", i)))
    return observer, calls


def end_drag(node, index=None, call_data=None):
    if index is not None:
        node.SetAttribute(MOVING_INDEX_ATTRIBUTE, str(index))
    if call_data is None:
        node.InvokeCustomModifiedEvent(MARKUPS.PointEndInteractionEvent)
    else:
        node.InvokeEvent(MARKUPS.PointEndInteractionEvent, call_data)
    node.SetAttribute(MOVING_INDEX_ATTRIBUTE, "")


def test_moved_point_found_by_attribute_call_data_or_positions(node):
    observer, calls = watch(node)
    node.SetNthControlPointPosition(1, 5, 0, -30)
    node.SetNthControlPointPosition(2, 5, 0, -60)  # two points changed since the snapshot: ambiguous
    end_drag(node)
    assert calls == []
    node.SetNthControlPointPosition(2, 9, 0, -60)
    end_drag(node, index=2)  # Slicer 5 names it in an attribute
    node.SetNthControlPointPosition(3, 9, 0, -90)
    end_drag(node, call_data=3)  # older Slicer: call data
    node.InvokeCustomModifiedEvent(MARKUPS.PointStartInteractionEvent)
    node.SetNthControlPointPosition(0, 1, 1, 1)
    end_drag(node)  # only the positions tell
    assert calls == [("moved", 2), ("moved", 3), ("moved", 0)]
    observer.remove()


def test_click_without_move_and_stopped_observer_call_nothing(node):
    observer, calls = watch(node)
    node.InvokeCustomModifiedEvent(MARKUPS.PointStartInteractionEvent)
    end_drag(node, index=1)
    assert calls == []
    observer.remove()
    node.SetNthControlPointPosition(1, 5, 0, -30)
    end_drag(node, index=1)
    node.RemoveNthControlPoint(0)
    assert calls == []


def test_added_and_removed_points(node):
    observer, calls = watch(node)
    node.AddControlPoint(vtk.vtkVector3d(0, 0, -120), "new")
    node.RemoveNthControlPoint(1)
    assert calls == [("added", 4), ("removed", 1)]
    observer.remove()
