"""BrainSeg module logic on real MRML (slicer-core): in-process and background runs, cancel, the model card's
required inputs, the lesion table's centroids, bad input leaving the scene as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from brainseg_support import lesion_brain, tiny_lesion_model, tiny_tissue_model

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BrainSeg"))  # as Slicer does for a module

from BrainSegLib.logic import BrainSegLogic  # noqa: E402

from spinebrain.brainseg.lesions import LESION_COLUMNS  # noqa: E402
from spinebrain.errors import CancelledError, InputError  # noqa: E402
from spinebrain_slicer import bridge  # noqa: E402
from spinebrain_slicer.task_logic import TaskInputError  # noqa: E402


@pytest.fixture(scope="module")
def case():
    return lesion_brain(seed=6)


@pytest.fixture(scope="module")
def models(tmp_path_factory, case):
    out = tmp_path_factory.mktemp("logic_models")
    return tiny_tissue_model(out, case), tiny_lesion_model(out, case)


def load_case(scene, case):
    return {name.upper(): bridge.volume_node_from_image(scene, image, f"Brain {name.upper()}")
            for name, image in case.images.items() if name in ("t1", "flair")}


def node_ids(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def segment_names(node):
    segmentation = node.GetSegmentation()
    return {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}


def test_requirements_come_from_the_lesion_card_and_are_checked_before_any_work(scene, models):
    _, lesion = models
    logic = BrainSegLogic(scene)
    assert logic.input_requirements("lesion", str(lesion)) == {"required": ["FLAIR"], "optional": ["T1", "T2"]}
    assert logic.input_requirements("tissue")["optional"] == []
    t1 = bridge.volume_node_from_image(scene, lesion_brain(seed=6).images["t1"], "T1 only")
    before = node_ids(scene)
    with pytest.raises(InputError, match="FLAIR"):
        logic.check_inputs({"T1": t1}, "both", str(lesion))
    with pytest.raises(InputError, match="FLAIR"):
        logic.run({"T1": t1}, task="lesion", lesion_model=str(lesion))
    assert node_ids(scene) == before


@pytest.mark.slow
def test_in_process_run_fills_segmentation_and_tables_and_finds_lesion_centroids(scene, case, models):
    tissue, lesion = models
    volumes = load_case(scene, case)
    logic = BrainSegLogic(scene)
    steps = []
    output = logic.run(volumes, task="both", options={"normalisation": "zscore"}, model=str(tissue),
                       lesion_model=str(lesion), device="cpu", progress=lambda *update: steps.append(update))
    assert steps
    assert segment_names(output.segmentation) == {"Grey matter", "White matter", "Cerebrospinal fluid", "Lesion"}
    labels, _ = bridge.labels_from_segmentation_node(output.segmentation, volumes["T1"])
    assert labels.GetSize() == case.images["t1"].GetSize()
    assert output.volumes.GetNumberOfRows() == 5  # GM, WM, CSF, Lesion, intracranial volume
    records = bridge.records_from_table_node(output.lesions, list(LESION_COLUMNS))
    assert sum(r["voxels"] for r in records) == int(np.sum(sitk.GetArrayViewFromImage(labels) == 4))
    if records:
        centre = logic.lesion_centroid(output.lesions, 0)
        assert centre == pytest.approx((records[0]["centroid R"], records[0]["centroid A"], records[0]["centroid S"]))
        with pytest.raises(InputError, match="no row"):
            logic.lesion_centroid(output.lesions, len(records))
    # a second run into the same nodes replaces their content (same nodes), and can be undone
    ids = node_ids(scene)
    again = logic.run(volumes, task="tissue", model=str(tissue), device="cpu", segmentation=output.segmentation,
                      volumes_table=output.volumes)
    assert again.segmentation is output.segmentation and again.lesions is None
    assert node_ids(scene) == ids
    assert "Lesion" not in segment_names(output.segmentation)
    assert logic.undo(output.segmentation) and "Lesion" in segment_names(output.segmentation)


@pytest.mark.slow
def test_background_run_cancel_leaves_the_scene_then_a_run_succeeds(scene, case, models):
    tissue, lesion = models
    volumes = load_case(scene, case)
    logic = BrainSegLogic(scene)
    before = node_ids(scene)
    run = logic.start_segmentation(volumes, task="lesion", model=str(tissue), lesion_model=str(lesion), device="cpu")
    run.cancel()
    with pytest.raises(CancelledError):
        run.wait(timeout=300)
    assert node_ids(scene) == before
    output = logic.start_segmentation(volumes, task="lesion", model=str(tissue), lesion_model=str(lesion),
                                      device="cpu").wait(timeout=600)
    assert segment_names(output.segmentation) == {"Lesion"}
    assert output.lesions is not None and output.volumes.GetNumberOfRows() == 2  # Lesion, intracranial volume


def test_bad_volume_is_refused_and_the_scene_is_unchanged(scene, models):
    tissue, _ = models
    flat = sitk.Image(40, 40, 1, sitk.sitkFloat32)
    node = bridge.volume_node_from_image(scene, flat, "Slice")
    logic = BrainSegLogic(scene)
    before = node_ids(scene)
    with pytest.raises((InputError, TaskInputError)):
        logic.run({"T1": node}, task="tissue", model=str(tissue), device="cpu")
    assert node_ids(scene) == before
