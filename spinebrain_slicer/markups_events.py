"""Which control point did the user move, place or delete? Markups node events -> plain callbacks.

MRML only (no Qt): runs on slicer-core, where a test invokes the events the way Slicer's markups
widget does. Slicer tells the point index differently per event and per version, so each handler
tries, in order:

1. the event's call data (an int: PointPositionDefined / PointRemoved, and PointEndInteraction in
   older Slicer versions);
2. the node attribute ``Markups.MovingMarkupIndex``, which the markups widget sets during a drag
   and clears just after it invokes PointEndInteractionEvent (Slicer 5 sends no call data there);
3. the one point whose position differs from the snapshot taken when the interaction started
   (PointStartInteractionEvent) or after the last handled event.

A drag that moved nothing (a click) calls nothing.
"""

from __future__ import annotations

import logging

import slicer
import vtk

MOVING_INDEX_ATTRIBUTE = "Markups.MovingMarkupIndex"
SAME_POSITION_MM = 1e-6


class PointEditObserver:
    """Calls ``on_moved(node, index)``, ``on_added(node, index)``, ``on_removed(node, index)`` after user edits.

    ``index`` is the control point index in the node. Call :meth:`refresh` after changing the node
    from code, and :meth:`remove` to stop observing.
    """

    def __init__(self, node, on_moved=None, on_added=None, on_removed=None):
        self.node = node
        self.on_moved, self.on_added, self.on_removed = on_moved, on_added, on_removed
        self._positions = self.positions()
        markups = slicer.vtkMRMLMarkupsNode
        self._tags = [
            node.AddObserver(markups.PointStartInteractionEvent, self._interaction_started),
            node.AddObserver(markups.PointEndInteractionEvent, self._interaction_ended),
            node.AddObserver(markups.PointPositionDefinedEvent, self._point_defined),
            node.AddObserver(markups.PointRemovedEvent, self._point_removed),
        ]

    def positions(self) -> list[tuple[float, float, float]]:
        node = self.node
        return [tuple(node.GetNthControlPointPosition(i)) for i in range(node.GetNumberOfControlPoints())]

    def refresh(self) -> None:
        """Take the current positions as the reference for the next edit."""
        self._positions = self.positions()

    def remove(self) -> None:
        for tag in self._tags:
            self.node.RemoveObserver(tag)
        self._tags = []

    # ------------------------------------------------------------------ event handlers

    def _interaction_started(self, caller, event):
        self.refresh()

    @vtk.calldata_type(vtk.VTK_INT)
    def _interaction_ended(self, caller, event, call_data=None):
        before = self._positions
        index = self._valid(call_data)
        if index is None:
            index = self._valid(_int_or_none(self.node.GetAttribute(MOVING_INDEX_ATTRIBUTE)))
        if index is None:
            index = self._single_changed(before)
        unchanged = (index is not None and index < len(before)
                     and _distance(before[index], self._position(index)) <= SAME_POSITION_MM)
        self._call(None if unchanged else self.on_moved, index)  # a click without a drag moves nothing

    @vtk.calldata_type(vtk.VTK_INT)
    def _point_defined(self, caller, event, call_data=None):
        index = self._valid(call_data)
        self._call(self.on_added, index if index is not None else self._single_changed(self._positions))

    @vtk.calldata_type(vtk.VTK_INT)
    def _point_removed(self, caller, event, call_data=None):
        self._call(self.on_removed, call_data if isinstance(call_data, int) else -1)  # -1: index not told

    # ------------------------------------------------------------------ helpers

    def _call(self, callback, index) -> None:
        try:
            if callback is not None and index is not None:
                callback(self.node, index)
        except Exception:  # an exception must not escape into VTK's event loop
            logging.exception("Handling a point edit failed")
        finally:
            self.refresh()

    def _valid(self, index) -> int | None:
        return index if isinstance(index, int) and 0 <= index < self.node.GetNumberOfControlPoints() else None

    def _position(self, index: int) -> tuple[float, float, float]:
        return tuple(self.node.GetNthControlPointPosition(index))

    def _single_changed(self, before) -> int | None:
        """The one point that is new or at another place than in ``before``; None if none or several."""
        changed = [i for i, now in enumerate(self.positions())
                   if i >= len(before) or _distance(before[i], now) > SAME_POSITION_MM]
        return changed[0] if len(changed) == 1 else None


def _int_or_none(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _distance(a, b) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5
