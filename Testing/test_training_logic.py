"""The Training module's Logic on real MRML: cases from the scene, export, start, progress, stop, cancel,
registration and bad input; the slow tests run a tiny real training (2-4 epochs on 24^3 generated scans)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.errors import CancelledError, InputError
from spinebrain.models.registry import ModelRegistry

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from spinebrain_slicer.bridge import segmentation_node_from_labels, volume_node_from_image  # noqa: E402
from spinebrain_slicer.runner import RunState  # noqa: E402
from spinebrain_slicer.task_logic import TaskInputError  # noqa: E402
from spinebrain_slicer.training_logic import TrainingLogic, TrainingSettings, training_tasks  # noqa: E402


def box_case(seed: int, spacing=1.5, size=24):
    """A noisy scan with a bright box (label 1) somewhere inside."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size, size), np.uint8)
    k, j, i = rng.integers(8, size - 8, 3)
    label[k - 5:k + 5, j - 4:j + 4, i - 5:i + 5] = 1
    image = sitk.GetImageFromArray((100.0 * label + rng.normal(0, 20, label.shape)).astype(np.float32))
    image.SetSpacing((spacing,) * 3)
    mask = sitk.GetImageFromArray(label)
    mask.CopyInformation(image)
    return image, mask


def add_case(scene, name: str, seed: int, segment: str = "bone", kind: str = "segmentation"):
    image, mask = box_case(seed)
    volume = volume_node_from_image(scene, image, name)
    if kind == "segmentation":
        reference = segmentation_node_from_labels(scene, mask, {1: segment}, reference_volume_node=volume,
                                                  name=f"seg of {name}")
    else:
        reference = volume_node_from_image(scene, mask, f"{name}-label", class_name="vtkMRMLLabelMapVolumeNode")
    return volume, reference


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user-models"
    monkeypatch.setenv("SPINEBRAIN_MODELS_DIR", str(folder))  # the trainer subprocess sees it too
    return folder


@pytest.fixture
def logic(scene, models_dir):
    made = TrainingLogic(scene, registry=ModelRegistry(user_dir=models_dir))
    yield made
    made.release()


def settings(tmp_path, model_id="tiny", **changes) -> TrainingSettings:
    values = dict(task="spine-segment", model_id=model_id, work_folder=str(tmp_path / f"work-{model_id}"),
                  epochs=2, batch_size=2, patch=16, device="cpu", threads=1, validation_fraction=0.25)
    values.update(changes)
    return TrainingSettings(**values)


# ------------------------------------------------------------------------------------ cases and export

def test_the_registry_gives_the_module_its_tasks():
    keys = {task.key: task for task in training_tasks()}
    assert {"spine-label", "spine-segment", "spine-segment-2d", "brain-tissue", "brain-lesion"} <= set(keys)
    assert keys["spine-segment-2d"].modality == "MR" and keys["spine-label"].can_stop
    assert keys["spine-label"].reference == "points" and keys["brain-tissue"].reference == "labels"


def test_cases_are_matched_by_geometry_folder_and_name_and_missing_ones_are_reported(scene, logic):
    add_case(scene, "alpha", 0)  # the segmentation's reference geometry is the volume
    add_case(scene, "beta", 1, kind="labelmap")  # found by name: beta-label
    image, _ = box_case(2)
    volume_node_from_image(scene, image, "gamma")  # no reference at all
    delta, _ = add_case(scene, "delta", 3, kind="labelmap")
    empty = scene.GetFirstNodeByName("delta-label")
    slicer.util.updateVolumeFromArray(empty, np.zeros((24, 24, 24), np.uint8))
    epsilon = volume_node_from_image(scene, box_case(4)[0], "epsilon")
    coarse = sitk.Image(12, 12, 12, sitk.sitkUInt8)
    coarse.SetSpacing((3.0, 3.0, 3.0))
    coarse[6, 6, 6] = 1
    volume_node_from_image(scene, coarse, "epsilon-label", class_name="vtkMRMLLabelMapVolumeNode")

    cases = {case.name: case for case in logic.cases("spine-segment")}
    assert cases["alpha"].usable and cases["alpha"].matched_by == "geometry"
    assert cases["beta"].usable and cases["beta"].matched_by == "name"
    assert "No reference" in cases["gamma"].problem
    assert "empty" in cases["delta"].problem
    assert "another grid" in cases["epsilon"].problem
    resampled = {case.name: case for case in logic.cases("spine-segment", resample=True)}["epsilon"]
    assert resampled.usable and resampled.needs_resampling  # resampled on export

    logic.set_reference(epsilon, scene.GetFirstNodeByName("beta-label"))  # the user's choice wins
    chosen = {case.name: case for case in logic.cases("spine-segment")}
    assert chosen["epsilon"].matched_by == "user" and chosen["epsilon"].usable
    assert chosen["beta"].reference is None  # its label map is taken by the user's choice
    logic.set_excluded(delta, True)
    assert "delta" not in {case.name for case in logic.cases("spine-segment")}


