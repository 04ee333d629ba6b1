"""SpineSegment's MRML-side logic: segment the vertebrae of a volume, then review them.

No Qt: everything here runs on the slicer-core wheel (the tests) as in Slicer. A run stands on the
shared task Logic (:mod:`spinebrain_slicer.task_logic`): it exports the volume (and SpineLabel's
points, which name the vertebrae), runs the core -- in this process (:meth:`SpineSegmentLogic.run`,
for the console) or as ``spinebrain spine-segment`` in the background
(:meth:`SpineSegmentLogic.start_segmenting`, for the widget: cancellable, the scene untouched
until it succeeds) -- and then writes one segment per vertebra and the review table.

Review state lives on the segments themselves (tags ``SpineBrain.Complete``,
``SpineBrain.CompletenessProbability``, ``SpineBrain.Volume``, ``SpineBrain.Centroid``), so it is
saved with the scene and the ``.seg.nrrd``; the table node (linked both ways by node references)
is always rebuilt from them, so it cannot drift from the segmentation. The user edits the
``complete`` column (or calls :meth:`SpineSegmentLogic.set_complete`); every change goes through
the per-node undo history.
"""

from __future__ import annotations

import math
from pathlib import Path

from spinebrain.errors import InputError
from spinebrain.spinesegment import review
from spinebrain.tasks import SPINE_SEGMENT
from spinebrain_slicer import bridge
from spinebrain_slicer.bridge.segmentations import COMPLETE_KEY
from spinebrain_slicer.task_logic import TaskJob, TaskLogic

MODE_CHOICES = SPINE_SEGMENT.modes  # from the task registry, as the command line's --mode
DIRECTION_CHOICES = ("down", "up")  # traversal of the 3D mode: top-down or bottom-up
TABLE_REFERENCE = "SpineSegmentReviewTable"  # segmentation -> its review table
SEGMENTATION_REFERENCE = "SpineSegmentSegmentation"  # review table -> its segmentation
MODE_ATTRIBUTE = "SpineSegment.Mode"
PROBABILITY_KEY, VOLUME_KEY, CENTROID_KEY = "CompletenessProbability", "Volume", "Centroid"


