"""3D inference block: geometry round trip, exact maps from known networks, progress, cancel, CPU fallback."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spinebrain.errors import CancelledError, InputError
from spinebrain.inference import WindowSettings, infer_volume, run_inference, slab_ranges, window_count
from spinebrain.models import ModelCard
from spinebrain.protocol import Progress


class ThresholdNet(torch.nn.Module):
    """Parameter-free two-class network: logits (-(x - t), x - t), so class 1 wherever x > t."""

    def __init__(self, threshold: float = 0.5, gain: float = 8.0):
        super().__init__()
        self.threshold, self.gain = threshold, gain

    def forward(self, x):
        score = self.gain * (x[:, :1] - self.threshold)
        return torch.cat([-score / 2, score / 2], dim=1)


def pointwise_conv(gain: float = 8.0) -> torch.nn.Module:
    """A 1x1x1 convolution with known weights: logit0 = 0, logit1 = gain * (x - 0.5)."""
    conv = torch.nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[1, 0] = gain
        conv.bias[1] = -gain / 2
    return conv


def card(spacing=(1.0, 1.0, 1.0), patch=(16, 16, 16), normalisation=None, labels=None) -> ModelCard:
    return ModelCard(id="test-net", task="brain-tissue", version="1", labels=labels or {"0": "background", "1": "x"},
                     modalities=["T1"], spacing=list(spacing), patch_size=list(patch),
                     normalisation=normalisation or {"method": "window", "low": 0.0, "high": 100.0},
                     network={"architecture": "BasicUNet", "kwargs": {}})


def ramp_image(size=(30, 26, 22), spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    """Values 0..100 varying smoothly along every axis, so every threshold cuts it somewhere."""
    k, j, i = np.meshgrid(*(np.linspace(0, 1, n) for n in size[::-1]), indexing="ij")
    image = sitk.GetImageFromArray((100 * (0.5 * i + 0.3 * j + 0.2 * k)).astype(np.float32))
    image.SetSpacing(spacing)
    return image


def oblique_sphere() -> sitk.Image:
    """An anisotropic, rotated, offset scan of a bright ball (value 100) in a dark background."""
    size, spacing = (40, 34, 14), (0.7, 0.9, 2.5)
    image = sitk.Image(size, sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin((-12.3, 7.1, 40.2))
    rotation = sitk.VersorTransform((0.3, -0.2, 0.9), 0.5)
    image.SetDirection(rotation.GetMatrix())
    centre = image.TransformContinuousIndexToPhysicalPoint([s / 2 for s in size])
    k, j, i = np.indices(size[::-1])
    points = np.stack([i, j, k], -1).reshape(-1, 3) * spacing
    world = points @ np.array(image.GetDirection()).reshape(3, 3).T + image.GetOrigin()
    inside = (np.linalg.norm(world - centre, axis=1) < 9.0).reshape(size[::-1])
    array = np.where(inside, 100, 0).astype(np.int16)
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(image)
    return result


def test_results_come_back_on_the_exact_input_grid_of_an_oblique_anisotropic_scan():
    image = oblique_sphere()
    result = run_inference(image, ThresholdNet(), card(spacing=(1.3, 1.3, 1.3), patch=(16, 16, 16)),
                           output="both", overlap=0.5)
    for output in (result.labels, *result.probabilities):
        assert output.GetSize() == image.GetSize()
        assert output.GetSpacing() == image.GetSpacing()
        assert output.GetOrigin() == image.GetOrigin()
        assert output.GetDirection() == image.GetDirection()
    assert result.labels.GetPixelID() == sitk.sitkUInt8 and result.probabilities[1].GetPixelID() == sitk.sitkFloat32
    found = sitk.GetArrayFromImage(result.labels).astype(bool)
    truth = sitk.GetArrayFromImage(image) > 50
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.85  # through a 1.3 mm grid and back, only the ball's rim may change


def test_a_known_network_gives_the_expected_map_whether_in_one_slab_or_many():
    image = ramp_image()
    values = np.clip(sitk.GetArrayFromImage(image) / 100.0, 0, 1)
    expected = 1 / (1 + np.exp(-8.0 * (values - 0.5)))
    one = run_inference(image, pointwise_conv(), card(patch=(12, 12, 8)), output="both")
    many = run_inference(image, pointwise_conv(), card(patch=(12, 12, 8)), output="both",
                         max_slab_voxels=30 * 26 * 9)  # slabs of a few k-slices with context
    assert len(slab_ranges(22, 30 * 26, 8, 0.25, 30 * 26 * 9)) > 2
    for result in (one, many):
        probability = sitk.GetArrayFromImage(result.probabilities[1])
        np.testing.assert_allclose(probability, expected, atol=2e-3)  # float16 storage
        labels = sitk.GetArrayFromImage(result.labels)
        decided = np.abs(values - 0.5) > 1e-3
        np.testing.assert_array_equal(labels[decided], (values > 0.5)[decided])


def test_slabs_give_exactly_the_whole_volume_result_of_a_network_with_context():
    """A 3x3x3 convolution sees across window borders, so slabs laid anywhere else than on MONAI's grid would differ."""
    torch.manual_seed(3)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(4, 3, 3, padding=1))
    array = np.random.default_rng(0).random((1, 20, 18, 41), dtype=np.float32)
    whole = WindowSettings((8, 8, 8), overlap=0.5, sw_batch_size=3)
    slabbed = WindowSettings((8, 8, 8), overlap=0.5, sw_batch_size=3, max_slab_voxels=20 * 18 * 14)
    assert len(slab_ranges(41, 20 * 18, 8, 0.5, slabbed.max_slab_voxels)) >= 4
    cpu = torch.device("cpu")
    expected = infer_volume(array, network, whole, cpu, keep="probabilities")["probabilities"]
    found = infer_volume(array, network, slabbed, cpu, keep="probabilities")["probabilities"]
    np.testing.assert_array_equal(found, expected)