def test_cases_in_one_subject_hierarchy_folder_belong_together(scene, logic):
    volume, reference = add_case(scene, "scan", 5, kind="labelmap")
    reference.SetName("mask")  # no name match any more
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.GetSceneItemID(), "study 1")
    for node in (volume, reference):  # Slicer's plugins add the items; slicer-core has none, so add them here
        hierarchy.CreateItem(study, node)
    (case,) = logic.cases("spine-segment")
    assert case.matched_by == "folder" and case.reference is reference


def test_export_writes_images_labels_and_a_datalist_with_one_label_set(scene, logic, tmp_path):
    for number in range(3):
        volume, segmentation = add_case(scene, f"case{number}", number, segment="Bone")
    second = add_case(scene, "case3", 3, segment="bone")[1]
    extra = segmentation_node_from_labels(scene, box_case(9)[1], {1: "disc"}, name="unused")
    assert extra is not None and second is not None
    exported = logic.export(settings(tmp_path))
    document = json.loads(exported.datalist.read_text())
    assert document["labels"] == {"0": "background", "1": "Bone"}  # names match case-insensitively
    assert document["modality"] == {"0": "CT"}
    assert len(document["training"]) == 3 and len(document["validation"]) == 1
    for entry in document["training"] + document["validation"]:
        image = sitk.ReadImage(str(exported.folder / entry["image"]))
        label = sitk.ReadImage(str(exported.folder / entry["label"]))
        assert image.GetSize() == label.GetSize() == (24, 24, 24)
        assert set(np.unique(sitk.GetArrayFromImage(label))) == {0, 1}
    with pytest.raises(InputError, match="already holds exported cases"):
        logic.export(settings(tmp_path))  # a second export never replaces the first silently


def test_export_reports_each_case_and_closing_the_scene_meanwhile_writes_nothing(scene, logic, tmp_path):
    for number in range(3):
        add_case(scene, f"case{number}", number)
    updates = []
    logic.export(settings(tmp_path, model_id="a"), on_progress=lambda *update: updates.append(update))
    assert {stage for stage, _, _ in updates} == {"export"} and updates[-1][1] == 1.0
    fractions = [fraction for _, fraction, _ in updates]
    assert fractions == sorted(fractions) and any("case1 (2 of 3)" in message for _, _, message in updates)

    # a run exports in steps (one case per poll); closing the scene meanwhile leaves nothing behind
    started = []
    logic.runner_factory = lambda args: started.append(args)
    run = logic.start(settings(tmp_path, model_id="b"), on_progress=lambda stage, fraction, message: (
        scene.Clear(0) if "(2 of 3)" in message else None))
    assert run.running and run.runner is None and run.status == "starting"  # start returned before exporting
    with pytest.raises(CancelledError):
        run.wait(timeout=60)
    assert run.closed_scene and not started and not (tmp_path / "work-b" / "data").exists()
    assert list((tmp_path / "work-b").iterdir()) == []  # no staged leftovers either


def test_a_bad_case_found_during_the_export_ends_the_run_with_nothing_written(scene, logic, tmp_path):
    add_case(scene, "good", 1)
    volume_node_from_image(scene, box_case(2)[0], "empty")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty segmentation")
    segmentation.GetSegmentation().AddEmptySegment("bone")  # a segment with no voxel: found only on export
    run = logic.start(settings(tmp_path, validation_fraction=0.0))
    with pytest.raises(TaskInputError, match="empty: the reference 'empty segmentation' is empty"):
        run.wait(timeout=60)
    assert run.state is RunState.BAD_INPUT and run.runner is None
    assert not (tmp_path / "work-tiny" / "data").exists()


def test_bad_input_is_refused_before_anything_is_written_or_started(scene, logic, tmp_path):
    started = []
    logic.runner_factory = lambda args: started.append(args)
    with pytest.raises(InputError, match="no volume to train on"):
        logic.start(settings(tmp_path))
    image, _ = box_case(0)
    volume_node_from_image(scene, image, "lonely")
    with pytest.raises(InputError, match="No case can be used: lonely: No reference"):
        logic.start(settings(tmp_path))
    add_case(scene, "a", 1)
    add_case(scene, "b", 2)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="Cannot write into the work folder"):
        logic.start(settings(tmp_path, work_folder=str(blocker / "work")))
    with pytest.raises(InputError, match="model id"):
        logic.start(settings(tmp_path, model_id="bad id/.."))
    with pytest.raises(InputError, match="cannot train 'tumour'"):
        logic.start(settings(tmp_path, task="tumour"))
    with pytest.raises(InputError, match="Every case is a validation case"):
        logic.start(settings(tmp_path, validation_cases=["a", "b", "lonely"][:2]))
    assert not started and not (tmp_path / "work-tiny" / "data").exists()


