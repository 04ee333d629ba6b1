"""The CPU fast path: a model's ONNX export, run by onnxruntime without importing torch (real torch, real ONNX).

The export must give the torch network's answers, must never run when it is not the export of the package's
weights, and a command line on the CPU must start without torch and MONAI (what makes its cold start fast).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spinebrain.errors import ModelError
from spinebrain.io import write_image
from spinebrain.models import ModelCard, ModelRegistry, default_bundled_dir, save_model_package
from spinebrain.models.onnx_network import (CARD_KEY, OnnxNetwork, OnnxParts, export_onnx, load_onnx_network,
                                            onnx_usable)
from spinebrain.spinelabel.heatmap import HeatmapDetector
from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model, runs_without_torch
from spinebrain.synth.spine import generate_spine

BUNDLED = default_bundled_dir()
HEATMAP_PACKAGE = BUNDLED / "spine-label-lumbar-heatmap"
TINY = {"features": (4, 4, 8, 8, 16, 4)}


def _copy(package: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(package, tmp_path / package.name))


def _tiny_package(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    network = HeatmapDetector(**TINY)
    card = ModelCard(id="tiny-heatmap", task="spine-label", version="1.0", labels={"0": "vertebra", "1": "anchor"},
                     modalities=["CT"], spacing=[2.0, 2.0, 2.0], patch_size=[64, 64, 3],
                     normalisation={"method": "test"}, network=network.config)
    return save_model_package(tmp_path, network.state_dict(), card)


def _both_ways(region: str, model_id: str, scan):
    """(ONNX model, torch model, their points on ``scan``), after checking they name them alike within 0.01 mm."""
    registry = ModelRegistry(BUNDLED, BUNDLED / "__none__")
    fast = load_spine_label_model(region, model_id, registry, device="cpu")
    slow = load_spine_label_model(region, model_id, registry, device="cpu", onnx=False)
    ours, theirs = label_spine(scan, fast).points, label_spine(scan, slow).points
    assert [p.label for p in ours] == [p.label for p in theirs]
    assert max(np.linalg.norm(np.subtract(p.ras, q.ras)) for p, q in zip(ours, theirs)) < 0.01  # millimetres
    return fast, slow, ours


def test_the_bundled_heatmap_model_runs_its_current_export_with_the_torch_answers():
    card = ModelCard.read(HEATMAP_PACKAGE)
    assert card.extra[CARD_KEY]["weights_sha256"] == card.sha256, "re-export: export_onnx(the package folder)"
    scan = generate_spine(5, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0)).image
    fast, slow, points = _both_ways("lumbar", "spine-label-lumbar-heatmap", scan)
    assert isinstance(fast.networks, OnnxNetwork) and isinstance(slow.networks, HeatmapDetector) and len(points) >= 5


def test_an_export_is_checked_against_torch_and_recorded_in_the_card(tmp_path, capfd):
    package = _tiny_package(tmp_path)
    entry = export_onnx(package)
    assert capfd.readouterr().out == ""  # a training run's JSON progress stream is stdout
    card = ModelCard.read(package)
    part = entry["parts"]["network"]
    assert card.extra[CARD_KEY] == entry and entry["weights_sha256"] == card.sha256 and part["pad_multiple"] == 16
    assert 0.0 <= part["max_abs_difference"] < 1e-3 and onnx_usable(package, card)
    from spinebrain.models import load_network

    _card, network = load_network(package)
    batch = np.random.default_rng(1).random((2, 3, 37, 50), dtype=np.float32)  # off the pad multiple
    with torch.inference_mode():
        expected = network(torch.from_numpy(batch)).numpy()
    got = load_onnx_network(package, card)(batch)
    assert got.shape == expected.shape == (2, 2, 37, 50)
    assert np.abs(got - expected).max() < 1e-4


def test_an_export_of_other_weights_is_not_run_and_a_changed_one_is_refused(tmp_path):
    stale = _copy(HEATMAP_PACKAGE, tmp_path / "stale")
    data = json.loads((stale / "model_card.json").read_text())
    data[CARD_KEY]["weights_sha256"] = "0" * 64  # as after a retraining without a new export
    (stale / "model_card.json").write_text(json.dumps(data))
    assert not onnx_usable(stale, ModelCard.read(stale))
    assert isinstance(load_spine_label_model("lumbar", str(stale), device="cpu").networks, HeatmapDetector)
    assert not runs_without_torch("lumbar", str(stale), device="cpu")

    changed = _copy(HEATMAP_PACKAGE, tmp_path / "changed")
    blob = bytearray((changed / "network.onnx").read_bytes())
    blob[-100] ^= 0xFF
    (changed / "network.onnx").write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="corrupted or tampered"):
        load_spine_label_model("lumbar", str(changed), device="cpu")


def test_the_paper_detector_pair_runs_its_two_exports_with_the_torch_answers():
    from spinebrain.spinelabel.detector import DetectorPair
    from spinebrain.spinelabel.patch_inference import detect_dense

    scan = generate_spine(6, modality="t2", view="cervical", spacing=(0.8, 0.8, 3.0)).image
    fast, slow, points = _both_ways("cervical", "spine-label-cervical", scan)
    assert isinstance(fast.networks, OnnxParts) and isinstance(slow.networks, DetectorPair) and len(points) >= 4
    with pytest.raises(ModelError, match="full-resolution dense map needs the torch detector"):
        detect_dense(fast.networks.vertebra, np.zeros((64, 64), np.float32), full_resolution=True)


def test_a_network_without_parts_to_export_is_refused(tmp_path):
    from monai.networks.nets import BasicUNet

    network = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4))
    card = ModelCard(id="plain-unet", task="spine-segment", version="1.0", labels={"0": "background", "1": "bone"},
                     modalities=["CT"], spacing=[1.0, 1.0, 1.0], patch_size=[64, 64, 1],
                     normalisation={"method": "test"}, network={"architecture": "BasicUNet", "kwargs": {
                         "spatial_dims": 2, "in_channels": 1, "out_channels": 2, "features": [4, 4, 8, 8, 16, 4]}})
    package = save_model_package(tmp_path, network.state_dict(), card)
    with pytest.raises(ModelError, match="no ONNX export"):
        export_onnx(package)
    assert not list(package.glob("*.onnx")) and CARD_KEY not in ModelCard.read(package).extra


def test_a_run_is_torch_free_only_where_every_model_has_a_current_export(tmp_path):
    assert runs_without_torch("lumbar", device="cpu") and runs_without_torch("auto", device="cpu")
    assert not runs_without_torch("lumbar", device="cuda")  # a GPU run is torch's
    assert not runs_without_torch("lumbar", "no-such-model", device="cpu")  # the run itself reports that
    user = _copy(BUNDLED / "spine-label-whole-heatmap", tmp_path / "user")
    registry = ModelRegistry(BUNDLED, tmp_path / "user")  # the user's package replaces the bundled one
    (user / "ribs.onnx").unlink()  # the rib classifier's export missing: its torch weights run
    assert not runs_without_torch("auto", registry=registry, device="cpu")
    (user / "network.onnx").unlink()  # an export missing a part
    assert not runs_without_torch("whole", registry=registry, device="cpu")
    assert not isinstance(load_spine_label_model("whole", registry=registry, device="cpu").networks, OnnxParts)


def test_the_command_line_on_the_cpu_imports_neither_torch_nor_monai(tmp_path):
    scan = write_image(generate_spine(5, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0)).image,
                       tmp_path / "lumbar_ct.nii.gz")
    out = tmp_path / "points.mrk.json"
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "spinebrain", "--quiet", "spine-label", str(scan),
                           "--device", "cpu", "--out", str(out)],  # region auto: the lumbar and cervical models
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M))
    assert "onnxruntime" in imported and "torch" not in imported and "monai" not in imported
    labels = [p["label"] for p in json.loads(out.read_text())["markups"][0]["controlPoints"]]
    assert labels[-2:] == ["L5", "S1"]
