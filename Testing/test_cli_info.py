"""``spinebrain info``: in process through ``cli.main`` and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spinebrain import RESEARCH_NOTICE, __version__
from spinebrain.cli import main
from spinebrain.models import CARD_FILE, ModelCard, save_model_package

REPO = Path(__file__).resolve().parents[1]


def _save(folder: Path, model_id: str, task: str, region=None, version="1.0") -> Path:
    card = ModelCard(
        id=model_id, task=task, version=version, labels={"0": "background", "1": "L1"}, modalities=["T2"],
        spacing=[2.0, 2.0, 2.0], patch_size=[24, 24, 1], normalisation={"method": "minmax"},
        network={"architecture": "BasicUNet", "kwargs": {}}, region=region, validated_modalities=["CT", "T1", "T2"],
        metrics={"sensitivity": 0.991, "measured_on": "lumbar test split"},
    )
    return save_model_package(folder, {"w": torch.zeros(2)}, card)


@pytest.fixture
def model_folders(tmp_path, monkeypatch):
    user, bundled = tmp_path / "user models", tmp_path / "bundled"
    monkeypatch.setenv("SPINEBRAIN_MODELS_DIR", str(user))
    monkeypatch.setenv("SPINEBRAIN_BUNDLED_MODELS_DIR", str(bundled))
    monkeypatch.delenv("SPINEBRAIN_DEVICE", raising=False)
    _save(user, "lumbar-labels", "spine-label", region="lumbar", version="2.0")
    _save(bundled, "lumbar-labels", "spine-label", region="lumbar")
    _save(bundled, "brain-tissue-default", "brain-tissue")
    return user, bundled


def test_info_json(model_folders, capsys):
    user, bundled = model_folders
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)

    assert info["spinebrain"] == __version__ and info["research_notice"] == RESEARCH_NOTICE
    assert info["libraries"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert info["libraries"]["monai"] and info["libraries"]["SimpleITK"]
    assert info["devices"][0]["name"] == "cpu" and info["selected_device"] in [d["name"] for d in info["devices"]]
    assert info["user_models_dir"] == str(user) and info["bundled_models_dir"] == str(bundled)

    models = {m["id"]: m for m in info["models"]}
    assert set(models) == {"lumbar-labels", "brain-tissue-default"}
    lumbar = models["lumbar-labels"]
    assert (lumbar["source"], lumbar["overrides_bundled"], lumbar["version"]) == ("user", True, "2.0")
    assert (lumbar["task"], lumbar["region"]) == ("spine-label", "lumbar")
    assert lumbar["validated_modalities"] == ["CT", "T1", "T2"]
    assert lumbar["metrics_summary"] == "sensitivity 0.991 on lumbar test split"
    assert models["brain-tissue-default"]["source"] == "bundled"
    assert not lumbar["onnx"] and info["libraries"]["onnxruntime"]  # no export in these packages


def test_info_says_which_models_run_their_onnx_export(monkeypatch, capsys):
    monkeypatch.delenv("SPINEBRAIN_BUNDLED_MODELS_DIR", raising=False)
    monkeypatch.setenv("SPINEBRAIN_MODELS_DIR", "/nonexistent-user-models")
    assert main(["info", "--json"]) == 0
    models = {m["id"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert models["spine-label-lumbar-heatmap"]["onnx"] and models["spine-label-cervical"]["onnx"]
    assert not models["spine-segment-mr-2d"]["onnx"]
    assert main(["info"]) == 0
    assert "on the CPU it runs its ONNX export (onnxruntime, no torch)" in capsys.readouterr().out


def test_info_text(model_folders, capsys):
    user, _ = model_folders
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert f"SlicerSpineBrain {__version__}" in text and RESEARCH_NOTICE in text
    assert "lumbar-labels v2.0 [user (replaces the bundled one)]: spine-label, region lumbar" in text
    assert "validated on CT, T1, T2" in text
    assert "brain-tissue-default v1.0 [bundled]: brain-tissue" in text
    assert f"User model folder:    {user}" in text


def test_info_reports_problems_without_failing(model_folders, monkeypatch, capsys):
    user, _ = model_folders
    (user / "lumbar-labels" / CARD_FILE).write_text("{broken")
    monkeypatch.setenv("SPINEBRAIN_DEVICE", "quantum")
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["selected_device"] is None and "Unknown device in $SPINEBRAIN_DEVICE" in info["device_problem"]
    assert [p["path"] for p in info["model_problems"]] == [str(user / "lumbar-labels")]
    # the broken user package no longer hides the bundled one
    lumbar = [(m["id"], m["source"]) for m in info["models"] if m["id"] == "lumbar-labels"]
    assert lumbar == [("lumbar-labels", "bundled")]


def test_info_with_progress_json(model_folders, capsys):
    assert main(["--progress-json", "info"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["info", "done"]
    assert events[0]["info"]["spinebrain"] == __version__ and events[1]["code"] == 0


def test_info_subprocess_json(model_folders):
    user, _ = model_folders
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run([sys.executable, "-m", "spinebrain", "info", "--json"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    info = json.loads(completed.stdout)
    assert info["spinebrain"] == __version__
    assert info["user_models_dir"] == str(user)
    assert {m["id"] for m in info["models"]} == {"lumbar-labels", "brain-tissue-default"}