def test_the_commands_name_the_exported_data_and_the_options(scene, logic, tmp_path):
    for number in range(2):
        add_case(scene, f"c{number}", number)
    chosen = settings(tmp_path, amp=False, synthetic_ratio=0.5, init_from=None)
    exported = logic.export(chosen)
    args = logic.command(chosen, exported)
    assert args[:4] == ["train", "datalist", "--task", "spine-segment"]
    assert str(exported.datalist) in args and "--no-amp" in args and args[args.index("--patch") + 1] == "16"
    labelling = settings(tmp_path, task="spine-label", model_id="sl")
    labelling_args = logic.command(labelling, exported)
    assert labelling_args[:4] == ["train", "spine-label", "--region", "lumbar"]
    assert labelling_args[labelling_args.index("--real-validation") + 1] == str(exported.validation_points_folder)
    assert labelling_args[labelling_args.index("--run-dir") + 1] == str(exported.folder.parent / "run")


# ------------------------------------------------------------------------------------ real training runs

@pytest.fixture
def four_cases(scene):
    return [add_case(scene, f"case{number}", number) for number in range(4)]


def _first_epoch_then(action):
    def on_epoch(event):
        if event["epoch"] == 1:
            action()
    return on_epoch


@pytest.mark.slow
def test_a_tiny_run_streams_epochs_registers_its_model_and_the_model_runs(scene, logic, four_cases, tmp_path):
    progress, logs = [], []
    run = logic.start(settings(tmp_path, epochs=2), on_progress=lambda *a: progress.append(a), on_log=logs.append)
    entry = run.wait(timeout=600)
    assert [e["epoch"] for e in run.epochs] == [1, 2] and all(e["loss"] > 0 for e in run.epochs)
    assert progress and run.state is RunState.SUCCEEDED
    assert entry.card.id == "tiny" and entry.source == "user"
    listed = logic.registry.list_models(task="spine-segment")  # at once, beside the bundled 2D model
    assert [e.card.id for e in listed if e.source == "user"] == ["tiny"]
    assert logic.models_to_fine_tune("spine-segment") == ["tiny"]
    card = entry.card
    assert card.extra["cases"]["validation"] and "val_mean_dice" in card.metrics
    table = run.curves()
    assert table.GetNumberOfRows() == 2 and table.GetNodeReference("SpineBrain.CurveChart") is not None
    volume = four_cases[0][0]
    segmentation = logic.apply_model("tiny", volume)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1

    # fine-tuning keeps the label set; a case with another segment name is refused before training
    tuned = logic.run_blocking(settings(tmp_path, model_id="tiny-tuned", epochs=1, init_from="tiny"), timeout=600)
    assert tuned.card.extra["fine_tuned_from"]["id"] == "tiny"
    assert tuned.card.patch_size == card.patch_size and tuned.card.labels == card.labels
    add_case(scene, "other", 7, segment="disc")
    with pytest.raises(TaskInputError, match="not a label of the model to fine-tune"):
        logic.start(settings(tmp_path, model_id="tiny-2", init_from="tiny")).wait(timeout=60)


@pytest.mark.slow
def test_stop_ends_early_and_keeps_the_best_so_far(scene, logic, four_cases, tmp_path):
    holder = {}
    run = logic.start(settings(tmp_path, epochs=50), on_epoch=_first_epoch_then(lambda: holder["run"].stop()))
    holder["run"] = run
    entry = run.wait(timeout=600)
    assert entry.card.metrics["stopped"] == "stop requested"
    assert entry.card.metrics["epochs_run"] < 50
    assert (Path(logic.registry.user_dir) / "tiny" / "model.safetensors").is_file()


@pytest.mark.slow
def test_cancel_keeps_nothing(scene, logic, four_cases, tmp_path):
    holder = {}
    run = logic.start(settings(tmp_path, epochs=50), on_epoch=_first_epoch_then(lambda: holder["run"].cancel()))
    holder["run"] = run
    with pytest.raises(CancelledError):
        run.wait(timeout=600)
    assert run.state is RunState.CANCELLED and run.model is None
    assert [e for e in logic.registry.list_models() if e.source == "user"] == []


