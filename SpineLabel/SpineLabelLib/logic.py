"""SpineLabel's MRML-side logic: label a volume, then let the user correct the labels in seconds.

No Qt: everything here runs on the slicer-core wheel (the tests) as in Slicer. The work is 2D and
quick, so it runs in-process. The pure parts live in the core (``spinebrain.spinelabel``); this
file keeps, per point list node:

- the detections (candidates) of the last run, so a relabel re-solves the graph without the CNNs
  and can pick up a detection the first solution left out;
- the shape model and anchor level that labelled it;
- an undo history of point lists.

Rules: a point the user set (locked control point) is a hard constraint and never renamed or
moved silently; an operation that fails raises InputError and leaves the node as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from spinebrain.anatomy import VERTEBRA_LABELS
from spinebrain.errors import InputError, ModelError
from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.graph import Candidate, SpineShapeModel
from spinebrain.spinelabel.operations import relabel_with_fixed, shift_labels
from spinebrain_slicer import bridge
from spinebrain_slicer.bridge.markups import CONTENT_ATTRIBUTE, CONTENT_VALUE, POINT_LIST
from spinebrain_slicer.markups_events import PointEditObserver
from spinebrain_slicer.progress import as_progress

REGION_CHOICES = ("auto", "cervical", "lumbar", "whole")
HISTORY_LIMIT = 50
SAME_DETECTION_MM = 5.0  # a point this close to a detection is that detection (detections merge within 6 mm)
_SAME_POINT_MM = 1e-3  # a point read back from the node is "still there" within this distance


@dataclass
class NodeState:
    """What the logic remembers about one point list node."""

    candidates: list[Candidate] | None = None  # detections of the last run; None: re-solve from the points
    shape_model: SpineShapeModel | None = None
    anchor_level: str | None = None  # "C2" / "S1": the level of the anchor detector
    written: list[LabelledPoint] = field(default_factory=list)  # the points as last written here
    history: list[list[LabelledPoint]] = field(default_factory=list)  # undo stack, newest last


class SpineLabelLogic:
    """Run SpineLabel and edit its point lists. ``shape_model`` is the default for nodes no run here made."""

    def __init__(self, scene, shape_model: SpineShapeModel | None = None):
        self.scene = scene
        self.shape_model = shape_model
        self.last_result = None  # SpineLabelResult of the last run: warnings, certainty, timing
        self.last_error: str | None = None  # message of the last automatic relabel that failed
        self._states: dict[str, NodeState] = {}
        self._observers: dict[str, PointEditObserver] = {}
        self._writing = False

    # ------------------------------------------------------------------ run

    def run(self, volume_node, output_markups_node=None, region: str = "auto", model=None, device=None,
            progress=None):
        """Detect and label the vertebrae of ``volume_node``; returns the point list node.

        ``model``: None (bundled / user default), a package id or folder, or a loaded SpineLabelModel.
        Points the user set in ``output_markups_node`` are kept and constrain the labels.
        """
        bridge.check_output_markups_node(output_markups_node)  # before any work: someone else's points
        if region not in REGION_CHOICES:
            raise InputError(f"Unknown spine region {region!r}; choose one of {', '.join(REGION_CHOICES)}.")
        image = bridge.image_from_volume_node(volume_node)
        existing = self._points(output_markups_node) if output_markups_node is not None else []
        fixed = [p for p in existing if p.user_set]
        result, label_model = _label(image, region, model, device, fixed, as_progress(progress))
        node = self._write(output_markups_node, result.points, name=f"{volume_node.GetName()} vertebrae")
        self.remember(node, result.candidates, label_model.shape_model, label_model.anchor_level)
        self.last_result = result
        for warning in result.warnings:
            logging.warning("SpineLabel: %s", warning)
        return node

    def remember(self, markups_node, candidates, shape_model=None, anchor_level=None) -> None:
        """Keep the detections (and the model) that labelled ``markups_node`` for later relabels."""
        state = self._state(markups_node)
        state.candidates = [Candidate(np.asarray(c.position, float), float(c.probability),
                                      float(c.anchor_probability)) for c in candidates]
        state.shape_model = shape_model or state.shape_model
        state.anchor_level = anchor_level

    # ------------------------------------------------------------------ user operations

    def relabel(self, markups_node, shape_model: SpineShapeModel | None = None):
        """Re-solve the labels with the user's (locked) points fixed."""
        points = self._points(markups_node)
        return self._write(markups_node, self._solve(markups_node, points, shape_model))

    def set_label(self, markups_node, index: int, label: str):
        """Name control point ``index`` (the user's choice: it becomes locked) and relabel the others."""
        if label not in VERTEBRA_LABELS:
            raise InputError(f"{label!r} is not a vertebra name; use C1...S1, T13 or L6.")
        return self._fix_and_relabel(markups_node, index, label)

    def shift(self, markups_node, steps: int, include_user_set: bool = False):
        """Move every label ``steps`` levels: +1 towards the sacrum (Shift down), -1 towards the head (Shift up)."""
        points = self._points(markups_node)
        return self._write(markups_node, shift_labels(points, steps, include_user_set))

    def shift_up(self, markups_node, include_user_set: bool = False):
        """Give every point the name of the vertebra above it (S1 -> L5, ..., L1 -> T12)."""
        return self.shift(markups_node, -1, include_user_set)

    def shift_down(self, markups_node, include_user_set: bool = False):
        """Give every point the name of the vertebra below it (T12 -> L1, ..., L5 -> S1)."""
        return self.shift(markups_node, +1, include_user_set)

    def can_undo(self, markups_node) -> bool:
        state = self._states.get(markups_node.GetID()) if markups_node is not None else None
        return bool(state and state.history)

    def undo(self, markups_node) -> bool:
        """Put back the points from before the last run, relabel, shift or edit; False if there is none."""
        if not self.can_undo(markups_node):
            return False
        state = self._states[markups_node.GetID()]
        self._write(markups_node, state.history[-1], record=False)
        state.history.pop()
        return True

    # ------------------------------------------------------------------ point edits (markups events)

    def on_point_moved(self, markups_node, index: int):
        """The user dragged control point ``index``: lock it where it is, as it is named, and relabel.

        A point without a vertebra name is not locked: it is a detection the relabel names.
        """
        if markups_node.GetNthControlPointLabel(index) not in VERTEBRA_LABELS:
            return self.relabel(markups_node)
        return self._fix_and_relabel(markups_node, index, None)

    def on_point_added(self, markups_node, index: int, label: str | None = None):
        """The user placed control point ``index``.

        Named as a vertebra (``label`` or its own label): a fixed point. Otherwise a new detection
        that the relabel names.
        """
        label = label or markups_node.GetNthControlPointLabel(index)
        if label in VERTEBRA_LABELS:
            return self._fix_and_relabel(markups_node, index, label)
        return self.relabel(markups_node)

    def on_point_removed(self, markups_node, index: int = -1):
        """The user deleted a point: its detection is dropped and the rest relabelled."""
        return self.relabel(markups_node)

    def observe(self, markups_node, enabled: bool = True) -> None:
        """Relabel automatically after each point the user moves, places or deletes (or stop doing so)."""
        if markups_node is None:
            return
        node_id = markups_node.GetID()
        if node_id in self._observers:
            self._observers.pop(node_id).remove()
        if enabled:
            self._observers[node_id] = PointEditObserver(
                markups_node,
                on_moved=lambda node, i: self._automatic(self.on_point_moved, node, i),
                on_added=lambda node, i: self._automatic(self.on_point_added, node, i),
                on_removed=lambda node, i: self._automatic(self.on_point_removed, node, i),
            )

    def stop_observing(self) -> None:
        for observer in self._observers.values():
            observer.remove()
        self._observers.clear()

    # ------------------------------------------------------------------ internals

    def _automatic(self, operation, node, index) -> None:
        """An edit-triggered relabel: skip our own writes; a failure is reported, not raised into VTK."""
        if self._writing:
            return
        try:
            operation(node, index)
            self.last_error = None
        except InputError as error:
            self.last_error = str(error)
            logging.warning("SpineLabel: automatic relabel skipped: %s", error)

    def _fix_and_relabel(self, markups_node, index: int, label: str | None):
        points = self._points(markups_node)
        position = _list_position(markups_node, index)
        point = points[position]
        points[position] = replace(point, label=label or point.label, user_set=True, confidence=None)
        return self._write(markups_node, self._solve(markups_node, points, None))

    def _solve(self, markups_node, points: list[LabelledPoint], shape_model) -> list[LabelledPoint]:
        state = self._states.get(markups_node.GetID())
        model = shape_model or (state.shape_model if state else None) or self.shape_model
        if model is None:
            model = self._bundled_shape_model(points)
        if state is None or state.candidates is None:  # e.g. a list loaded from a file: its points are the detections
            return relabel_with_fixed(points, None, model)
        candidates = _current_candidates(state, points)
        anchor = _anchor(candidates, state.anchor_level, model)
        return relabel_with_fixed(points, candidates, model, anchor=anchor)

    def _bundled_shape_model(self, points) -> SpineShapeModel:
        """The shape model of the first installed SpineLabel model that knows every label in ``points``."""
        from spinebrain.spinelabel.pipeline import REGIONS, load_spine_label_model

        wanted = {p.label for p in points if p.label in VERTEBRA_LABELS}
        for region in REGIONS:
            try:
                shape_model = load_spine_label_model(region).shape_model
            except ModelError:
                continue
            if wanted <= set(shape_model.levels):
                self.shape_model = shape_model
                return shape_model
        raise ModelError("No installed SpineLabel model knows these vertebrae; run SpineLabel on the volume "
                         "first, or install a spine-label model (see Resources/Models/README.md).")

    def _points(self, markups_node) -> list[LabelledPoint]:
        if markups_node is None or not markups_node.IsA(POINT_LIST):
            raise InputError("Select a point list (markups fiducial) node with the vertebra points.")
        return bridge.points_from_markups_node(markups_node)

    def _state(self, markups_node) -> NodeState:
        return self._states.setdefault(markups_node.GetID(), NodeState())

    def _write(self, markups_node, points: list[LabelledPoint], name: str = "Vertebrae", record: bool = True):
        """Replace the node's points (or make a new node), keeping the old ones for undo."""
        before = self._points(markups_node) if markups_node is not None else []
        if markups_node is not None:  # checked or explicitly edited by the user: it holds vertebra labels now
            markups_node.SetAttribute(CONTENT_ATTRIBUTE, CONTENT_VALUE)
        self._writing = True
        try:
            node = bridge.markups_node_from_points(self.scene, points, name, markups_node)
        finally:
            self._writing = False
        state = self._state(node)
        if record and before:
            state.history = (state.history + [before])[-HISTORY_LIMIT:]
        state.written = [replace(p) for p in points]
        if node.GetID() in self._observers:
            self._observers[node.GetID()].refresh()
        return node


