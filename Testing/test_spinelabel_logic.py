"""SpineLabel module logic on real MRML (slicer-core): run, relabel, point edits, shift, undo.

The logic package is imported the way Slicer imports it: Slicer puts each module folder on
sys.path, so ``SpineLabel/SpineLabel.py`` does ``from SpineLabelLib import ...``; we add the
same folder here. The markups events are invoked the way Slicer's markups widget invokes them
(see spinebrain_slicer/markups_events.py), since they do not fire without views.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from test_spinelabel_graph import LUMBAR, LUMBAR6, candidates_of, make_spine, training_cases

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")
import vtk  # noqa: E402  (slicer-core's vtk)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SpineLabel"))  # as Slicer does for a module

from SpineLabelLib.logic import MODEL_ATTRIBUTE, REGION_ATTRIBUTE, SpineLabelLogic  # noqa: E402

from spinebrain.errors import InputError  # noqa: E402
from spinebrain.points import LabelledPoint  # noqa: E402
from spinebrain.spinelabel.graph import Candidate, fit_shape_model  # noqa: E402
from spinebrain_slicer import bridge  # noqa: E402
from spinebrain_slicer.markups_events import MOVING_INDEX_ATTRIBUTE  # noqa: E402
from spinebrain_slicer.runner import OutputFile, RunResult, RunState  # noqa: E402

MARKUPS = slicer.vtkMRMLMarkupsNode


@pytest.fixture(scope="module")
def shape_model():
    """Lumbar shape model (T10...S1) fitted on synthetic annotation chains."""
    return fit_shape_model(training_cases(np.random.default_rng(1), LUMBAR))


def labelling_model(shape_model, anchor_level="S1", labelling=None):
    """A SpineLabelModel without networks: all a relabel needs (card ``labelling`` options, else the defaults)."""
    from spinebrain.models import ModelCard
    from spinebrain.spinelabel.pipeline import SpineLabelModel

    card = ModelCard(id="test-lumbar", task="spine-label", version="0", labels={}, modalities=["CT"],
                     spacing=[1.0, 1.0], patch_size=[64, 64], normalisation={}, network={}, region="lumbar",
                     extra={"labelling": labelling} if labelling else {})
    return SpineLabelModel(card, None, shape_model, anchor_level)


@pytest.fixture
def case(shape_model):
    """A spine whose S2 the anchor detector takes for S1 (the paper's typical failure), plus true names."""
    rng = np.random.default_rng(9)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine)
    candidates[truth.index("S1")].anchor_probability = 0.6  # the anchor detector sees S1 too, less sure
    spine["S2"] = spine["S1"] + shape_model.pairs[("L5", "S1")].mean
    candidates.append(Candidate(spine["S2"], 0.7, anchor_probability=0.8))
    return spine, candidates


def labelled_node(scene, logic, candidates, shape_model, anchor_level="S1"):
    """A point list labelled by the logic from the given detections, as a run leaves it."""
    node = bridge.markups_node_from_points(scene, [], "Vertebrae")
    logic.remember(node, candidates, labelling_model(shape_model, anchor_level or "S1"))
    return logic.relabel(node)


def labels(node) -> list[str]:
    return [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())]


def true_names(node, spine) -> list[str]:
    """Name of the true vertebra under each control point (within 5 mm), '?' for none."""
    names = []
    for i in range(node.GetNumberOfControlPoints()):
        position = np.array(node.GetNthControlPointPosition(i))
        name, where = min(spine.items(), key=lambda item: np.linalg.norm(item[1] - position))
        names.append(name if np.linalg.norm(where - position) < 5.0 else "?")
    return names


def index_of(node, label) -> int:
    return labels(node).index(label)


def snapshot(node):
    return [(node.GetNthControlPointLabel(i), tuple(node.GetNthControlPointPosition(i)),
             node.GetNthControlPointLocked(i), node.GetNthControlPointDescription(i))
            for i in range(node.GetNumberOfControlPoints())]


def assert_correct(node, spine):
    assert labels(node) == true_names(node, spine)
    assert "S2" not in labels(node) and len(set(labels(node))) == len(labels(node))


