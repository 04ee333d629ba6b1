"""SpineLabel's Apply path end to end: the Logic runs a real ``spinebrain spine-label`` process on slicer-core.

Progress arrives while it runs; the user's points are held fixed through the process; a cancel
in the middle (right after the first progress event) and a run the command line refuses leave
the scene (nodes, their contents) and the files on disk exactly as they were.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SpineLabel"))  # as Slicer does for a module

import SimpleITK as sitk  # noqa: E402
from SpineLabelLib.logic import SpineLabelLogic  # noqa: E402

from spinebrain.errors import CancelledError, InputError  # noqa: E402
from spinebrain.points import LabelledPoint  # noqa: E402
from spinebrain_slicer import bridge  # noqa: E402
from spinebrain_slicer.runner import RunState  # noqa: E402
from spinebrain_slicer.task_logic import TaskError  # noqa: E402


pytestmark = pytest.mark.usefixtures("spine_label_models")  # skipped where no model is installed


def scene_state(scene) -> list:
    """Each node's ID, class, name, attributes and content (markups points, volume voxels)."""
    state = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        content = None
        if node.IsA("vtkMRMLMarkupsNode"):
            content = [(node.GetNthControlPointLabel(k), tuple(node.GetNthControlPointPosition(k)),
                        node.GetNthControlPointLocked(k), node.GetNthControlPointDescription(k))
                       for k in range(node.GetNumberOfControlPoints())]
        elif node.IsA("vtkMRMLScalarVolumeNode"):
            content = hashlib.sha256(slicer.util.arrayFromVolume(node).tobytes()).hexdigest()
        attributes = {name: node.GetAttribute(name) for name in node.GetAttributeNames() or ()}
        state.append((node.GetID(), node.GetClassName(), node.GetName(), str(attributes), str(content)))
    return state


def files_state(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def noise_volume(scene):
    """A noise volume 19 mm along the spine: too short for any SpineLabel model."""
    noise = np.random.default_rng(0).integers(-1000, 1000, (20, 40, 40)).astype(np.int16)
    return bridge.volume_node_from_image(scene, sitk.GetImageFromArray(noise), "Short scan")


def earlier_labels(scene, volume, tmp_path):
    """An output list from an earlier run, saved next to the volume (so files can be compared too)."""
    points = [LabelledPoint(name, (0.0, 0.0, 40.0 * k), 0.9) for k, name in enumerate(["L3", "L2", "L1"])]
    node = bridge.markups_node_from_points(scene, points, "Earlier vertebrae")
    bridge.save_node(volume, tmp_path / "scan.nrrd")
    bridge.save_node(node, tmp_path / "earlier.mrk.json")
    return node


@pytest.mark.slow
def test_apply_runs_the_command_streams_progress_and_holds_the_users_point(scene, lumbar_ct_phantom):
    volume = bridge.load_node(scene, lumbar_ct_phantom, "vtkMRMLScalarVolumeNode")
    logic = SpineLabelLogic(scene)
    steps, logs = [], []
    run = logic.start_labelling(volume, region="lumbar", on_progress=lambda *s: steps.append(s),
                                on_log=logs.append)
    node = run.wait()
    assert run.state is RunState.SUCCEEDED and not run.workdir.exists()
    assert [s for s in steps if s[0] == "spine-label"] and all(0.0 <= s[1] <= 1.0 for s in steps)
    assert any("spine-label-lumbar" in line for line in logs)
    assert node.GetNumberOfControlPoints() >= 3 and not logic.can_undo(node)  # a new node: nothing to undo

    names = [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())]
    logic.set_label(node, 1, names[1])  # the user confirms one label: it is locked
    position = node.GetNthControlPointPosition(1)
    before = scene_state(scene)
    logic.start_labelling(volume, node, region="lumbar").wait()  # --fixed through the process
    kept = [i for i in range(node.GetNumberOfControlPoints()) if node.GetNthControlPointLocked(i)]
    assert len(kept) == 1 and node.GetNthControlPointLabel(kept[0]) == names[1]
    assert np.allclose(node.GetNthControlPointPosition(kept[0]), position)
    assert logic.undo(node) and scene_state(scene) == before


@pytest.mark.slow
def test_cancel_after_the_first_progress_event_leaves_scene_and_files_unchanged(scene, tmp_path):
    volume = noise_volume(scene)  # cancelled while the models load: any volume will do
    output = earlier_labels(scene, volume, tmp_path)
    scene_before, files_before = scene_state(scene), files_state(tmp_path)
    run = SpineLabelLogic(scene).start_labelling(volume, output)
    events = []
    while not any(e.get("event") == "progress" for e in events) and not run.finished:
        events += run.poll(0.05)
    run.cancel()
    with pytest.raises(CancelledError):
        run.wait()
    assert run.state is RunState.CANCELLED and run.result.exit_code == 3  # the CLI's cancelled code
    assert scene_state(scene) == scene_before and files_state(tmp_path) == files_before
    assert not run.workdir.exists()


@pytest.mark.slow
def test_a_volume_the_command_refuses_changes_nothing_and_reports_its_message(scene, tmp_path):
    volume = noise_volume(scene)
    output = earlier_labels(scene, volume, tmp_path)
    scene_before, files_before = scene_state(scene), files_state(tmp_path)
    logs = []
    run = SpineLabelLogic(scene).start_labelling(volume, output, region="lumbar", on_log=logs.append)
    with pytest.raises(TaskError, match="covers only 19 mm along the spine") as error:
        run.wait()
    assert error.value.state is RunState.BAD_INPUT and run.result.exit_code == 2
    assert isinstance(error.value, InputError)  # bad input, whichever way in (process or in process)
    assert logs[-1] == str(error.value)  # the message is also in the log pane
    assert scene_state(scene) == scene_before and files_state(tmp_path) == files_before


def test_in_process_runs_end_the_same_way(scene, tmp_path, lumbar_ct_phantom):
    """The console's path (labelling on a worker thread): cancel and refusal also change nothing."""
    volume = bridge.load_node(scene, lumbar_ct_phantom, "vtkMRMLScalarVolumeNode")
    short = noise_volume(scene)
    output = earlier_labels(scene, short, tmp_path)
    scene_before, files_before = scene_state(scene), files_state(tmp_path)
    logic = SpineLabelLogic(scene)
    run = logic.start_labelling(volume, output, region="lumbar", in_process=True)
    run.cancel()  # while the model loads: the work stops at its first progress report
    with pytest.raises(CancelledError):
        run.wait()
    with pytest.raises(TaskError, match="covers only 19 mm along the spine"):
        logic.start_labelling(short, output, region="lumbar", in_process=True).wait()
    assert scene_state(scene) == scene_before and files_state(tmp_path) == files_before