# ---------------------------------------------------------------------- helpers (no state)


def _label(image, region, model, device, fixed, progress):
    """Run the pipeline for one region, or for each installed region ("auto") keeping the most certain."""
    from spinebrain.spinelabel.pipeline import REGIONS, SpineLabelModel, label_spine, load_spine_label_model

    if isinstance(model, SpineLabelModel):
        models = [model]
    elif region != "auto":
        models = [load_spine_label_model(region, model, device=device)]
    else:
        models = []
        for name in REGIONS:
            try:
                models.append(load_spine_label_model(name, model, device=device))
            except ModelError:
                continue
        if not models:
            raise ModelError("No SpineLabel model is installed; install a spine-label model package "
                             "(see Resources/Models/README.md) or train one with the Training module.")
    results, errors = [], []
    for label_model in models:
        try:
            results.append((label_spine(image, label_model, fixed, device=device, progress=progress), label_model))
        except InputError as error:  # e.g. too little spine at this region's scale: another region may fit
            errors.append(error)
    if not results:
        raise errors[0]
    return max(results, key=lambda pair: (pair[0].labelling.certainty, len(pair[0].points)))


def _list_position(markups_node, index: int) -> int:
    """Position in ``points_from_markups_node``'s list of control point ``index`` (it skips unplaced points)."""
    import slicer

    defined = [i for i in range(markups_node.GetNumberOfControlPoints())
               if markups_node.GetNthControlPointPositionStatus(i) == slicer.vtkMRMLMarkupsNode.PositionDefined]
    if index not in defined:
        raise InputError(f"The point list has no placed point {index}.")
    return defined.index(index)