def test_the_failure_case_is_wrong_by_one_level(scene, shape_model, case):
    spine, candidates = case
    node = labelled_node(scene, SpineLabelLogic(scene), candidates, shape_model)
    wrong = dict(zip(true_names(node, spine), labels(node)))
    assert wrong.pop("S2") == "S1"
    assert all(LUMBAR.index(level) == LUMBAR.index(name) - 1 for name, level in wrong.items())


def test_naming_one_point_fixes_the_whole_chain(scene, shape_model, case):
    spine, candidates = case
    logic = SpineLabelLogic(scene)
    node = labelled_node(scene, logic, candidates, shape_model)
    index = true_names(node, spine).index("S1")  # named L5 by the failure
    position = node.GetNthControlPointPosition(index)
    logic.set_label(node, index, "S1")
    assert_correct(node, spine)
    s1 = index_of(node, "S1")
    assert node.GetNthControlPointLocked(s1) and node.GetNthControlPointPosition(s1) == position
    assert sum(node.GetNthControlPointLocked(i) for i in range(node.GetNumberOfControlPoints())) == 1


def drag(node, index, position, how):
    """Move control point ``index`` the way Slicer's markups widget does, telling the index ``how``."""
    node.InvokeCustomModifiedEvent(MARKUPS.PointStartInteractionEvent)
    if how == "attribute":  # Slicer 5: attribute set during the drag, no call data
        node.SetAttribute(MOVING_INDEX_ATTRIBUTE, str(index))
    node.SetNthControlPointPosition(index, *position)
    if how == "call_data":  # older Slicer: the index as call data
        node.InvokeEvent(MARKUPS.PointEndInteractionEvent, index)
    else:
        node.InvokeCustomModifiedEvent(MARKUPS.PointEndInteractionEvent)
    node.SetAttribute(MOVING_INDEX_ATTRIBUTE, "")


@pytest.mark.parametrize("how", ["attribute", "call_data", "positions"])
def test_dragging_the_wrong_s1_onto_s1_relabels_everything(scene, shape_model, case, how):
    spine, candidates = case
    logic = SpineLabelLogic(scene)
    node = labelled_node(scene, logic, candidates, shape_model)
    logic.observe(node)
    wrong_s1 = index_of(node, "S1")  # sits on S2
    drag(node, wrong_s1, spine["S1"] + 1.5, how)
    assert logic.last_error is None
    assert_correct(node, spine)
    s1 = index_of(node, "S1")
    assert node.GetNthControlPointLocked(s1)
    assert np.allclose(node.GetNthControlPointPosition(s1), spine["S1"] + 1.5)  # the user's point stays put
    assert len(labels(node)) == len(LUMBAR)  # the S1 detection under the user's point is not doubled
    assert logic.undo(node) and labels(node)[wrong_s1] == "S1" and not any(
        node.GetNthControlPointLocked(i) for i in range(node.GetNumberOfControlPoints()))


def test_a_click_without_moving_changes_nothing(scene, shape_model, case):
    spine, candidates = case
    logic = SpineLabelLogic(scene)
    node = labelled_node(scene, logic, candidates, shape_model)
    logic.observe(node)
    before = snapshot(node)
    index = index_of(node, "L3")
    drag(node, index, node.GetNthControlPointPosition(index), "attribute")
    assert snapshot(node) == before and not logic.can_undo(node)


def test_deleting_the_false_s1_relabels_from_the_real_anchor(scene, shape_model, case):
    spine, candidates = case
    logic = SpineLabelLogic(scene)
    node = labelled_node(scene, logic, candidates, shape_model)
    logic.observe(node)
    node.RemoveNthControlPoint(index_of(node, "S1"))  # what the widget's Delete key does
    assert_correct(node, spine)
    assert labels(node)[-1] == "S1" and len(labels(node)) == len(LUMBAR)


def test_placing_a_missed_s1_anchors_the_rest(scene, shape_model):
    rng = np.random.default_rng(21)
    spine = make_spine(rng, LUMBAR)
    candidates, _ = candidates_of(rng, spine, ["T11", "T12", "L1", "L2", "L3", "L4", "L5"])  # S1 missed
    logic = SpineLabelLogic(scene)
    node = labelled_node(scene, logic, candidates, shape_model, anchor_level=None)
    logic.observe(node)
    node.AddControlPoint(vtk.vtkVector3d(*spine["S1"]), "S1")  # placed and named by the user
    assert labels(node) == true_names(node, spine) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert node.GetNthControlPointLocked(index_of(node, "S1"))
    # an unnamed point is a detection to name, not a constraint
    node.RemoveNthControlPoint(index_of(node, "T11"))
    assert labels(node)[0] == "T12"
    node.AddControlPoint(vtk.vtkVector3d(*spine["T11"]), "F-1")
    assert labels(node)[0] == "T11" and not node.GetNthControlPointLocked(0)