class SpineSegmentLogic(TaskLogic):
    """Run SpineSegment and review its result. ``runner_factory``: see TaskLogic (tests pass one)."""

    # ------------------------------------------------------------------ run

    def run(self, volume_node, labels_node=None, output_segmentation_node=None, mode: str = "2d",
            direction: str = "down", model=None, device=None, progress=None):
        """Segment ``volume_node`` in this process and wait; returns the segmentation node.

        ``labels_node``: SpineLabel's point list (names the vertebrae); ``model``: None (the
        installed default), a package id or folder, or a loaded model.
        """
        request = _request(volume_node, labels_node, output_segmentation_node, mode, direction, model, device, True)
        return self.run_blocking(request, on_progress=progress)

    def start_segmenting(self, volume_node, labels_node=None, output_segmentation_node=None, mode: str = "2d",
                         direction: str = "down", model=None, device=None, in_process: bool = False,
                         on_progress=None, on_log=None):
        """Start segmenting (by default ``spinebrain spine-segment`` in the background); returns the TaskRun.

        Poll it (a Qt timer) or wait on it; ``cancel()`` stops it and leaves the scene as it was.
        """
        request = _request(volume_node, labels_node, output_segmentation_node, mode, direction, model, device,
                           in_process)
        return self.start(request, on_progress=on_progress, on_log=on_log)

    def prepare(self, request: dict, workdir: Path) -> TaskJob:
        """Check the request (before any work) and export the volume and the points."""
        if request["mode"] not in MODE_CHOICES:
            raise InputError(f"Mode {request['mode']!r} is not available; choose one of {', '.join(MODE_CHOICES)}.")
        if request["direction"] not in DIRECTION_CHOICES:
            raise InputError(f"Unknown direction {request['direction']!r}; choose down or up.")
        output = request["output"]
        if output is not None and not output.IsA("vtkMRMLSegmentationNode"):
            raise InputError(f"The output node '{output.GetName()}' is not a segmentation; choose a segmentation "
                             "or let the module create a new one.")
        image = bridge.image_from_volume_node(request["volume"])
        points = _points(request["labels"], image)
        table = self.review_table(output) if output is not None else None
        context = {"volume": request["volume"], "output": output, "table": table, "mode": request["mode"],
                   "name": f"{request['volume'].GetName()} vertebrae"}
        replaces = [node for node in (output, table) if node is not None]
        if request["in_process"]:
            return TaskJob(work=_segmenting_work(image, points, request), context=context, replaces=replaces)
        return TaskJob(args=_command(image, points, workdir, request), context=context, replaces=replaces)

    def import_results(self, job: TaskJob, result, value=None):
        """One segment per vertebra (standard names, colours, terminology) and the review table."""
        if value is not None:
            reviewed = review.from_result(value)
        else:
            written = next((o for o in result.outputs if o.kind == "segmentation"), None)
            if written is None:
                raise InputError("spinebrain spine-segment reported no segmentation; see the log.")
            reviewed = review.from_files(written.path)
        context = job.context
        node = bridge.segmentation_node_from_labels(self.scene, reviewed.label_image, reviewed.names,
                                                    reference_volume_node=context["volume"], node=context["output"],
                                                    name=context["name"])
        node.SetAttribute(MODE_ATTRIBUTE, context["mode"])
        for row in reviewed.records:
            _tag_segment(node, row)
        self._write_table(node, context["table"])
        return node

    # ------------------------------------------------------------------ review

    def review_records(self, segmentation_node) -> list[dict]:
        """One record per segment (in segment order), read from the segments' tags."""
        _check_segmentation(segmentation_node)
        segmentation = segmentation_node.GetSegmentation()
        records = []
        for segment_id in segmentation.GetSegmentIDs():
            flag = lambda key: bridge.get_segment_flag(segmentation_node, segment_id, key)  # noqa: E731
            centroid = [float(v) for v in (flag(CENTROID_KEY) or "nan nan nan").split()]
            records.append(review.record(
                segmentation.GetSegment(segment_id).GetName(), _label_value(segmentation_node, segment_id),
                flag(COMPLETE_KEY) != "false", float(flag(VOLUME_KEY) or "nan"), centroid,
                float(flag(PROBABILITY_KEY) or "nan")))
        return records

    def review_table(self, segmentation_node):
        """The review table node of a segmentation this module wrote (None when it has none)."""
        if segmentation_node is None:
            return None
        return segmentation_node.GetNodeReference(TABLE_REFERENCE)

    def segmentation_of(self, table_node):
        """The segmentation a review table belongs to (None for any other table)."""
        return None if table_node is None else table_node.GetNodeReference(SEGMENTATION_REFERENCE)

    def update_review_table(self, segmentation_node):
        """Rebuild the review table from the segments (after edits in the Segment Editor); returns it."""
        _check_segmentation(segmentation_node)
        return self._write_table(segmentation_node, self.review_table(segmentation_node))

    def set_complete(self, segmentation_node, row: int, complete: bool) -> None:
        """Mark the vertebra in ``row`` complete or incomplete: tag, display (incomplete: semi-transparent), table."""
        segment_id = self._segment_of_row(segmentation_node, row)
        with self.replacing([segmentation_node]):
            bridge.set_segment_complete(segmentation_node, segment_id, bool(complete))
        self.update_review_table(segmentation_node)

    def apply_table_edits(self, table_node) -> list[str]:
        """Take the user's ticks in the ``complete`` column over to the segments; returns the names changed.

        Only ``complete`` is editable: any other cell the user changed is put back from the segments.
        """
        segmentation_node = self.segmentation_of(table_node)
        if segmentation_node is None:
            raise InputError(f"The table '{table_node.GetName() if table_node else ''}' is not a SpineSegment "
                             "review table; choose the table of a SpineSegment result.")
        try:
            edited = bridge.records_from_table_node(table_node, review.REVIEW_COLUMNS)
        except InputError:  # a column was removed by hand: rebuild the table
            edited = []
        records = self.review_records(segmentation_node)
        current = {r[review.VALUE]: r for r in records}
        changes = [(r[review.VALUE], r[review.COMPLETE]) for r in edited
                   if r[review.VALUE] in current and current[r[review.VALUE]][review.COMPLETE] != r[review.COMPLETE]]
        if changes:
            with self.replacing([segmentation_node]):
                for value, complete in changes:
                    bridge.set_segment_complete(segmentation_node, bridge.segment_id_for_label(value), complete)
        # rewrite only when the table differs from the segments, so a table observer that calls this
        # on every modification sees one more event at most, never a loop
        if changes or not _same_records(edited, records):
            self._write_table(segmentation_node, table_node)
        return [current[value][review.NAME] for value, _ in changes]

    def remove_incomplete(self, segmentation_node) -> list[str]:
        """Delete every segment marked incomplete (undoable); returns their names."""
        records = self.review_records(segmentation_node)
        gone = [r for r in records if not r[review.COMPLETE]]
        if gone:
            with self.replacing([segmentation_node, self.review_table(segmentation_node)]):
                for row in gone:
                    segmentation_node.GetSegmentation().RemoveSegment(self._segment_id(segmentation_node, row))
                self.update_review_table(segmentation_node)
        return [r[review.NAME] for r in gone]

    def centroid(self, segmentation_node, row: int) -> tuple[float, float, float]:
        """RAS centroid (mm) of the vertebra in review-table ``row``."""
        return review.centroid(self.review_records(segmentation_node), row)

    def centre_views(self, segmentation_node, row: int) -> tuple[float, float, float]:
        """Centre every slice view of the scene on the vertebra in ``row``; returns its centroid."""
        import slicer

        ras = self.centroid(segmentation_node, row)
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.scene, *ras, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        return ras

    def undo(self, node) -> bool:
        """Put back the segmentation (or table) from before the last run or edit; the table follows."""
        done = super().undo(node)
        segmentation_node = self.segmentation_of(node) or node
        if done and segmentation_node is not None and segmentation_node.IsA("vtkMRMLSegmentationNode"):
            bridge.show_completeness(segmentation_node)
            if self.review_table(segmentation_node) is not None:
                self.update_review_table(segmentation_node)
        return done

    # ------------------------------------------------------------------ helpers

    def _write_table(self, segmentation_node, table_node):
        records = self.review_records(segmentation_node)
        table_node = bridge.table_node_from_records(self.scene, records, review.REVIEW_COLUMNS,
                                                    f"{segmentation_node.GetName()} review", node=table_node)
        segmentation_node.SetNodeReferenceID(TABLE_REFERENCE, table_node.GetID())
        table_node.SetNodeReferenceID(SEGMENTATION_REFERENCE, segmentation_node.GetID())
        return table_node

    def _segment_of_row(self, segmentation_node, row: int) -> str:
        records = self.review_records(segmentation_node)
        if not 0 <= row < len(records):
            raise InputError(f"The review table has no row {row + 1}; choose one of its {len(records)} rows.")
        return self._segment_id(segmentation_node, records[row])

    @staticmethod
    def _segment_id(segmentation_node, record: dict) -> str:
        return segmentation_node.GetSegmentation().GetSegmentIDs()[_row_index(segmentation_node, record)]