def test_slab_cores_tile_the_volume_and_each_slab_fits_its_windows():
    for depth, roi, overlap, budget_rows in ((600, 96, 0.25, 250), (41, 8, 0.5, 14), (100, 30, 0.0, 31)):
        ranges = slab_ranges(depth, 1, roi, overlap, budget_rows)
        assert [r[2] for r in ranges][0] == 0 and ranges[-1][3] == depth
        assert all(a[3] == b[2] for a, b in zip(ranges, ranges[1:]))
        assert all(lo <= core_lo < core_hi <= hi and hi - lo >= roi for lo, hi, core_lo, core_hi in ranges)


def test_label_values_follow_the_card_in_ascending_order():
    labels = {"0": "background", "7": "lesion"}
    result = run_inference(ramp_image(), ThresholdNet(), card(patch=(16, 16, 16), labels=labels))
    assert set(np.unique(sitk.GetArrayFromImage(result.labels))) == {0, 7}


def test_progress_reports_every_window_as_json_lines():
    stream = io.StringIO()
    image = ramp_image()
    settings = card(patch=(12, 12, 8))
    run_inference(image, ThresholdNet(), settings, sw_batch_size=2, progress=Progress(json_lines=True, stream=stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    windows = [e for e in events if e["event"] == "progress" and e["stage"] == "inference"]
    total = window_count((30, 26, 22), WindowSettings(settings.patch_size))
    assert total > 4
    assert windows[-1]["message"] == f"window {total} of {total}" and windows[-1]["fraction"] == 1.0
    assert len(windows) == -(-total // 2)  # one event per batch of two windows
    fractions = [e["fraction"] for e in windows]
    assert fractions == sorted(fractions)


class CancelAfter(Progress):
    """Sets the cancel event once ``after`` windows are reported, as a Cancel button would."""

    def __init__(self, event: threading.Event, after: int):
        super().__init__(quiet=True)
        self.event, self.after, self.reported = event, after, []

    def update(self, stage, fraction, message=""):
        if stage == "inference":
            self.reported.append(message)
            if len(self.reported) == self.after:
                self.event.set()


def test_cancel_stops_between_windows_with_the_projects_error():
    event = threading.Event()
    progress = CancelAfter(event, after=2)
    network = ThresholdNet()
    calls = []
    network.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    with pytest.raises(CancelledError, match="after 2 of"):
        run_inference(ramp_image(), network, card(patch=(12, 12, 8)), sw_batch_size=1, progress=progress,
                      cancel_event=event)
    assert calls == [1, 1]  # two windows ran, the third never started


def test_out_of_memory_on_the_accelerator_runs_again_on_the_cpu(monkeypatch):
    """A fake out-of-memory error on the first forward pass; 'meta' stands in for a GPU on CPU-only machines."""
    device = "cuda" if torch.cuda.is_available() else "meta"
    network = ThresholdNet()
    real_forward, failures = network.forward, []

    def forward_failing_once(x):
        if not failures:
            failures.append(x.device.type)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(x)

    monkeypatch.setattr(network, "forward", forward_failing_once)
    stream = io.StringIO()
    image = ramp_image()
    result = run_inference(image, network, card(patch=(12, 12, 8)), device=device,
                           progress=Progress(json_lines=True, stream=stream))
    assert failures == [device] and result.device == "cpu"
    logs = [json.loads(line)["message"] for line in stream.getvalue().splitlines() if '"log"' in line]
    assert any("running on the CPU instead" in message for message in logs)
    expected = sitk.GetArrayFromImage(run_inference(image, ThresholdNet(), card(patch=(12, 12, 8))).labels)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.labels), expected)


def test_extra_channels_on_another_grid_are_brought_onto_the_model_grid():
    t1 = ramp_image()
    flair = ramp_image(size=(15, 13, 11), spacing=(2.0, 2.0, 2.0))
    normalisation = {"channels": [{"method": "window", "low": 0, "high": 100}, {"method": "none"}]}

    class SecondChannel(torch.nn.Module):
        def forward(self, x):
            assert x.shape[1] == 2
            return torch.cat([torch.zeros_like(x[:, 1:]), x[:, 1:] - 50.0], dim=1)

    result = run_inference(t1, SecondChannel(), card(patch=(12, 12, 8), normalisation=normalisation),
                           extra_channels=[flair])
    labels = sitk.GetArrayFromImage(result.labels).astype(bool)
    assert labels.any() and not labels.all()
    assert result.labels.GetSize() == t1.GetSize()


def test_a_scan_smaller_than_the_patch_is_padded_and_counted_as_one_window():
    stream = io.StringIO()
    image = ramp_image(size=(10, 9, 6))
    result = run_inference(image, ThresholdNet(), card(patch=(16, 16, 16)), progress=Progress(json_lines=True, stream=stream))
    assert result.windows == 1 and result.labels.GetSize() == image.GetSize()
    assert '"message": "window 1 of 1"' in stream.getvalue()


def test_bad_settings_get_one_clear_message():
    with pytest.raises(InputError, match="normalisation"):
        run_inference(ramp_image(), ThresholdNet(), card(normalisation={"method": "histogram"}))
    with pytest.raises(InputError, match="output"):
        run_inference(ramp_image(), ThresholdNet(), card(), output="everything")
    with pytest.raises(InputError, match="channels"):
        infer_volume(np.zeros((8, 8, 8), np.float32), ThresholdNet(), WindowSettings((4, 4, 4)), torch.device("cpu"))