def _near(position, others, tolerance: float) -> bool:
    return any(np.linalg.norm(np.asarray(position, float) - np.asarray(o, float)) <= tolerance for o in others)


def _current_candidates(state: NodeState, points: list[LabelledPoint]) -> list[Candidate]:
    """The run's detections as the user has edited them since.

    Dropped: a detection whose point was moved or deleted. Added: a point the user placed without a
    vertebra name. (A detection left under a user point is harmless: the graph allows no step of ~0 mm.)
    """
    gone = [p.ras for p in state.written if not _near(p.ras, [q.ras for q in points], _SAME_POINT_MM)]
    kept = [c for c in state.candidates if not _near(c.position, gone, SAME_DETECTION_MM)]
    known = [c.position for c in state.candidates]
    added = [Candidate(np.asarray(p.ras, float), 1.0 if p.confidence is None else float(p.confidence))
             for p in points if not p.user_set and not _near(p.ras, known, SAME_DETECTION_MM)]
    return kept + added


def _anchor(candidates: list[Candidate], level: str | None, model: SpineShapeModel):
    """(level, index) of the strongest anchor detection still present, as the pipeline chose it; else None."""
    scores = [c.anchor_probability for c in candidates]
    if level is None or level not in model.levels or not scores or max(scores) <= 0:
        return None
    return level, int(np.argmax(scores))