def _same_records(first: list[dict], second: list[dict]) -> bool:
    def same(a, b) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            a, b = (math.nan if v is None else float(v) for v in (a, b))
            return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 0.05  # the table keeps 1-2 decimals
        return a == b

    return len(first) == len(second) and all(
        same(a[c.name], b[c.name]) for a, b in zip(first, second) for c in review.REVIEW_COLUMNS)


def _row_index(segmentation_node, record: dict) -> int:
    ids = list(segmentation_node.GetSegmentation().GetSegmentIDs())
    for index, segment_id in enumerate(ids):
        if _label_value(segmentation_node, segment_id) == record[review.VALUE]:
            return index
    raise InputError(f"{record[review.NAME]} is no longer in the segmentation; update the review table.")


def _label_value(segmentation_node, segment_id: str) -> int:
    tagged = bridge.get_segment_flag(segmentation_node, segment_id, "LabelValue")
    return int(tagged) if tagged and tagged.isdigit() else segmentation_node.GetSegmentation().GetSegment(
        segment_id).GetLabelValue()


def _tag_segment(node, row: dict) -> None:
    segment_id = bridge.segment_id_for_label(row[review.VALUE])
    bridge.set_segment_complete(node, segment_id, row[review.COMPLETE])
    probability = row[review.PROBABILITY]
    bridge.set_segment_flag(node, segment_id, PROBABILITY_KEY, "" if probability is None else f"{probability:.4f}")
    bridge.set_segment_flag(node, segment_id, VOLUME_KEY, f"{row[review.VOLUME]:.1f}")
    bridge.set_segment_flag(node, segment_id, CENTROID_KEY, " ".join(f"{row[c]:.2f}" for c in review.CENTROID))


def _check_segmentation(node) -> None:
    if node is None or not node.IsA("vtkMRMLSegmentationNode"):
        raise InputError("Select a SpineSegment segmentation first.")


def _request(volume, labels, output, mode, direction, model, device, in_process) -> dict:
    return {"volume": volume, "labels": labels, "output": output, "mode": mode, "direction": direction,
            "model": model, "device": device, "in_process": in_process}


def _points(labels_node, image):
    """SpineLabel's points, checked to lie on this volume (points of another scan are refused)."""
    if labels_node is None:
        return []
    from spinebrain.validate import check_points_in_image

    points = bridge.points_from_markups_node(labels_node)
    check_points_in_image(points, image, what="SpineLabel point")
    return points


def _segmenting_work(image, points, request):
    """The in-process run: the registry's load_models / run_case, as the command line does it."""

    def work(progress):
        model = request["model"]
        if model is None or isinstance(model, (str, Path)):
            model = SPINE_SEGMENT.entry("load_models")(None, model, device=request["device"] or "auto",
                                                       mode=request["mode"])
        return SPINE_SEGMENT.entry("run_case")(image, model, points, device=request["device"], progress=progress,
                                               mode=request["mode"], direction=request["direction"])

    return work


def _command(image, points, workdir: Path, request) -> list[str]:
    """Arguments of ``spinebrain spine-segment`` on the exported volume (and the points)."""
    from spinebrain.io import write_image
    from spinebrain.outputs import write_markups

    model = request["model"]
    if model is not None and not isinstance(model, (str, Path)):
        raise InputError("A background run takes a model package id or folder, not a loaded model.")
    volume = write_image(image, workdir / f"{_file_stem(request['volume'].GetName())}.nrrd", compress=False)
    args = ["spine-segment", str(volume), "--out", str(workdir / "vertebrae.seg.nrrd"), "--mode", request["mode"]]
    if request["mode"] != "2d":  # the traversal direction is a 3D-mode option
        args += ["--direction", request["direction"]]
    if points:
        args += ["--labels", str(write_markups(points, workdir / "labels.mrk.json"))]
    if model is not None:
        args += ["--model", str(model)]
    if request["device"] is not None:
        args += ["--device", str(request["device"])]
    return args


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in " ._-" else "_" for c in name).strip(" .") or "volume"

