"""The 3D mode's pipeline on a CT phantom with a rule-based predictor (no trained weights needed).

The phantom holds four bone boxes (700 HU) stacked along the spine in soft tissue, the top one cut
by the scan's end. The stand-in predictor does on the image what the network is trained to do:
it returns the highest bright component of the patch that is not in memory, complete when it
touches neither the patch border nor the outside of the scan. Everything else is the real
pipeline: CT check, model grid, traversal, back to the scan grid, refinement, naming, files.
"""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from spinebrain.errors import InputError
from spinebrain.geometry import index_to_ras
from spinebrain.outputs import read_segmentation
from spinebrain.points import LabelledPoint
from spinebrain.spinesegment import pipeline3d
from spinebrain.spinesegment.training3d import card_for

BOXES_Z = [(62, 74), (45, 57), (28, 40), (11, 23)]  # top first; the first is cut at z = 70 (scan end)


def phantom() -> sitk.Image:
    array = np.full((70, 40, 40), -100, np.int16)  # [z, y, x], 2 mm voxels
    array[:, :3, :3] = -1000  # some air, as every CT has
    for lo, hi in BOXES_Z:
        array[lo:hi, 10:30, 10:30] = 700
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin((-40.0, -40.0, -70.0))
    return image


class BrightComponentModel(pipeline3d.Model3D):
    def predict(self, image, memory):
        bright = (image > 0.6) & (memory < 0.5)
        labels, count = ndimage.label(bright)
        if count == 0:
            return np.zeros(image.shape, np.float32), 0.0
        tops = ndimage.maximum(np.arange(image.shape[0])[:, None, None] * np.ones(image.shape), labels,
                               range(1, count + 1))
        component = labels == (int(np.argmax(tops)) + 1)
        faces = np.zeros(image.shape, bool)
        faces[[0, -1]] = faces[:, [0, -1]] = faces[:, :, [0, -1]] = True
        outside_scan = ndimage.binary_dilation(image == 0.0) & ~(image == 0.0)  # next to padding
        complete = not (component & (faces | outside_scan)).any()
        return component.astype(np.float32), float(complete)


@pytest.fixture(scope="module")
def model():
    options = {"patch": 32, "spacing_mm": 4.0, "filters": 4, "levels": 2, "dropout": 0.0, "min_voxels": 16}
    return BrightComponentModel(card_for(options, {}), network=None, device="cpu")


def boxes_reference(image):
    reference = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    for number, (lo, hi) in enumerate(BOXES_Z, start=1):
        reference[lo:hi, 10:30, 10:30] = number
    return reference


def test_segments_every_box_top_down_with_completeness(model):
    image = phantom()
    result = pipeline3d.segment_vertebrae(image, model)
    assert [v.name for v in result.vertebrae] == ["Vertebra 1", "Vertebra 2", "Vertebra 3", "Vertebra 4"]
    assert [v.complete for v in result.vertebrae] == [False, True, True, True]
    labels = sitk.GetArrayFromImage(result.label_image)
    reference = boxes_reference(image)
    for number, vertebra in enumerate(result.vertebrae, start=1):
        mask, box = labels == vertebra.value, reference == number
        dice = 2 * (mask & box).sum() / (mask.sum() + box.sum())
        assert dice > 0.88, (vertebra.name, dice)  # 4 mm model grid on 2 mm boxes: about a voxel off at faces
    assert result.steps["search"] >= 1 and result.steps["reanalyse"] == 4


def test_bottom_up_names_from_the_bottom(model):
    result = pipeline3d.segment_vertebrae(phantom(), model, direction="up")
    by_name = {v.name: v for v in result.vertebrae}
    assert by_name["Vertebra 1"].centroid_ras[2] < by_name["Vertebra 4"].centroid_ras[2]
    assert sum(v.complete for v in result.vertebrae) == 3


def test_labelled_points_name_the_instances_and_start_the_search(model):
    image = phantom()
    points = [LabelledPoint(name, tuple(index_to_ras(image, (20, 20, (lo + hi) / 2))))
              for name, (lo, hi) in zip(["T12", "L1", "L2", "L3"], BOXES_Z)]
    plain = pipeline3d.segment_vertebrae(image, model)
    named = pipeline3d.segment_vertebrae(image, model, points)
    assert [v.name for v in named.vertebrae] == ["T12", "L1", "L2", "L3"]
    assert [v.value for v in named.vertebrae] == [19, 20, 21, 22]  # VerSe values
    assert named.steps["search"] <= plain.steps["search"]


