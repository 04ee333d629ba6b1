"""The GPU recipe of the 3D instance model (seeds, clock schedule, a tiny clock-stopped run on CPU)."""

import json
import time

import pytest

from spinebrain.spinesegment import device3d
from spinebrain.spinesegment.device3d import DeviceOptions, lr_by_clock, training_seed
from spinebrain.spinesegment.device3d_post import tuning_score


def test_worker_seeds_are_disjoint_and_never_the_held_out_ones():
    seeds = [training_seed(worker, 4, index) for worker in range(4) for index in range(3000)]
    assert len(set(seeds)) == len(seeds)
    assert not [s for s in seeds if 5000 <= s < 10000]
    assert training_seed(1, 4, 0) == 1 and training_seed(0, 4, 1250) == 10000


def test_learning_rate_warms_up_then_falls_to_the_final_fraction(monkeypatch):
    options = DeviceOptions(data="", out="", seconds=120, reserve_seconds=20, warmup_fraction=0.1,
                            final_lr_fraction=0.05)
    now = [1000.0]
    monkeypatch.setattr(device3d.time, "time", lambda: now[0])
    factor = lr_by_clock(options, started=1000.0, run_started=1000.0)  # 100 s of schedule
    values = {}
    for second in (0, 5, 10, 55, 100, 150):
        now[0] = 1000.0 + second
        values[second] = factor(0)
    assert values[0] == pytest.approx(0.01) and values[5] == pytest.approx(0.5)
    assert values[10] == pytest.approx(1.0) and values[55] == pytest.approx(0.525)
    assert values[100] == pytest.approx(0.05) and values[150] == pytest.approx(0.05)


def test_tuning_score_counts_missed_vertebrae_as_wrong():
    all_found = {"matched": 10, "reference_vertebrae": 10, "dice_mean": 0.9, "completeness_accuracy": 1.0}
    half_found = {**all_found, "matched": 5}
    assert tuning_score(all_found) == pytest.approx(0.95)
    assert tuning_score(half_found) == pytest.approx(0.475)
    assert tuning_score({"matched": 0, "reference_vertebrae": 8, "dice_mean": None,
                         "completeness_accuracy": None}) == 0.0


@pytest.mark.slow
def test_tiny_device_run_stops_by_the_clock_and_exports(tmp_path):
    from spinebrain.spinesegment.pipeline3d import load_model_3d
    from spinebrain.spinesegment.training3d import export_package

    options = DeviceOptions(data=str(tmp_path / "no-label-map"), out=str(tmp_path / "run"), device="cpu",
                            seconds=8, reserve_seconds=2, workers=0, batch_size=2, spacing_mm=4.0, patch=16,
                            filters=4, levels=2, min_voxels=16, validation_cases=1, validation_patches=2,
                            samples_per_epoch=4, pool=2, patches_per_case=4)
    started = time.time()
    summary = device3d.train_on_device(options, run_started=started)
    run = tmp_path / "run"
    assert summary["stopped"] == "stop requested" and summary["total_samples"] > 0
    assert json.loads((run / "summary.json").read_text())["total_samples"] == summary["total_samples"]
    for name in ("best.safetensors", "final.safetensors", "resume.pt", "options.json"):
        assert (run / name).is_file(), name
    assert not (run / "STOP").exists()  # a later start would not stop at once
    package = export_package(run, tmp_path / "models", {"note": "tiny device run"}, threshold=0.7)
    model = load_model_3d(str(package))
    assert model.card.spacing == [4.0] * 3 and model.traversal.threshold == 0.7


def test_card_metrics_keep_the_bundled_card_layout():
    from spinebrain.spinesegment.device3d_post import card_metrics

    figures = {"synthetic_seeds": "9000:9006", "synthetic": {"dice_mean": 0.9},
               "real_ct": [{"case": "A6 L3 crop", "vertebrae": [
                   {"name": "L3", "reference_complete": True, "matched": True, "dice": 0.91, "surface_mm": 0.8,
                    "predicted_complete": True}]}]}
    metrics = card_metrics(figures, 0.7, (5000, 5002))
    assert metrics["synthetic_heldout"] == {"dice_mean": 0.9}
    assert metrics["real_ct"] == {"A6 L3 crop": {"L3": {"dice": 0.91, "reference_complete": True,
                                                        "predicted_complete": True}}}
    assert "5000-5001: 0.7" in metrics["threshold_chosen_on"] and "--synthetic 9000:9006" in metrics["command"]


def test_mirrored_replay_yields_each_batch_then_its_left_right_mirror():
    import torch

    from spinebrain.spinesegment.device3d import MirroredReplay

    batch = {"image": torch.arange(2 * 2 * 2 * 3.0).reshape(1, 2, 2, 2, 3),
             "label": torch.arange(3 * 2 * 2 * 3.0).reshape(1, 3, 2, 2, 3)}
    replay = MirroredReplay([batch], mirrored=True)
    assert len(replay) == 2 and len(MirroredReplay([batch], mirrored=False)) == 1
    first, second = list(replay)
    assert first is batch
    for key in batch:
        assert torch.equal(second[key][..., 0], batch[key][..., 2])
        assert torch.equal(second[key][..., 1], batch[key][..., 1])