def test_shift_up_down_and_undo(scene, shape_model, case):
    spine, candidates = case
    logic = SpineLabelLogic(scene)
    node = labelled_node(scene, logic, candidates, shape_model)
    original = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert labels(node) == original and not logic.can_undo(node)
    logic.shift_up(node)  # the paper's fix: S1 -> L5, L5 -> L4, ..., T10 -> T9
    assert labels(node) == ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    logic.shift_up(node)
    assert labels(node) == ["T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4"]
    logic.shift_down(node)
    assert labels(node) == ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    assert logic.undo(node) and labels(node)[0] == "T8"
    assert logic.undo(node) and labels(node)[0] == "T9"
    assert logic.undo(node) and labels(node) == original
    assert not logic.undo(node) and labels(node) == original  # nothing left to undo
    positions = [node.GetNthControlPointPosition(i) for i in range(len(original))]
    logic.shift_up(node)
    assert [node.GetNthControlPointPosition(i) for i in range(len(original))] == positions  # names only


def test_failed_operations_leave_the_node_unchanged(scene, shape_model, case):
    spine, candidates = case
    logic = SpineLabelLogic(scene)
    node = labelled_node(scene, logic, candidates, shape_model)
    logic.set_label(node, index_of(node, "L3"), "L3")  # lock one point
    before = snapshot(node)
    with pytest.raises(InputError, match="below S1"):
        logic.shift_down(node, include_user_set=True)  # S1 has nothing below
    with pytest.raises(InputError, match="points you set"):
        logic.shift_up(node)  # would rename the user's L3
    with pytest.raises(InputError, match="not a vertebra name"):
        logic.set_label(node, 0, "L9")
    with pytest.raises(InputError, match="no placed point"):
        logic.set_label(node, 42, "L1")
    assert snapshot(node) == before
    history = logic.can_undo(node)
    node.SetNthControlPointLocked(index_of(node, "L1"), True)
    node.SetNthControlPointLabel(index_of(node, "L1"), "L3")  # two user points named L3
    before = snapshot(node)
    with pytest.raises(InputError, match="named L3"):
        logic.relabel(node)
    assert snapshot(node) == before and logic.can_undo(node) == history


def test_foreign_output_node_is_refused_before_any_work(scene):
    volume = bridge.volume_node_from_image(scene, _tiny_image(), "Scan")
    foreign = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "My points")
    foreign.AddControlPoint(vtk.vtkVector3d(1, 2, 3), "entry")
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "A line")
    before, count = snapshot(foreign), scene.GetNumberOfNodes()
    logic = SpineLabelLogic(scene)
    with pytest.raises(InputError, match="not vertebra labels"):
        logic.run(volume, foreign)
    with pytest.raises(InputError, match="not a point list"):
        logic.run(volume, line)
    with pytest.raises(InputError, match="region"):
        logic.run(volume, None, region="thoracic")
    with pytest.raises(InputError, match="point list"):
        logic.relabel(line)
    assert snapshot(foreign) == before and scene.GetNumberOfNodes() == count


def test_points_loaded_from_mrk_json_can_be_relabelled(scene, shape_model, tmp_path):
    rng = np.random.default_rng(5)
    spine = make_spine(rng, LUMBAR)
    names = ["L1", "L2", "L3", "L4", "L5", "S1"]
    wrong = ["T12", "L1", "L2", "L3", "L4", "L5"]  # one level too high, as written by an earlier run
    points = [LabelledPoint(w, tuple(spine[n] + rng.normal(0, 1, 3)), 0.9) for n, w in zip(names, wrong)]
    path = bridge.save_node(bridge.markups_node_from_points(scene, points, "Saved"), tmp_path / "labels.mrk.json")
    fresh = slicer.vtkMRMLScene()
    node = bridge.load_node(fresh, path, "vtkMRMLMarkupsFiducialNode")
    logic = SpineLabelLogic(fresh, model=labelling_model(shape_model))  # no run here: no stored detections
    logic.set_label(node, index_of(node, "L5"), "S1")
    assert labels(node) == names and node.GetNthControlPointLocked(index_of(node, "S1"))
    bridge.save_node(node, tmp_path / "fixed.mrk.json")  # the user's point stays locked through a reload
    again = bridge.load_node(fresh, tmp_path / "fixed.mrk.json", "vtkMRMLMarkupsFiducialNode")
    assert labels(again) == names and [again.GetNthControlPointLocked(i) for i in range(6)] == [0, 0, 0, 0, 0, 1]
    fresh.Clear(True)