def test_outputs_carry_segment_names_and_the_table(model, tmp_path):
    image = phantom()
    result = pipeline3d.segment_vertebrae(image, model)
    written = pipeline3d.write_results(image, result, tmp_path / "case.seg.nrrd", tmp_path / "case.png")
    assert {p.name for p in written} >= {"case.seg.nrrd", "case.csv", "case.png"}
    labels, names = read_segmentation(tmp_path / "case.seg.nrrd")
    assert sorted(names.values()) == ["Vertebra 1", "Vertebra 2", "Vertebra 3", "Vertebra 4"]
    table = (tmp_path / "case.csv").read_text(encoding="utf-8")
    assert "completeness probability" in table and "Vertebra 1" in table


def test_mr_is_refused_by_the_ct_model(model):
    mr = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 900, (30, 30, 30)).astype(np.float32))
    with pytest.raises(InputError, match="CT-only model"):
        pipeline3d.segment_vertebrae(mr, model)


def test_a_ct_without_bone_is_refused_with_one_sentence(model):
    array = np.full((40, 40, 40), -100, np.int16)
    array[0] = -1000
    array[-1, 0, 0] = 300  # a lone bright voxel: no spine
    with pytest.raises(InputError, match="shows no bone"):
        pipeline3d.segment_vertebrae(sitk.GetImageFromArray(array), model)


def test_bone_the_predictor_does_not_take_gives_an_empty_result(model):
    array = np.full((40, 40, 40), -100, np.int16)
    array[0] = -1000
    array[10:30, 10:30, 10:30] = 150  # dense tissue, under the phantom model's bone threshold
    array[20, 20, 20:30] = 400  # a thin bright line: too small for a fragment
    array[5:14, 5:14, 5:14] = 400  # 729 mm³ of bone: under n_min (1000 mm³)
    image = sitk.GetImageFromArray(array)
    result = pipeline3d.segment_vertebrae(image, model)
    assert result.vertebrae == [] and not sitk.GetArrayViewFromImage(result.label_image).any()


def test_refinement_peels_soft_tissue_off_the_surface_only():
    hu = np.full((20, 20, 20), -50, np.int16)
    hu[5:15, 5:15, 5:15] = 600  # cortex
    hu[7:13, 7:13, 7:13] = 100  # soft cancellous core, under 200 HU
    image = sitk.GetImageFromArray(hu)
    labels = np.zeros(hu.shape, np.uint16)
    labels[4:16, 4:16, 4:16] = 1  # one voxel too big all round
    refined = sitk.GetArrayFromImage(pipeline3d.refine_on_ct(sitk.GetImageFromArray(labels), image, grow_mm=0.0,
                                                             peel_layers=3))
    np.testing.assert_array_equal(refined == 1, hu >= 100)  # the shell went, the soft core stayed


def test_command_line_runs_the_bundled_ct_model_on_a_phantom(tmp_path):
    """From the files a fresh clone has: the bundled model, the CLI, the three outputs (quality not judged here)."""
    from spinebrain.cli import main
    from spinebrain.io import write_image

    clean = phantom()
    noisy = sitk.GetArrayFromImage(clean) + np.random.default_rng(1).normal(0, 20, (70, 40, 40)).astype(np.int16)
    image = sitk.GetImageFromArray(noisy.astype(np.int16))  # a scan, not a 3-value label map
    image.CopyInformation(clean)
    scan = write_image(image, tmp_path / "phantom.nii.gz")
    out = tmp_path / "phantom.seg.nrrd"
    assert main(["--quiet", "spine-segment", str(scan), "--mode", "3d", "--direction", "up", "--out", str(out),
                 "--png", "--device", "cpu"]) == 0
    assert out.exists() and (tmp_path / "phantom.csv").exists() and (tmp_path / "phantom.png").exists()
    labels, names = read_segmentation(out)
    assert labels.GetSize() == (40, 40, 70)  # on the scan's own grid
    assert all(name.startswith("Vertebra ") for name in names.values())
