"""SpineSegment's Logic on real MRML (slicer-core) with the bundled 2D MR model on a real scan.

Runs in process (the console's blocking run) and as the real ``spinebrain spine-segment`` process
(the widget's background run), cancels both ways, and exercises the review: the table mirrors the
segments, ticking "complete" changes tag and display, "Remove incomplete", centring the views, undo.
The scan is a thin sagittal slab of a kept-back A10 MR scan, cut through L1 so one body is incomplete.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SpineSegment"))  # as Slicer does for a module

from SpineSegmentLib.logic import MODE_CHOICES, SpineSegmentLogic  # noqa: E402
from spinebrain.errors import CancelledError, InputError  # noqa: E402
from spinebrain.points import LabelledPoint  # noqa: E402
from spinebrain.spinesegment import review  # noqa: E402
from spinebrain_slicer import bridge  # noqa: E402
from spinebrain_slicer.bridge.segmentations import INCOMPLETE_OPACITY  # noqa: E402

BUNDLED = str(Path(__file__).resolve().parents[1] / "Resources" / "Models" / "spine-segment-mr-2d")
CASE = "A10_vb3_lumbar_mr/vb3_05"


@pytest.fixture(scope="module")
def slab(data_dir):
    """(image, reference): 16 sagittal slices around the spine, cut superiorly through the middle of L1."""
    image = sitk.ReadImage(str(data_dir / CASE / "image.nii.gz"))
    reference = sitk.ReadImage(str(data_dir / CASE / "vertebrae.nii.gz"))
    array = sitk.GetArrayViewFromImage(reference)  # [k, j, i]; this scan is IPR: i runs superior -> inferior
    centre = int(np.nonzero(array)[0].mean())
    l1_columns = np.nonzero(array == 20)[2]
    top = int(l1_columns.mean())  # keeps the lower half of L1
    crop = (slice(top, None), slice(None), slice(centre - 8, centre + 8))
    return image[crop], reference[crop]


def _volume(scene, slab):
    return bridge.volume_node_from_image(scene, slab[0], "MR slab")


def _run(scene, slab, **options):
    logic = SpineSegmentLogic(scene)
    return logic, logic.run(_volume(scene, slab), model=BUNDLED, device="cpu", **options)


def _opacity(node, segment_id):
    return node.GetDisplayNode().GetSegmentOpacity2DFill(segment_id)


def test_modes_come_from_the_task_registry():
    from spinebrain.tasks import SPINE_SEGMENT

    assert MODE_CHOICES == SPINE_SEGMENT.modes and "2d" in MODE_CHOICES


def test_blocking_run_gives_one_segment_per_body_and_a_review_table(scene, slab):
    logic, node = _run(scene, slab)
    segmentation = node.GetSegmentation()
    ids = list(segmentation.GetSegmentIDs())
    assert len(ids) >= 4
    table = logic.review_table(node)
    assert table is not None and logic.segmentation_of(table) is node
    assert table.GetNumberOfRows() == len(ids)
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())] == [
        c.name for c in review.REVIEW_COLUMNS]
    assert table.GetColumnUnitLabel("volume") == "mm³"
    records = logic.review_records(node)
    assert [r["name"] for r in records] == [segmentation.GetSegment(i).GetName() for i in ids]
    assert all(r["volume"] > 1000 for r in records)
    assert all(r["completeness probability"] is None for r in records)  # the 2D mode has no probability
    # the cut L1 is the top body: incomplete, tagged and semi-transparent; the others are complete and opaque
    top = min(range(len(records)), key=lambda i: -records[i]["centroid S"])
    assert not records[top]["complete"]
    assert bridge.get_segment_flag(node, ids[top], "Complete") == "false"
    assert _opacity(node, ids[top]) == pytest.approx(INCOMPLETE_OPACITY)
    complete = [i for i, r in enumerate(records) if r["complete"]]
    assert len(complete) >= 3 and all(_opacity(node, ids[i]) == pytest.approx(1.0) for i in complete)
    # standard terminology and colours come with each segment
    import vtk

    entry = vtk.reference("")
    assert segmentation.GetSegment(ids[0]).GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), entry)
    assert "^51282000^Vertebra" in str(entry)  # unnamed bodies: SNOMED "Vertebra"


def test_spinelabel_points_name_the_bodies_and_foreign_points_are_refused(scene, slab):
    reference = slab[1]
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(reference)
    names = {20: "L1", 21: "L2", 22: "L3", 23: "L4", 24: "L5"}
    points = [LabelledPoint(names[v], tuple(np.array(stats.GetCentroid(v)) * [-1, -1, 1])) for v in stats.GetLabels()]
    labels = bridge.markups_node_from_points(scene, points, "SpineLabel points")
    logic, node = _run(scene, slab, labels_node=labels)
    found = {r["name"] for r in logic.review_records(node)}
    assert {"L2", "L3", "L4"} <= found
    far = bridge.markups_node_from_points(scene, [LabelledPoint("L3", (500.0, 500.0, 500.0))], "elsewhere")
    volume = _volume(scene, slab)
    count = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="outside the image"):
        logic.run(volume, labels_node=far, model=BUNDLED)
    assert scene.GetNumberOfNodes() == count


def test_ticking_complete_in_the_table_updates_tag_display_and_undo(scene, slab):
    logic, node = _run(scene, slab)
    table = logic.review_table(node)
    ids = list(node.GetSegmentation().GetSegmentIDs())
    row = next(i for i, r in enumerate(logic.review_records(node)) if r["complete"])
    column = table.GetTable().GetColumnByName("complete")
    column.SetValue(row, 0)  # what the table view does when the user unticks the box
    table.GetTable().GetColumnByName("volume").SetValue(row, 1.0)  # not editable: put back
    table.Modified()
    changed = logic.apply_table_edits(table)
    assert changed == [logic.review_records(node)[row]["name"]]
    assert bridge.get_segment_flag(node, ids[row], "Complete") == "false"
    assert _opacity(node, ids[row]) == pytest.approx(INCOMPLETE_OPACITY)
    assert table.GetTable().GetColumnByName("volume").GetValue(row) > 1000
    assert logic.apply_table_edits(table) == []  # nothing left to take over: the table is not rewritten
    mtime = table.GetMTime()
    logic.apply_table_edits(table)
    assert table.GetMTime() == mtime
    assert logic.undo(node)
    assert bridge.get_segment_flag(node, ids[row], "Complete") == "true"
    assert _opacity(node, ids[row]) == pytest.approx(1.0)
    assert table.GetTable().GetColumnByName("complete").GetValue(row) == 1
    logic.set_complete(node, row, False)  # the same through the Logic method
    assert not logic.review_records(node)[row]["complete"]
    with pytest.raises(InputError, match="no row 100"):
        logic.set_complete(node, 99, True)


def test_remove_incomplete_and_undo(scene, slab):
    logic, node = _run(scene, slab)
    before = logic.review_records(node)
    incomplete = [r["name"] for r in before if not r["complete"]]
    assert incomplete
    assert logic.remove_incomplete(node) == incomplete
    after = logic.review_records(node)
    assert [r["name"] for r in after] == [r["name"] for r in before if r["complete"]]
    assert logic.review_table(node).GetNumberOfRows() == len(after)
    assert logic.remove_incomplete(node) == []
    assert logic.undo(node)
    assert [r["name"] for r in logic.review_records(node)] == [r["name"] for r in before]
    assert logic.review_table(node).GetNumberOfRows() == len(before)


def test_selecting_a_row_centres_the_slice_views(scene, slab):
    logic, node = _run(scene, slab)
    red = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    red.SetLayoutName("Red")
    row = 1
    ras = logic.centre_views(node, row)
    assert ras == pytest.approx([logic.review_records(node)[row][c] for c in review.CENTROID])
    matrix = red.GetSliceToRAS()
    assert [matrix.GetElement(i, 3) for i in range(3)] == pytest.approx(list(ras), abs=1e-3)
    with pytest.raises(InputError, match="no row"):
        logic.centroid(node, 50)


def test_background_run_cancel_leaves_the_scene_and_a_full_run_matches(scene, slab):
    logic = SpineSegmentLogic(scene)
    volume = _volume(scene, slab)
    count = scene.GetNumberOfNodes()
    for in_process in (False, True):
        run = logic.start_segmenting(volume, model=BUNDLED, device="cpu", in_process=in_process)
        run.cancel()
        with pytest.raises(CancelledError):
            run.wait(timeout=120)
        assert scene.GetNumberOfNodes() == count
    events = []
    node = logic.start_segmenting(volume, model=BUNDLED, device="cpu",
                                  on_progress=lambda stage, fraction, message: events.append(fraction)).wait(300)
    assert events and max(events) > 0.5
    in_process = SpineSegmentLogic(scene).run(volume, model=BUNDLED, device="cpu")
    assert ([r["name"] for r in SpineSegmentLogic(scene).review_records(node)]
            == [r["name"] for r in SpineSegmentLogic(scene).review_records(in_process)])
    records = logic.review_records(node)
    assert any(not r["complete"] for r in records) and all(r["volume"] > 1000 for r in records)


def test_bad_requests_are_refused_before_any_work(scene, slab):
    logic = SpineSegmentLogic(scene)
    volume = _volume(scene, slab)
    count = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="not available"):
        logic.run(volume, mode="4d")
    with pytest.raises(InputError, match="CT-only model"):  # the MR slab, in process, to the bundled CT model
        logic.run(volume, mode="3d", device="cpu")
    with pytest.raises(InputError, match="direction"):
        logic.run(volume, direction="sideways")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode")
    with pytest.raises(InputError, match="not a segmentation"):
        logic.run(volume, output_segmentation_node=table)
    with pytest.raises(InputError, match="not a SpineSegment review table"):
        logic.apply_table_edits(table)
    assert scene.GetNumberOfNodes() == count + 1


def test_the_3d_mode_runs_in_process_through_the_registry_with_completeness(scene):
    """The console's blocking run of the 3D mode: the bundled CT model on a CT phantom, review records filled."""
    from test_spinesegment_3d_pipeline import phantom

    clean = phantom()
    noisy = sitk.GetArrayFromImage(clean) + np.random.default_rng(1).normal(0, 20, (70, 40, 40)).astype(np.int16)
    image = sitk.GetImageFromArray(noisy.astype(np.int16))
    image.CopyInformation(clean)
    volume = bridge.volume_node_from_image(scene, image, "phantom CT")
    logic = SpineSegmentLogic(scene)
    node = logic.run(volume, mode="3d", direction="up", device="cpu")
    records = logic.review_records(node)
    assert node.GetAttribute("SpineSegment.Mode") == "3d"
    assert len(records) == node.GetSegmentation().GetNumberOfSegments() >= 1
    assert all(0.0 <= r[review.PROBABILITY] <= 1.0 for r in records)  # 3D results carry the completeness probability