def test_relabel_solves_with_the_card_options_of_the_model_that_labelled_the_node(scene):
    """A six-lumbar spine: a card allowing transitional levels names L6, a strict one does not."""
    shape = fit_shape_model(training_cases(np.random.default_rng(2), LUMBAR, extra=LUMBAR6, n_extra=6))
    permissive = labelling_model(shape, labelling={"transitional_penalty": 0.0, "gap_penalty": 10.0})
    strict = labelling_model(shape, labelling={"transitional_penalty": 1000.0, "gap_penalty": 10.0})
    rng = np.random.default_rng(0)
    candidates, truth = candidates_of(rng, make_spine(rng, LUMBAR6))
    candidates[truth.index("S1")].anchor_probability = 0.9
    logic = SpineLabelLogic(scene, model=strict)  # the default, for lists no run here made
    node = bridge.markups_node_from_points(scene, [], "Vertebrae")
    logic.remember(node, candidates, permissive)
    logic.relabel(node)
    assert labels(node) == LUMBAR6  # the labelling model's options, not the logic's default
    logic.relabel(node)
    assert labels(node) == LUMBAR6  # and again: nothing changed, nothing renamed
    loaded = bridge.markups_node_from_points(scene, bridge.points_from_markups_node(node), "Loaded")
    logic.relabel(loaded)  # no model on this one: the default's strict options
    assert "L6" not in labels(loaded) and labels(loaded)[-1] == "S1"


class CommandStandIn:
    """Stands in for ``spinebrain spine-label`` (the Logic's runner is injectable): writes ``points`` to --out."""

    def __init__(self, points, info):
        self.points, self.info, self.args, self.fixed = points, info, None, None

    def __call__(self, args):
        from spinebrain.outputs import read_markups, write_markups

        self.args = args
        assert Path(args[1]).is_file()  # the exported volume
        self.fixed = read_markups(args[args.index("--fixed") + 1]) if "--fixed" in args else []
        out = Path(args[args.index("--out") + 1])
        write_markups(self.points, out)
        return _Finished([OutputFile(out, "markups", dict(self.info))])


class _Finished:
    def __init__(self, outputs):
        self.outputs, self.finished = outputs, False

    def start(self):
        return self

    def poll(self, timeout=0.0):
        self.finished = True
        return [{"event": "progress", "stage": "spine-label", "fraction": 1.0, "message": ""}]

    def cancel(self, grace_seconds=5.0):
        pass

    def result(self):
        return RunResult(RunState.SUCCEEDED, 0, self.outputs)


def test_a_background_run_replaces_the_points_and_undo_brings_back_the_earlier_run(scene):
    volume = bridge.volume_node_from_image(scene, _tiny_image(), "Scan")
    earlier = [LabelledPoint("L1", (0.0, 0.0, 30.0), 0.8), LabelledPoint("L2", (0.0, 0.0, 0.0), 0.9)]
    node = bridge.markups_node_from_points(scene, earlier, "Vertebrae")
    node.SetAttribute(MODEL_ATTRIBUTE, "spine-label-whole")
    node.SetNthControlPointLocked(0, True)  # the user's point: held fixed in the run
    before = snapshot(node)
    newer = [LabelledPoint("L1", (0.0, 0.0, 30.0), None, True), LabelledPoint("L2", (0.0, 1.0, 0.0), 0.7)]
    command = CommandStandIn(newer, {"model": "spine-label-lumbar", "region": "lumbar"})
    logic = SpineLabelLogic(scene, runner_factory=command)
    assert logic.start_labelling(volume, node, region="lumbar", device="cpu").wait() is node
    assert command.args[0] == "spine-label" and command.args[command.args.index("--region") + 1] == "lumbar"
    assert [(p.label, p.ras, p.user_set) for p in command.fixed] == [("L1", (0.0, 0.0, 30.0), True)]
    assert [p.ras for p in bridge.points_from_markups_node(node)] == [p.ras for p in newer]
    assert node.GetAttribute(MODEL_ATTRIBUTE) == "spine-label-lumbar"
    assert node.GetAttribute(REGION_ATTRIBUTE) == "lumbar"
    assert logic.undo(node)
    assert snapshot(node) == before and node.GetAttribute(MODEL_ATTRIBUTE) == "spine-label-whole"
    assert not logic.can_undo(node)


