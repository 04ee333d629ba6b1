"""SpineSegment 2D MR vertebral-body mode: networks, instances, naming, CLI end to end, a tiny training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spinebrain.cli import main
from spinebrain.io import write_image
from spinebrain.models.network import network_class
from spinebrain.outputs import read_segmentation, write_markups
from spinebrain.points import LabelledPoint
from spinebrain.spinesegment.instances import label_values, name_instances, split_instances
from spinebrain.spinesegment.networks import ARCHITECTURES, network_spec
from spinebrain.spinesegment.slices2d import prepare_volume, stack

BUNDLED = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "spine-segment-mr-2d"


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_architecture_builds_from_its_card_entry_and_keeps_the_slice_size(architecture):
    spec = network_spec(architecture, in_channels=3)
    network = network_class(spec["architecture"])(**spec["kwargs"]).eval()
    with torch.no_grad():
        out = network(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 1, 64, 96)
    assert torch.isfinite(out).all()


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _two_boxes(bridge: bool) -> np.ndarray:
    """Two 16 mm cubes stacked along k (S-I in an LPS identity frame), optionally joined by a 3 mm bridge."""
    mask = np.zeros((56, 30, 30), np.uint8)
    mask[4:20, 7:23, 7:23] = 1
    mask[28:44, 7:23, 7:23] = 1
    if bridge:
        mask[20:28, 13:16, 13:16] = 1
    return mask


def test_touching_bodies_are_split_by_the_eroded_seeds():
    mask = _image(_two_boxes(bridge=True))
    assert sitk.GetArrayFromImage(sitk.ConnectedComponent(mask)).max() == 1  # one component before
    instances = sitk.GetArrayFromImage(split_instances(mask, erosion_mm=3, min_volume_mm3=500, min_seed_mm3=100))
    assert sorted(np.unique(instances)) == [0, 1, 2]
    upper, lower = instances[12, 15, 15], instances[36, 15, 15]
    assert upper != lower and upper > 0 and lower > 0
    assert (instances[4:20] == upper).sum() == 16 ** 3 and (instances[28:44] == lower).sum() == 16 ** 3


def test_specks_are_dropped_and_separate_bodies_stay_whole():
    array = _two_boxes(bridge=False)
    array[50:52, 0:2, 0:2] = 1  # 8 mm³ speck
    instances = sitk.GetArrayFromImage(split_instances(_image(array), min_volume_mm3=500))
    assert sorted(np.unique(instances)) == [0, 1, 2]
    assert instances[50, 0, 0] == 0


def test_smoothing_the_probability_evens_out_single_slice_jags_only_when_asked():
    from spinebrain.spinesegment.pipeline2d import DEFAULT_INFERENCE, bodies_from_probability

    probability = _two_boxes(bridge=False).astype(np.float32) * 0.9
    probability[10:14, 23:28, 15] = 0.9  # a fin one slice thick out of the upper body: slice-wise noise
    image = sitk.GetImageFromArray(probability)
    plain = bodies_from_probability(image, image, DEFAULT_INFERENCE)
    smooth = bodies_from_probability(image, image, {**DEFAULT_INFERENCE, "smooth_mm": 1.0})
    assert DEFAULT_INFERENCE["smooth_mm"] == 0.0  # off unless a card or the user sets it
    assert sitk.GetArrayFromImage(plain.label_image)[12, 26, 15] > 0
    assert sitk.GetArrayFromImage(smooth.label_image)[12, 26, 15] == 0
    assert len(smooth.vertebrae) == len(plain.vertebrae) == 2
    assert abs(smooth.vertebrae[0].volume_mm3 - 16 ** 3) < 0.15 * 16 ** 3


def test_instances_take_the_level_of_the_point_inside_else_count_from_the_top():
    instances = split_instances(_image(_two_boxes(bridge=False)), min_volume_mm3=500)
    array = sitk.GetArrayViewFromImage(instances)
    # identity direction = LPS: index k grows towards superior, so k=36 is the upper body
    upper, lower = int(array[36, 15, 15]), int(array[12, 15, 15])
    unnamed = name_instances(instances)
    assert unnamed == {upper: "Vertebra 1", lower: "Vertebra 2"}
    # RAS of voxel (i, j, k) = (-i, -j, k) here
    points = [LabelledPoint("L3", (-15.0, -15.0, 36.0)), LabelledPoint("L4", (-15.0, -15.0, 2.0))]  # L4 outside, near
    named = name_instances(instances, points)
    assert named == {upper: "L3", lower: "L4"}
    assert label_values(named) == {upper: 22, lower: 23}
    far = name_instances(instances, [LabelledPoint("L3", (-15.0, -15.0, 36.0)), LabelledPoint("L5", (200.0, 0, 0))])
    assert far == {upper: "L3", lower: "Vertebra 1"}


def test_slices_are_sagittal_with_neighbours_as_channels():
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)  # [k, j, i]
    volume = prepare_volume(_image(array))
    # working frame IPR: slices along R-L, rows A-P, columns S-I
    assert volume.array.shape == (7, 6, 5)
    assert 0.0 <= volume.array.min() and volume.array.max() <= 1.0
    assert stack(volume.array, 0, 1).shape == (3, 6, 5)
    np.testing.assert_array_equal(stack(volume.array, 0, 1)[0], volume.array[0])  # edge repeats


# -------------------------------------------------------------------------------------- CLI


def _real_slab(real_case, tmp_path, half_width: int = 10):
    """A validation MR scan cut to a slab around the spine (fast), with its reference masks."""
    image = sitk.ReadImage(str(real_case("A10_vb3_lumbar_mr/vb3_05/image.nii.gz")))
    reference = sitk.ReadImage(str(real_case("A10_vb3_lumbar_mr/vb3_05/vertebrae.nii.gz")))
    centre = int(np.nonzero(sitk.GetArrayViewFromImage(reference))[0].mean())  # numpy axis 0 = index k
    crop = slice(centre - half_width, centre + half_width)
    image, reference = image[:, :, crop], reference[:, :, crop]
    return write_image(image, tmp_path / "mr.nii.gz"), reference


def test_cli_segments_a_real_mr_scan_into_named_bodies(real_case, tmp_path, scene):
    scan, reference = _real_slab(real_case, tmp_path)
    out = tmp_path / "bodies.seg.nrrd"
    assert main(["--quiet", "spine-segment", str(scan), "--out", str(out), "--mode", "2d", "--png",
                 "--device", "cpu", "--model", str(BUNDLED)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bodies.csv", "bodies.png", "bodies.schema.csv", "bodies.seg.nrrd", "mr.nii.gz"]
    labels, names = read_segmentation(out)
    found = sitk.GetArrayViewFromImage(labels) > 0
    truth = sitk.GetArrayViewFromImage(reference) > 0
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.8, dice  # all bodies together; per-body figures come from the benchmark
    assert len(names) >= 5 and all(name.startswith("Vertebra ") for name in names.values())
    with open(tmp_path / "bodies.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == [names[v] for v in sorted(names, key=lambda v: int(v))]
    assert all(float(row["volume (mm³)"]) > 1000 for row in rows)
    from spinebrain_slicer.bridge import load_node

    node = load_node(scene, out, "vtkMRMLSegmentationNode")
    assert node.GetSegmentation().GetNumberOfSegments() == len(names)


def test_cli_names_bodies_from_spinelabel_points(real_case, tmp_path):
    scan, reference = _real_slab(real_case, tmp_path)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(reference)
    names = {20: "L1", 21: "L2", 22: "L3", 23: "L4", 24: "L5"}
    points = [LabelledPoint(names[v], tuple(np.array(stats.GetCentroid(v)) * [-1, -1, 1])) for v in stats.GetLabels()]
    labels_path = write_markups(points, tmp_path / "labels.mrk.json")
    out = tmp_path / "named.seg.nrrd"
    assert main(["--quiet", "spine-segment", str(scan), "--out", str(out), "--labels", str(labels_path),
                 "--device", "cpu", "--model", str(BUNDLED)]) == 0
    labels, seg_names = read_segmentation(out)
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(seg_names.values())
    array, ref = sitk.GetArrayViewFromImage(labels), sitk.GetArrayViewFromImage(reference)
    for value in (21, 22, 23):  # the middle bodies carry their own level (VerSe value)
        assert np.mean(array[ref == value] == value) > 0.8


def test_cli_on_a_generated_t2_phantom_with_the_bundled_model(tmp_path):
    from spinebrain.synth.spine import generate_spine

    case = generate_spine(7001, modality="t2", view="lumbar", spacing=(1.5, 1.5, 1.5), orientation="sagittal")
    k = int(round(sitk.GetArrayViewFromImage(case.image).shape[0] / 2))
    image = case.image[:, :, max(0, k - 8): k + 8]  # a 24 mm sagittal slab keeps the test quick
    scan = write_image(image, tmp_path / "phantom.nii.gz")
    out = tmp_path / "phantom.seg.nrrd"
    assert main(["--quiet", "spine-segment", str(scan), "--out", str(out), "--device", "cpu",
                 "--model", str(BUNDLED)]) == 0
    assert out.exists() and (tmp_path / "phantom.csv").exists()
    labels, names = read_segmentation(out)
    assert labels.GetSize() == image.GetSize()  # on the input's own grid
    assert all(name.startswith("Vertebra ") for name in names.values())


def test_3d_mode_refuses_a_scan_that_is_not_ct_and_writes_nothing(tmp_path, capsys):
    smooth = np.add.outer(np.arange(12.0), np.arange(12.0))[None].repeat(12, axis=0) * 30
    mr_like = smooth + np.random.default_rng(0).uniform(0, 5, smooth.shape)  # 0..665, no Hounsfield units
    scan = write_image(sitk.GetImageFromArray(mr_like.astype(np.float32)), tmp_path / "x.nii.gz")
    out = tmp_path / "o.seg.nrrd"
    assert main(["spine-segment", str(scan), "--out", str(out), "--mode", "3d"]) == 2
    assert "CT-only model" in capsys.readouterr().err  # the 3D model is a CT model (test_spinesegment_3d_*)
    assert not out.exists()


@pytest.mark.slow
def test_a_tiny_training_run_resumes_and_becomes_a_loadable_model_package(data_dir, tmp_path):
    from spinebrain.spinesegment.engine2d import train
    from spinebrain.spinesegment.package2d import export_package
    from spinebrain.spinesegment.pipeline2d import load_model_2d
    from spinebrain.spinesegment.training2d import TrainOptions

    options = TrainOptions(str(data_dir), str(tmp_path / "run"), architecture="fpn", crop=64, batch_size=2,
                           samples_per_epoch=4, max_epochs=1, limit_cases=1,
                           validation_cases=["A10_vb3_lumbar_mr/vb3_29"])
    run = train(options)
    options.max_epochs = 2  # a second call resumes from the epoch-1 checkpoint
    train(options)
    history = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    package = export_package(run, tmp_path / "models", {"measured_on": "nothing (test)"})
    model = load_model_2d(str(package), device="cpu")
    assert model.card.task == "spine-segment-2d" and model.card.network["architecture"].endswith("FPNSegNet")


def test_overview_legend_names_a_segmentation_result_and_its_incomplete_vertebrae():
    from matplotlib.figure import Figure

    from spinebrain.outputs.pictures import Panel, _draw, _panel_slice

    image = _image(np.zeros((56, 30, 30)))
    labels = _image(_two_boxes(bridge=False) * 101)
    array = sitk.GetArrayFromImage(labels)
    array[4:20][array[4:20] > 0] = 102  # the lower box is a second instance
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    names = {101: "Vertebra 1", 102: "Vertebra 2"}

    def legend(panel):
        axes = Figure().add_subplot()
        _draw(axes, panel, _panel_slice(panel))
        return [text.get_text() for text in axes.get_legend().get_texts()]

    centre = [LabelledPoint("Vertebra 1", (-15.0, -15.0, 36.0))]
    assert legend(Panel(image, centre, labels, names)) == ["result (named centres)", "reference vertebrae"]  # defaults
    result = Panel(image, centre, labels, names, labels_legend="result: one segment per vertebral body",
                   points_legend="segment names", faint_labels=frozenset({102}))
    assert legend(result) == ["segment names", "result: one segment per vertebral body",
                              "incomplete (cut by the scan's edge)"]


def test_the_span_mask_removes_ignored_voxels_from_the_loss():
    from spinebrain.spinesegment.engine2d import SpanMaskedDiceCE

    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    body = (torch.rand(2, 1, 8, 8) > 0.5).float()
    ignore = torch.zeros_like(body)
    ignore[..., 6:] = 1.0  # the last two columns lie outside the labelled span
    loss = SpanMaskedDiceCE()
    masked = loss(logits, torch.cat([body, ignore], 1))
    # whatever the network says and the label holds there, ignored voxels change nothing
    other_logits, other_body = logits.clone(), body.clone()
    other_logits[..., 6:] = 5.0
    other_body[..., 6:] = 1.0 - other_body[..., 6:]
    assert loss(other_logits, torch.cat([other_body, ignore], 1)) == pytest.approx(float(masked), abs=1e-6)
    # and with nothing ignored it is MONAI's Dice + BCE
    from monai.losses import DiceCELoss

    plain = DiceCELoss(sigmoid=True, batch=True)(logits, body)
    assert loss(logits, torch.cat([body, torch.zeros_like(body)], 1)) == pytest.approx(float(plain), abs=1e-6)
    gradient_logits = logits.clone().requires_grad_(True)
    loss(gradient_logits, torch.cat([body, ignore], 1)).backward()
    assert torch.all(gradient_logits.grad[..., 6:] == 0) and torch.any(gradient_logits.grad[..., :6] != 0)


def test_contrast_remapping_shares_one_curve_across_neighbour_slices_and_stays_in_range():
    from spinebrain.spinesegment.training2d import RandContrastRemapd

    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (3, 16, 1))
    transform = RandContrastRemapd("image", prob=1.0)
    transform.set_random_state(3)
    out = np.asarray(transform({"image": ramp})["image"])
    assert out.shape == ramp.shape and 0.0 <= out.min() and out.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(out[0], out[2])  # same curve for every channel
    assert not np.allclose(out, ramp)
    assert np.any(np.diff(out[0, 0]) < -1e-4) or np.any(np.diff(out[0, 0]) > 1e-4)
    never = RandContrastRemapd("image", prob=0.0)
    assert np.array_equal(np.asarray(never({"image": ramp})["image"]), ramp)


def test_the_ignore_channel_covers_what_lies_beyond_the_labelled_span():
    from spinebrain.spinesegment.training2d import CachedCase, TrainOptions, ignore_channel

    mask = np.zeros((4, 10, 40), np.uint8)
    mask[1:3, 2:8, 12:30] = 1
    case = CachedCase("A10_vb3_lumbar_mr/x", mask.astype(np.float16), mask, np.array([1, 2]), (12, 29))
    options = TrainOptions("data", "out", span_margin_mm=2.0)
    ignore = ignore_channel(case, 1, options)[0]
    assert ignore[:, :10].all() and ignore[:, 32:].all() and not ignore[:, 10:32].any()
    options.span_mask = False
    assert not ignore_channel(case, 1, options).any()


def test_clock_stop_times():
    import time

    from spinebrain.spinesegment.engine2d import stop_time

    assert stop_time() is None
    assert abs(stop_time(minutes=10) - (time.time() + 600)) < 5
    until = stop_time(until="00:00")
    assert time.time() < until <= time.time() + 24 * 3600
    assert stop_time(minutes=1, until="00:00") <= time.time() + 61