@pytest.mark.slow
def test_closing_the_scene_stops_the_trainer_and_registers_nothing(scene, logic, four_cases, tmp_path):
    run = logic.start(settings(tmp_path, epochs=50), on_epoch=_first_epoch_then(lambda: scene.Clear(0)))
    with pytest.raises(CancelledError):
        run.wait(timeout=600)
    assert run.closed_scene and not run.runner.running
    assert [e for e in logic.registry.list_models() if e.source == "user"] == []


@pytest.mark.slow
def test_a_labelling_model_trained_on_point_lists_is_listed_and_runs_in_spinelabel(scene, logic, tmp_path, monkeypatch):
    # the module folder on the path, as Slicer (and test_spinelabel_logic.py) does: with it there,
    # "SpineLabel" names the Qt file SpineLabel/SpineLabel.py, not the folder, so import the Lib directly
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "SpineLabel"))
    from SpineLabelLib.logic import SpineLabelLogic
    from spinebrain_slicer.samples import load_spine_sample

    volumes = []
    for number in range(2):
        sample = load_spine_sample(scene, seed=20 + number, modality="t2", view="lumbar", spacing=(2.0, 2.0, 4.0))
        sample["volume"].SetName(f"spine{number}")
        sample["markups"].SetName(f"spine{number} body centres")
        volumes.append(sample["volume"])
    cases = logic.cases("spine-label")
    assert [case.matched_by for case in cases] == ["name", "name"]
    holder = {}
    run = logic.start(settings(tmp_path, task="spine-label", model_id="sl-mine", epochs=2, synthetic_ratio=1.0),
                      on_epoch=_first_epoch_then(lambda: holder["run"].stop()))
    holder["run"] = run
    entry = run.wait(timeout=600)
    assert entry.card.task == "spine-label" and entry.card.region == "lumbar"
    assert "sl-mine" in [e.card.id for e in logic.registry.list_models(task="spine-label", region="lumbar")]
    offered = logic.models_to_fine_tune("spine-label")  # the paper detector pairs only (bundled ones too)
    assert "sl-mine" in offered and all(logic.registry.find(model).card.network["architecture"].endswith("DetectorPair")
                                        for model in offered)
    # one scene case trained, the other validated each epoch (its loss is the curve's metric); Stop kept a model
    assert "1 real annotated scans" in entry.card.training_data and entry.card.metrics["real_validation"]["cases"] == 1
    assert entry.card.metrics["stopped"] == "stop requested" and entry.card.metrics["epochs_run"] < 6
    assert run.epochs[0]["val_loss"] > 0 and run.curves().GetNumberOfRows() == len(run.epochs)
    try:  # SpineLabel loads the new model by its id; after one epoch it may find no vertebra, which it says
        points = SpineLabelLogic(scene).run(volumes[0], region="lumbar", model="sl-mine")
    except InputError as error:
        assert "No vertebrae were detected" in str(error)
    else:
        assert points.GetAttribute("SpineLabel.Model") == "sl-mine"


def test_a_label_map_on_another_grid_is_resampled_onto_its_volume_only_on_request(scene, logic, tmp_path):
    for number in range(2):
        image, mask = box_case(number)
        volume_node_from_image(scene, image, f"v{number}")
        coarse = sitk.Resample(mask, [12, 12, 12], sitk.Transform(), sitk.sitkNearestNeighbor, mask.GetOrigin(),
                               (3.0, 3.0, 3.0), mask.GetDirection(), 0, sitk.sitkUInt8)
        volume_node_from_image(scene, coarse, f"v{number}-label", class_name="vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="another grid"):
        logic.export(settings(tmp_path))
    exported = logic.export(settings(tmp_path, resample=True))
    entry = json.loads(exported.datalist.read_text())["training"][0]
    label = sitk.ReadImage(str(exported.folder / entry["label"]))
    assert label.GetSize() == (24, 24, 24) and label.GetSpacing() == (1.5, 1.5, 1.5)
    assert sitk.GetArrayFromImage(label).sum() > 0


def test_a_trainer_that_cannot_start_ends_the_run_with_the_reason(scene, logic, tmp_path):
    for number in range(2):
        add_case(scene, f"c{number}", number)

    def no_python(args):
        raise FileNotFoundError("PythonSlicer was not found")
    logic.runner_factory = no_python
    run = logic.start(settings(tmp_path))
    with pytest.raises(Exception, match="could not be started: PythonSlicer was not found"):
        run.wait(timeout=60)
    assert run.state is RunState.FAILED and not run.running
