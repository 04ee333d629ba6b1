"""``spinebrain train datalist``: the recipe from a datalist, fine-tuning checks, synthetic cases, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spinebrain.cli import build_parser
from spinebrain.errors import InputError
from spinebrain.models import ModelCard, build_network, save_model_package
from spinebrain.training.from_datalist import build_recipe
from spinebrain.training.synthetic_mix import _value_map, synthetic_cases

TINY = {"channels": [4, 8], "strides": [2], "num_res_units": 0}


@pytest.fixture
def datalist(tmp_path) -> Path:
    cases = []
    for number in range(2):
        image = sitk.Image(16, 16, 16, sitk.sitkFloat32)
        label = sitk.Image(16, 16, 16, sitk.sitkUInt8)
        label[8, 8, 8] = 1
        sitk.WriteImage(image, str(tmp_path / f"i{number}.nii.gz"))
        sitk.WriteImage(label, str(tmp_path / f"l{number}.nii.gz"))
        cases.append({"image": f"i{number}.nii.gz", "label": f"l{number}.nii.gz"})
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": cases, "labels": {"0": "background", "1": "Grey matter"},
                                "modality": {"0": "T1"}}))
    return path


def parse(*argv):
    return build_parser().parse_args(["train", "datalist", *map(str, argv)])


def start_model(tmp_path, task="brain-tissue", labels=None, spacing=(1.5, 1.5, 1.5)) -> Path:
    card = ModelCard(id="start", task=task, version="1", labels=labels or {"0": "background", "1": "Grey matter"},
                     modalities=["T1"], spacing=list(spacing), patch_size=[16, 16, 16],
                     normalisation={"method": "zscore"},
                     network={"architecture": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                                                 **TINY}})
    torch.manual_seed(0)
    return save_model_package(tmp_path / "models", build_network(card).state_dict(), card)


def test_the_recipe_takes_labels_and_channels_from_the_datalist(datalist, tmp_path):
    recipe = build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m"))
    assert recipe.labels == {"0": "background", "1": "Grey matter"} and recipe.modalities == ["T1"]
    assert recipe.spacing == [1.5, 1.5, 1.5] and recipe.patch_size == [48, 48, 48]  # the task's defaults
    with pytest.raises(InputError, match="cannot be trained from a datalist"):
        build_recipe(parse("--task", "spine-label", "--datalist", datalist, "--out", tmp_path, "--id", "m"))


def test_fine_tuning_keeps_the_models_settings_and_refuses_others(datalist, tmp_path):
    package = start_model(tmp_path)
    recipe = build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                                "--init-from", package))
    assert recipe.patch_size == [16, 16, 16] and recipe.network["kwargs"]["channels"] == [4, 8]
    with pytest.raises(InputError, match="keeps the spacing"):
        build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", package, "--spacing", 1, 1, 1))
    with pytest.raises(InputError, match="differ from those of model 'start'"):
        build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", package, "--labels", '{"0": "background", "1": "lesion"}'))
    with pytest.raises(InputError, match="cannot be fine-tuned into a brain-lesion model"):
        build_recipe(parse("--task", "brain-lesion", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", package))
    with pytest.raises(InputError, match="cannot be used"):
        build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", "no-such-model"))


def test_synthetic_cases_need_labels_the_generator_draws(tmp_path):
    assert _value_map("brain-tissue", {"0": "background", "1": "WM", "2": "grey matter"}) == {3: 1, 2: 2}
    assert set(_value_map("spine-segment", {"0": "background", "1": "vertebrae"}).values()) == {1}
    assert _value_map("spine-segment", {"0": "background", "5": "L1"}) == {20: 5}
    with pytest.raises(InputError, match="no structure named 'liver'"):
        synthetic_cases("brain-tissue", {"0": "background", "1": "liver"}, ["T1"], 1, tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.slow
def test_a_generated_spine_case_has_the_users_label_values(tmp_path):
    (entry,) = synthetic_cases("spine-segment", {"0": "background", "2": "vertebrae"}, ["CT"], 1, tmp_path)
    label = sitk.GetArrayFromImage(sitk.ReadImage(entry["label"]))
    image = sitk.ReadImage(entry["image"][0])
    assert set(np.unique(label)) == {0, 2} and image.GetSize() == label.shape[::-1]


def test_a_model_with_its_own_mask_normalisation_is_not_fine_tuned_from_a_datalist(datalist, tmp_path):
    from spinebrain.models.registry import default_bundled_dir

    if not (default_bundled_dir() / "brain-tissue-synth").is_dir():
        pytest.skip("the bundled brain-tissue-synth model is not here")
    with pytest.raises(InputError, match="within a brain mask"):
        build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", default_bundled_dir() / "brain-tissue-synth"))


# ------------------------------------------------------------------------ tiny real runs through the datalist path

def _box_cases(folder: Path, count: int, labels: int, size: int = 20) -> list[dict]:
    """Noisy scans with ``labels`` bright boxes (values 1..labels, brighter for higher values)."""
    entries = []
    for number in range(count):
        rng = np.random.default_rng(number)
        label = np.zeros((size,) * 3, np.uint8)
        for value in range(1, labels + 1):
            k, j, i = rng.integers(4, size - 8, 3)
            label[k:k + 5, j:j + 5, i:i + 5] = value
        image = sitk.GetImageFromArray((60.0 * label + rng.normal(0, 10, label.shape)).astype(np.float32))
        image.SetSpacing((1.5,) * 3)
        mask = sitk.GetImageFromArray(label)
        mask.CopyInformation(image)
        sitk.WriteImage(image, str(folder / f"case{number}.nii.gz"))
        sitk.WriteImage(mask, str(folder / f"case{number}_label.nii.gz"))
        entries.append({"name": f"case{number}", "image": f"case{number}.nii.gz", "label": f"case{number}_label.nii.gz"})
    return entries


def _train(tmp_path: Path, task: str, labels: dict, modality: str, cases: list[dict], *options) -> Path:
    from spinebrain.protocol import Progress

    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": cases[:-1], "validation": cases[-1:], "labels": labels,
                                    "modality": {"0": modality}}))
    args = parse("--task", task, "--datalist", datalist, "--out", tmp_path / "out", "--id", f"tiny-{task}",
                 "--epochs", 2, "--patch", 16, 16, 16, "--batch-size", 1, "--samples-per-case", 1, "--spacing",
                 1.5, 1.5, 1.5, "--network-kwargs", json.dumps(TINY), "--device", "cpu", "--threads", 1,
                 "--run-dir", tmp_path / "run", *options)
    args.run(args, Progress(quiet=True))
    return tmp_path / "out" / f"tiny-{task}"


@pytest.mark.slow
@pytest.mark.parametrize("task, labels, modality", [  # brain-lesion: the torchrun test below
    ("brain-tissue", {"0": "background", "1": "CSF", "2": "grey matter", "3": "white matter"}, "T1"),
])
def test_a_tiny_brain_run_writes_a_package_that_segments(tmp_path, task, labels, modality):
    from spinebrain.inference import run_inference
    from spinebrain.models import load_network

    cases = _box_cases(tmp_path, 3, len(labels) - 1)
    package = _train(tmp_path, task, labels, modality, cases)
    card, network = load_network(str(package), device="cpu")
    assert card.task == task and card.labels == labels and card.modalities == [modality]
    assert card.metrics["epochs_run"] == 2 and card.extra["cases"] == {"training": ["case0", "case1"],
                                                                      "validation": ["case2"]}
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and all(row["loss"] > 0 for row in rows)
    result = run_inference(sitk.ReadImage(str(tmp_path / "case2.nii.gz")), network, card, device="cpu")
    values = set(np.unique(sitk.GetArrayFromImage(result.labels)))
    assert result.labels.GetSize() == (20, 20, 20) and values <= {int(v) for v in labels}


@pytest.mark.slow
def test_synthetic_cases_are_generated_and_trained_on_beside_the_users(tmp_path):
    cases = _box_cases(tmp_path, 2, 1)
    package = _train(tmp_path, "spine-segment", {"0": "background", "1": "vertebrae"}, "CT", cases,
                     "--synthetic-ratio", 1, "--epochs", 1)
    card = json.loads((package / "model_card.json").read_text())
    trained = card["cases"]["training"]
    assert trained[0] == "case0" and len(trained) == 2 and trained[1].startswith("synthetic-")
    generated = sorted((tmp_path / "run" / "synthetic").iterdir())
    assert [p.name for p in generated] == [f"{trained[1]}_0.nii.gz", f"{trained[1]}_label.nii.gz"]
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(generated[1])))
    assert set(np.unique(label)) == {0, 1}  # every generated vertebra became the user's one label
    assert card["metrics"]["epochs_run"] == 1 and "2 training" in card["training_data"]


def _body_cases(folder: Path, count: int) -> list[dict]:
    """MR-like volumes with three bright 'bodies' stacked superior-inferior, labelled L3, L4, L5 (all bodies)."""
    entries = []
    for number in range(count):
        rng = np.random.default_rng(10 + number)
        label = np.zeros((30, 20, 20), np.uint8)  # (S, A, R) array order
        for value, start in enumerate((3, 12, 21), start=1):
            label[start:start + 6, 6:14, 5:15] = value
        image = sitk.GetImageFromArray((80.0 * (label > 0) + rng.normal(20, 8, label.shape)).astype(np.float32))
        image.SetSpacing((1.5, 1.5, 1.5))
        mask = sitk.GetImageFromArray(label)
        mask.CopyInformation(image)
        sitk.WriteImage(image, str(folder / f"mr{number}.nii.gz"))
        sitk.WriteImage(mask, str(folder / f"mr{number}_label.nii.gz"))
        entries.append({"name": f"mr{number}", "image": f"mr{number}.nii.gz", "label": f"mr{number}_label.nii.gz"})
    return entries


@pytest.mark.slow
def test_the_2d_body_model_trains_from_volumes_and_masks_and_fine_tunes(tmp_path):
    from spinebrain.protocol import Progress
    from spinebrain.spinesegment.pipeline2d import load_model_2d

    cases = _body_cases(tmp_path, 3)
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": cases[:2], "validation": cases[2:],
                                    "labels": {"0": "background", "1": "L3", "2": "L4", "3": "L5"}}))
    tiny_unet = json.dumps({"features": [4, 4, 8, 8, 16, 4]})
    common = ["--task", "spine-segment-2d", "--datalist", datalist, "--out", tmp_path / "out", "--epochs", 2,
              "--batch-size", 2, "--samples-per-epoch", 4, "--device", "cpu", "--threads", 1]
    args = parse(*common, "--id", "mr2d", "--patch", 32, 32, 1, "--network-kwargs", tiny_unet,
                 "--run-dir", tmp_path / "run")
    args.run(args, Progress(quiet=True))
    model = load_model_2d(str(tmp_path / "out" / "mr2d"))
    card = model.card
    assert card.task == "spine-segment-2d" and card.labels == {"0": "background", "1": "vertebral body"}
    assert card.patch_size == [32, 32, 3] and model.plane == "sagittal" and model.context == 1
    assert card.metrics["epochs_run"] == 2 and 0.0 <= card.metrics["val_dice"] <= 1.0
    assert card.extra["cases"] == {"training": ["mr0", "mr1"], "validation": ["mr2"]}
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and rows[0]["val_dice"] is not None

    tuned = parse(*common, "--id", "mr2d-tuned", "--init-from", tmp_path / "out" / "mr2d", "--epochs", 1,
                  "--run-dir", tmp_path / "run-tuned")
    tuned.run(tuned, Progress(quiet=True))
    tuned_card = json.loads((tmp_path / "out" / "mr2d-tuned" / "model_card.json").read_text())
    assert tuned_card["fine_tuned_from"]["id"] == "mr2d" and tuned_card["network"] == card.network
    with pytest.raises(InputError, match="keeps the patch size"):
        bad = parse(*common, "--id", "x", "--init-from", tmp_path / "out" / "mr2d", "--patch", 64, 64, 1)
        bad.run(bad, Progress(quiet=True))
    with pytest.raises(InputError, match="synthetic ratio to 0"):
        bad = parse(*common, "--id", "x", "--synthetic-ratio", 1)
        bad.run(bad, Progress(quiet=True))


@pytest.mark.slow
def test_a_brain_lesion_model_trains_under_torchrun_with_two_gloo_processes(tmp_path):
    """``spinebrain train datalist`` under torchrun (DDP, gloo on the CPU): one package, one report, a real lesion run."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    cases = _box_cases(tmp_path, 3, 1)
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": cases[:2], "validation": cases[2:],
                                    "labels": {"0": "background", "1": "lesion"}, "modality": {"0": "FLAIR"}}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "-m", "spinebrain", "--progress-json", "train", "datalist", "--task", "brain-lesion", "--datalist",
               str(datalist), "--out", str(tmp_path / "out"), "--id", "ddp", "--epochs", "2", "--patch", "16", "16",
               "16", "--spacing", "1.5", "1.5", "1.5", "--network-kwargs", json.dumps(TINY), "--batch-size", "1",
               "--samples-per-case", "1", "--device", "cpu", "--threads", "1", "--run-dir", str(tmp_path / "run")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}  # gloo on loopback only
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    events = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("result") == 1  # only rank 0 reports and writes
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    card = json.loads((tmp_path / "out" / "ddp" / "model_card.json").read_text())
    assert card["task"] == "brain-lesion" and card["metrics"]["epochs_run"] == 2
