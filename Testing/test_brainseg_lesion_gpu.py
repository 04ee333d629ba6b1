"""The lesion recipe's GPU path, run here on CPU: compact maps (prep), a wall-clock budgeted run that still
writes its package, the cosine learning rate over seconds, and the unlabelled ventricle rim of the synthesis."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

DATA = Path(os.environ.get("SPINEBRAIN_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
B7 = DATA / "B7_synthseg_label_maps"
pytestmark = pytest.mark.skipif(not (B7 / "labels.json").is_file(), reason="B7 label maps not present")


@pytest.fixture(scope="module")
def small_maps(tmp_path_factory):
    """Two B7 maps cut to 72³ around the ventricles (map 17 is a default validation map), at 1 mm."""
    folder = tmp_path_factory.mktemp("b7")
    shutil.copyfile(B7 / "labels.json", folder / "labels.json")
    for number in (1, 17):
        image = sitk.ReadImage(str(B7 / f"training_seg_{number:02d}.nii.gz"), sitk.sitkInt32)
        centre = [n // 2 for n in image.GetSize()]
        sitk.WriteImage(image[tuple(slice(c - 36, c + 36) for c in centre)],
                        str(folder / f"training_seg_{number:02d}.nii.gz"))
    return folder


def test_prep_writes_compact_maps_with_zones_and_banks_split_by_map(small_maps, tmp_path):
    from spinebrain.brainseg.lesion_gpu import PREPARED_FILE, prepare, prepared_banks

    path = prepare(small_maps, tmp_path)
    assert path == tmp_path / PREPARED_FILE and (tmp_path / "labels.json").is_file()
    train, validation = prepared_banks(tmp_path, (17,))
    assert [m.name for m in train.bank.maps] == ["training_seg_01"]
    assert [m.name for m in validation.bank.maps] == ["training_seg_17"]
    for bank in (train, validation):
        indices, zones = bank.bank.maps[0].indices, bank.zones[0]
        assert indices.dtype == np.uint8 and zones.shape == indices.shape and zones.max() > 0


@pytest.mark.slow
def test_budgeted_run_stops_by_itself_and_writes_package_and_summary(small_maps, tmp_path, capsys):
    from spinebrain.brainseg.lesion_gpu import main, prepare
    from spinebrain.models import ModelCard

    prepare(small_maps, tmp_path / "data")
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--workers", "0", "--seconds", "1", "--reserve", "0", "--patch", "24", "--batch-size", "1",
                 "--steps-per-epoch", "50", "--validation-crops", "1", "--validation-maps", "17"]) == 0
    card = ModelCard.read(tmp_path / "out" / "models" / "brain-lesion-synth")
    assert card.patch_size == [24, 24, 24] and card.metrics["epochs_run"] == 1
    assert (tmp_path / "out" / "run" / "best.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "time budget reached" in printed and "samples seen" in printed


def test_learning_rate_follows_a_cosine_over_the_seconds():
    import torch

    from spinebrain.brainseg import lesion_gpu

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    budget = lesion_gpu.TimeBudget(optimizer, seconds=100.0, reserve=0.0, lr=1.0, lr_min=0.0, batch_size=1)
    budget.elapsed = lambda: 0.0
    budget.set_lr(None)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0)
    budget.elapsed = lambda: 50.0
    budget.set_lr(None)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    budget.elapsed = lambda: 500.0
    budget.set_lr(None)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_ventricle_rim_is_thin_unlabelled_and_next_to_the_ventricles(small_maps):
    from scipy import ndimage

    from spinebrain.brainseg.lesion_synthesis import LesionBank, LesionSettings, LesionSynthesiser

    bank = LesionBank.from_folder(small_maps, 1.0, ["training_seg_01.nii.gz"])
    synthesiser = LesionSynthesiser(bank, LesionSettings(patch=32, p_rim=1.0, rim_mm=(1.0, 1.0)))
    labels = bank.bank.maps[0].indices
    rim = synthesiser._rim(labels, np.random.default_rng(0))
    ventricle = bank.is_ventricle[labels]
    assert rim is not None and rim.any() and not (rim & ventricle).any()
    assert not (rim & bank.is_lesion[labels]).any()
    assert (rim <= ndimage.binary_dilation(ventricle)).all()  # one voxel wide at 1 mm