def test_run_labels_a_phantom(scene):
    pipeline = pytest.importorskip("spinebrain.spinelabel.pipeline",
                                   reason="spinebrain/spinelabel/pipeline.py (label_spine) is not written yet")
    from spinebrain.errors import ModelError
    from spinebrain_slicer.samples import load_spine_sample

    try:
        pipeline.load_spine_label_model("lumbar")
    except ModelError as error:
        pytest.skip(f"no lumbar spine-label model installed: {error}")
    sample = load_spine_sample(scene, seed=3, modality="ct", view="lumbar")
    steps = []
    logic = SpineLabelLogic(scene)
    node = logic.run(sample["volume"], None, region="lumbar", progress=lambda *update: steps.append(update))
    assert node.IsA("vtkMRMLMarkupsFiducialNode") and node.GetNumberOfControlPoints() >= 3
    assert steps and all(0.0 <= fraction <= 1.0 for _, fraction, _ in steps)
    # Detection, not naming: on generated scans the shipped model names about a third of the levels
    # right (often one level off; benchmarks/eval_spine_label_synthetic.py measures it), so the
    # Logic's wiring is checked by the points landing on body centres in order.
    centres = np.array([p.ras for p in sample["case"].points])
    found = bridge.points_from_markups_node(node)
    on_a_body = sum(np.linalg.norm(centres - np.array(p.ras), axis=1).min() < 10.0 for p in found)
    assert on_a_body >= 0.8 * len(found)
    assert logic.can_undo(node) is False and logic.relabel(node) is node  # relabel from stored detections


def _tiny_image():
    import SimpleITK as sitk

    return sitk.GetImageFromArray(np.zeros((4, 5, 6), dtype=np.int16))


def test_a_user_point_beyond_the_lumbar_model_of_a_loaded_list_is_solved_with_the_whole_spine_model(scene, caplog):
    """A list the command line wrote (lumbar model, a thoracic view it could not anchor), loaded into a fresh Logic:
    naming one point at a level the lumbar model does not label re-solves with the installed whole-spine model."""
    from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model
    from spinebrain.synth.spine import generate_spine

    try:
        lumbar, whole = (load_spine_label_model(region, device="cpu") for region in ("lumbar", "whole"))
    except Exception as error:  # noqa: BLE001 -- a checkout without the bundled packages
        pytest.skip(f"bundled SpineLabel models not installed: {error}")
    case = generate_spine(1004, modality="ct", view="thoracic")  # C7-L1 in view
    spine = {p.label: np.asarray(p.ras) for p in case.points}
    written = label_spine(case.image, lumbar).points
    node = bridge.markups_node_from_points(scene, written, "Vertebrae")
    node.SetAttribute(MODEL_ATTRIBUTE, lumbar.card.id)
    node.SetAttribute(REGION_ATTRIBUTE, "lumbar")
    truth = true_names(node, spine)
    beyond = [k for k, name in enumerate(truth) if name not in lumbar.shape_model.levels and name != "?"]
    assert beyond, truth  # the view reaches above T8, where the lumbar model names nothing
    logic = SpineLabelLogic(scene)
    logic.set_label(node, beyond[len(beyond) // 2], truth[beyond[len(beyond) // 2]])
    assert node.GetNthControlPointLocked(beyond[len(beyond) // 2])
    right = sum(a == b for a, b in zip(labels(node), true_names(node, spine)))
    assert right >= len(truth) - 1, list(zip(labels(node), true_names(node, spine)))
    assert set(labels(node)) <= set(whole.shape_model.levels)
    assert "beyond the lumbar model's levels" in caplog.text  # the user is told which model named the rest
