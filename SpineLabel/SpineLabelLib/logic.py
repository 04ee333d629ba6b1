"""SpineLabel's MRML-side logic: label a volume, then let the user correct the labels in seconds.

No Qt: everything here runs on the slicer-core wheel (the tests) as in Slicer. It stands on the
shared task Logic (:mod:`spinebrain_slicer.task_logic`): a run exports the volume, labels it with
the core -- in this process (:meth:`SpineLabelLogic.run`, for the console) or as the command
``spinebrain spine-label`` in the background (:meth:`SpineLabelLogic.start_labelling`, for the
widget: cancellable, Slicer stays responsive) -- and writes the point list only on success.

Which model labelled a point list is kept on the node (attributes ``SpineLabel.Model`` and
``SpineLabel.Region``, saved with the scene), so a relabel, a point edit or a later session
re-solves with exactly that model card's options (:func:`spinebrain.spinelabel.pipeline.relabel`).
Every solve is the core's :func:`spinebrain.spinelabel.labelling.relabel_points` with the run's
:class:`~spinebrain.spinelabel.labelling.LabellingSetup`. An in-process run also keeps its
detections, so a relabel can pick up one the first solution left out; otherwise the points
themselves are the detections.

Rules: a point the user set (locked control point) is a hard constraint and never renamed or
moved silently; an operation that fails raises InputError and leaves the node as it was; every
change can be undone (the task Logic's per-node history).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from spinebrain.anatomy import VERTEBRA_LABELS
from spinebrain.errors import InputError, ModelError
from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.graph import Candidate
from spinebrain.spinelabel.operations import shift_labels
from spinebrain.tasks import SPINE_LABEL
from spinebrain_slicer import bridge
from spinebrain_slicer.bridge.markups import CONTENT_ATTRIBUTE, CONTENT_VALUE, POINT_LIST
from spinebrain_slicer.markups_events import PointEditObserver
from spinebrain_slicer.task_logic import TaskJob, TaskLogic

REGION_CHOICES = ("auto", *SPINE_LABEL.regions)  # from the task registry, as the command line's --region
MODEL_ATTRIBUTE = "SpineLabel.Model"  # id of the model package that labelled the node
REGION_ATTRIBUTE = "SpineLabel.Region"  # the region that model serves
SAME_DETECTION_MM = 5.0  # a point this close to a detection is that detection (detections merge within 6 mm)
_SAME_POINT_MM = 1e-3  # a point read back from the node is "still there" within this distance


@dataclass
class NodeState:
    """What the logic remembers about one point list node in this session."""

    candidates: list[Candidate] | None = None  # detections of an in-process run; None: the points are the detections
    setup: object | None = None  # the LabellingSetup of the run that labelled it, once known
    written: list[LabelledPoint] = field(default_factory=list)  # the points as last written here


class SpineLabelLogic(TaskLogic):
    """Run SpineLabel and edit its point lists.

    ``model``: the SpineLabelModel (or LabellingSetup) for nodes that carry no model attribute
    (default: the first installed model that knows their labels). ``runner_factory``: see TaskLogic (tests pass one).
    """

    def __init__(self, scene, model=None, runner_factory=None):
        super().__init__(scene, runner_factory)
        self.model = model
        self.last_result = None  # SpineLabelResult of the last in-process run: warnings, certainty, timing
        self.last_error: str | None = None  # message of the last automatic relabel that failed
        self._states: dict[str, NodeState] = {}
        self._observers: dict[str, PointEditObserver] = {}
        self._loaded: dict[tuple, object] = {}
        self._writing = False

    # ------------------------------------------------------------------ run

    def run(self, volume_node, output_markups_node=None, region: str = "auto", model=None, device=None,
            progress=None):
        """Label ``volume_node`` in this process and wait; returns the point list node.

        ``model``: None (the installed default per region), a package id or folder, or a loaded
        SpineLabelModel. Points the user set in ``output_markups_node`` are kept and constrain the labels.
        """
        request = _request(volume_node, output_markups_node, region, model, device, in_process=True)
        return self.run_blocking(request, on_progress=progress)

    def start_labelling(self, volume_node, output_markups_node=None, region: str = "auto", model=None,
                        device=None, in_process: bool = False, on_progress=None, on_log=None):
        """Start labelling (by default ``spinebrain spine-label`` in the background); returns the TaskRun.

        Poll it (a Qt timer) or wait on it; ``cancel()`` stops it and leaves the scene as it was.
        """
        request = _request(volume_node, output_markups_node, region, model, device, in_process)
        return self.start(request, on_progress=on_progress, on_log=on_log)

    def prepare(self, request: dict, workdir: Path) -> TaskJob:
        """Check the request (before any work) and export the volume (and the user's points)."""
        output, region = request["output"], request["region"]
        bridge.check_output_markups_node(output)  # someone else's points are refused before any work
        if region not in REGION_CHOICES:
            raise InputError(f"Unknown spine region {region!r}; choose one of {', '.join(REGION_CHOICES)}.")
        image = bridge.image_from_volume_node(request["volume"])
        fixed = [p for p in self._points(output) if p.user_set] if output is not None else []
        context = {"output": output, "name": f"{request['volume'].GetName()} vertebrae"}
        replaces = [output] if output is not None and output.GetNumberOfControlPoints() else []
        if request["in_process"]:
            return TaskJob(work=_labelling_work(image, region, request["model"], request["device"], fixed),
                           context=context, replaces=replaces)
        volume_file = workdir / f"{_file_stem(request['volume'].GetName())}.nrrd"  # the CLI's messages name it
        return TaskJob(args=_command(image, volume_file, region, request["model"], request["device"], fixed),
                       context=context, replaces=replaces)

    def import_results(self, job: TaskJob, result, value=None):
        """Write the labelled points into the output node (or a new one) and remember how they were made."""
        from spinebrain.outputs import read_markups

        if value is not None:  # in process: the result carries the setup of the model that won
            labelled = value
            setup, points, candidates = labelled.setup, labelled.points, labelled.candidates
            model_id, region = setup.model_id, setup.region
            self.last_result = labelled
            for warning in labelled.warnings:
                logging.warning("SpineLabel: %s", warning)
        else:  # the command's point list; the result event says which model made it
            written = next((o for o in result.outputs if o.kind == "markups"), None)
            if written is None:
                raise InputError("spinebrain spine-label reported no point list; see the log.")
            points, candidates, setup = read_markups(written.path), None, None
            model_id, region = written.info.get("model"), written.info.get("region")
        node = self._write(job.context["output"], points, job.context["name"], record=False)
        for attribute, text in ((MODEL_ATTRIBUTE, model_id), (REGION_ATTRIBUTE, region)):
            node.SetAttribute(attribute, str(text) if text else "")
        self._states[node.GetID()] = NodeState(candidates=_copies(candidates), setup=setup,
                                               written=[replace(p) for p in points])
        return node

    def remember(self, markups_node, candidates, model=None) -> None:
        """Keep the detections (and the SpineLabelModel or LabellingSetup) that labelled ``markups_node``."""
        state = self._state(markups_node)
        state.candidates = _copies(candidates)
        state.setup = _as_setup(model) if model is not None else state.setup

    # ------------------------------------------------------------------ user operations

    def relabel(self, markups_node, model=None):
        """Re-solve the labels with the user's (locked) points fixed, with the model that labelled the node."""
        points = self._points(markups_node)
        return self._write(markups_node, self._solve(markups_node, points, model))

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

    def undo(self, markups_node) -> bool:
        """Put back the points from before the last run, relabel, shift or edit; False if there is none."""
        made_by = _made_by(markups_node)
        self._writing = True
        try:
            done = super().undo(markups_node)
        finally:
            self._writing = False
        if done and _made_by(markups_node) != made_by:  # back before a run: that run's detections no longer apply
            self._states.pop(markups_node.GetID(), None)
        if done:
            self._after_write(markups_node)
        return done

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

    def _solve(self, markups_node, points: list[LabelledPoint], model=None) -> list[LabelledPoint]:
        """The core's relabel with the setup (model card options) of the run that labelled the node."""
        from spinebrain.spinelabel.labelling import relabel_points

        setup = self._widened(_as_setup(model) if model is not None else self._setup_of(markups_node, points), points)
        state = self._states.get(markups_node.GetID())
        edited = _current_candidates(state, points) if state is not None and state.candidates is not None else None
        result = relabel_points(points, edited, setup)  # None: the points are the detections
        if result.setup is not setup:  # the whole-spine model named a level of the user's that this one lacks
            logging.warning("SpineLabel: %s", result.warnings[0])
        return result.points

    def _setup_of(self, markups_node, points):
        """The node's LabellingSetup: its run's, else its model attributes', else the default, else an installed one."""
        state = self._state(markups_node)
        if state.setup is None:
            model_id = markups_node.GetAttribute(MODEL_ATTRIBUTE)
            if model_id:
                state.setup = self._load(markups_node.GetAttribute(REGION_ATTRIBUTE) or None, model_id).setup
            else:
                default = self.model if self.model is not None else self._installed_model_for(points)
                state.setup = _as_setup(default)
        return state.setup

    def _widened(self, setup, points):
        """``setup`` with the installed whole-spine model's as its wider one where a user point needs it: a list
        loaded from a file keeps only its region model's name, a run under "auto" in this process had it already."""
        wanted = {p.label for p in points if p.user_set}
        if setup.wider is not None or setup.region == "whole" or wanted <= set(setup.shape_model.levels):
            return setup
        try:
            return replace(setup, wider=self._load("whole", None).setup)
        except ModelError:
            return setup  # the solve says which levels the model names

    def _load(self, region, model_id):
        key = (region, model_id)
        if key not in self._loaded:  # relabels happen on every point edit: load each package once
            load_models = SPINE_LABEL.entry("load_models")
            self._loaded[key] = load_models(region or "auto", model_id, device="cpu")[0]
        return self._loaded[key]

    def _installed_model_for(self, points):
        """The first installed SpineLabel model that knows every label in ``points``."""
        wanted = {p.label for p in points if p.label in VERTEBRA_LABELS}
        for region in SPINE_LABEL.regions:
            try:
                model = self._load(region, None)
            except ModelError:
                continue
            if wanted <= set(model.shape_model.levels):
                return model
        raise ModelError("No installed SpineLabel model knows these vertebrae; run SpineLabel on the volume "
                         "first, or install a spine-label model (see Resources/Models/README.md).")

    def _points(self, markups_node) -> list[LabelledPoint]:
        if markups_node is None or not markups_node.IsA(POINT_LIST):
            raise InputError("Select a point list (markups fiducial) node with the vertebra points.")
        return bridge.points_from_markups_node(markups_node)

    def _state(self, markups_node) -> NodeState:
        return self._states.setdefault(markups_node.GetID(), NodeState())

    def _write(self, markups_node, points: list[LabelledPoint], name: str = "Vertebrae", record: bool = True):
        """Replace the node's points (or make a new node); the old ones go to the undo history."""
        if markups_node is not None:
            self._points(markups_node)  # a point list, or InputError
        kept = [markups_node] if record and markups_node is not None and markups_node.GetNumberOfControlPoints() else []
        self._writing = True
        try:
            with self.replacing(kept):
                if markups_node is not None:  # checked or explicitly edited by the user: it holds vertebra labels
                    markups_node.SetAttribute(CONTENT_ATTRIBUTE, CONTENT_VALUE)
                node = bridge.markups_node_from_points(self.scene, points, name, markups_node)
        finally:
            self._writing = False
        self._after_write(node)
        return node

    def _after_write(self, node) -> None:
        self._state(node).written = self._points(node)
        if node.GetID() in self._observers:
            self._observers[node.GetID()].refresh()


# ---------------------------------------------------------------------- helpers (no state)


def _made_by(markups_node) -> tuple:
    return markups_node.GetAttribute(MODEL_ATTRIBUTE), markups_node.GetAttribute(REGION_ATTRIBUTE)


def _request(volume_node, output_node, region, model, device, in_process) -> dict:
    return {"volume": volume_node, "output": output_node, "region": region, "model": model, "device": device,
            "in_process": in_process}


def _labelling_work(image, region, model, device, fixed):
    """The in-process run: the core's model choice and labelling, as the command line does it."""

    def work(progress):
        from spinebrain.spinelabel.pipeline import SpineLabelModel

        if isinstance(model, SpineLabelModel):
            models = [model]
        else:
            models = SPINE_LABEL.entry("load_models")(region, model, device=device)
        return SPINE_LABEL.entry("run_case")(image, models, fixed, device=device, progress=progress)

    return work


def _command(image, volume: Path, region, model, device, fixed) -> list[str]:
    """Arguments of ``spinebrain spine-label`` on the exported volume (and the user's points, held fixed)."""
    from spinebrain.io import write_image
    from spinebrain.outputs import write_markups

    if model is not None and not isinstance(model, (str, Path)):
        raise InputError("A background run takes a model package id or folder, not a loaded model.")
    workdir = volume.parent
    write_image(image, volume, compress=False)  # not through a storage node: the scene is not touched
    args = ["spine-label", str(volume), "--out", str(workdir / "vertebrae.mrk.json"), "--region", region]
    if model is not None:
        args += ["--model", str(model)]
    if device is not None:
        args += ["--device", str(device)]
    if fixed:
        args += ["--fixed", str(write_markups(fixed, workdir / "fixed.mrk.json"))]
    return args


def _as_setup(model):
    """A SpineLabelModel's LabellingSetup (a setup stays itself)."""
    return getattr(model, "setup", model)


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in " ._-" else "_" for c in name).strip(" .") or "volume"


def _copies(candidates) -> list[Candidate] | None:
    if candidates is None:
        return None
    # every field: the anchor rule reads more than the probabilities (heat beyond, a second anchor's answer)
    return [replace(c, position=np.asarray(c.position, float)) for c in candidates]


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
