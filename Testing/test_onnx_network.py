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
from spinebrain.models.onnx_network import (CARD_KEY, ONNX_FILE, OnnxNetwork, export_onnx, load_onnx_network,
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


def test_the_bundled_heatmap_model_runs_its_current_export_with_the_torch_answers():
    card = ModelCard.read(HEATMAP_PACKAGE)
    assert card.extra[CARD_KEY]["weights_sha256"] == card.sha256, "re-export: export_onnx(the package folder)"
    registry = ModelRegistry(BUNDLED, BUNDLED / "__none__")
    fast = load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", registry, device="cpu")
    slow = load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", registry, device="cpu", onnx=False)
    assert isinstance(fast.networks, OnnxNetwork) and isinstance(slow.networks, HeatmapDetector)
    scan = generate_spine(5, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0)).image
    ours, theirs = label_spine(scan, fast), label_spine(scan, slow)
    assert [p.label for p in ours.points] == [p.label for p in theirs.points] and len(ours.points) >= 5
    shift = max(np.linalg.norm(np.subtract(p.ras, q.ras)) for p, q in zip(ours.points, theirs.points))
    assert shift < 0.01  # millimetres


def test_an_export_is_checked_against_torch_and_recorded_in_the_card(tmp_path):
    package = _tiny_package(tmp_path)
    entry = export_onnx(package)
    card = ModelCard.read(package)
    assert card.extra[CARD_KEY] == entry and entry["weights_sha256"] == card.sha256 and entry["pad_multiple"] == 16
    assert 0.0 <= entry["max_abs_difference"] < 1e-3 and onnx_usable(package, card)
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
    blob = bytearray((changed / ONNX_FILE).read_bytes())
    blob[-100] ^= 0xFF
    (changed / ONNX_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="corrupted or tampered"):
        load_spine_label_model("lumbar", str(changed), device="cpu")


def test_the_paper_detector_pair_has_no_export(tmp_path):
    package = _copy(BUNDLED / "spine-label-cervical", tmp_path)
    with pytest.raises(ModelError, match="no ONNX export"):
        export_onnx(package)
    assert not (package / ONNX_FILE).exists()


def test_a_run_is_torch_free_only_where_every_model_has_a_current_export():
    assert runs_without_torch("lumbar", device="cpu")
    assert not runs_without_torch("lumbar", device="cuda")  # a GPU run is torch's
    assert not runs_without_torch("auto", device="cpu")  # auto also runs the cervical detector pair (torch)
    assert not runs_without_torch("lumbar", "no-such-model", device="cpu")  # the run itself reports that


def test_the_command_line_on_the_cpu_imports_neither_torch_nor_monai(tmp_path):
    scan = write_image(generate_spine(5, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0)).image,
                       tmp_path / "lumbar_ct.nii.gz")
    out = tmp_path / "points.mrk.json"
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "spinebrain", "--quiet", "spine-label", str(scan),
                           "--region", "lumbar", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M))
    assert "onnxruntime" in imported and "torch" not in imported and "monai" not in imported
    labels = [p["label"] for p in json.loads(out.read_text())["markups"][0]["controlPoints"]]
    assert labels[-2:] == ["L5", "S1"]
