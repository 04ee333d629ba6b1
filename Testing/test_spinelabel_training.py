"""SpineLabel training: patches from generated cases, card contents, and a tiny end-to-end run (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinebrain.errors import InputError
from spinebrain.models import ModelRegistry
from spinebrain.spinelabel import training
from spinebrain.spinelabel.detector import PATCH_SIZE
from spinebrain.spinelabel.pipeline import DetectorPair, load_spine_label_model
from spinebrain.spinelabel.slices import extract_sagittal_slab

METRIC_KEYS = {"sensitivity", "precision", "accuracy", "localisation_mean_mm", "localisation_sd_mm",
               "labeling_accuracy", "identification_rate", "measured_on"}


@pytest.fixture(scope="module")
def lumbar_cases():
    return training.generate_cases("lumbar", 2, first_seed=11)


def test_region_levels_run_in_order():
    assert training.region_levels("lumbar")[0] == "T8" and training.region_levels("lumbar")[-1] == "S1"
    assert "T13" in training.region_levels("lumbar") and "L6" in training.region_levels("lumbar")
    assert training.region_levels("cervical")[:2] == ["C1", "C2"]


def test_options_reject_unusable_settings():
    with pytest.raises(InputError, match="regions"):
        training.TrainingOptions(region="thoracic")
    with pytest.raises(InputError, match="at least 2 cases"):
        training.TrainingOptions(cases=1)


def test_case_patches_are_balanced_and_sized(lumbar_cases):
    rng = np.random.default_rng(0)
    options = training.TrainingOptions(region="lumbar", cases=2, patches_per_slice=10_000)
    v_patches, v_labels, a_patches, a_labels = training.case_patches(lumbar_cases[0], "lumbar", rng, options)
    assert v_patches.shape[1:] == (PATCH_SIZE["lumbar"],) * 2
    assert a_patches.shape[1:] == (PATCH_SIZE["lumbar-anchor"],) * 2
    positives = int(v_labels.sum())
    assert positives > 0
    # every centre pixel plus at most as many of each of the three other classes
    assert positives < len(v_labels) <= 4 * positives
    assert np.all((v_patches >= 0) & (v_patches <= 1))


def test_case_patches_respect_the_cap(lumbar_cases):
    options = training.TrainingOptions(region="lumbar", cases=2, patches_per_slice=50, slices_per_case=2)
    v_patches, _, _, _ = training.case_patches(lumbar_cases[1], "lumbar", np.random.default_rng(1), options)
    assert 0 < len(v_patches) <= 100


def _lumbar_slice(case):
    points = np.array([p.ras for p in case.points])
    r = float(np.median(points[:, 0]))
    s1 = next(p.ras for p in case.points if p.label == "S1")
    slab = extract_sagittal_slab(case.image, 2.0, 0, 1.0, center_r=r)
    step_px = float(np.median(np.abs(np.diff(np.sort(points[:, 2]))))) / 2.0
    return slab, points, np.array([[r, *s1[1:]]]), step_px


def test_crops_cut_away_the_anchor_in_some_views_and_keep_the_grid(lumbar_cases):
    case = next(c for c in lumbar_cases if any(p.label == "S1" for p in c.points))
    slab, points, s1, step_px = _lumbar_slice(case)
    rng = np.random.default_rng(5)
    views = []
    for _ in range(40):
        crop = training.crop_like_real(slab, points, s1, True, step_px, rng)
        assert crop.arrays.shape[1] >= 8 and crop.arrays.shape[1] <= slab.arrays.shape[1]
        row, col = crop.ras_to_pixel(points[0])[1:]
        assert np.allclose(crop.pixel_to_ras(0, row, col), slab.pixel_to_ras(0, *slab.ras_to_pixel(points[0])[1:]))
        views.append(training._anchor_in_view(crop, s1, step_px))
        if views[-1] == "cropped away":  # the hard negative still shows vertebrae next to the anchor
            rows = crop.ras_to_pixel(points)[:, 1]
            assert np.any((rows >= 0) & (rows < crop.arrays.shape[1]))
    assert {"inside", "cropped away"} <= set(views)


def test_anchor_view_states_on_a_hand_built_slab(lumbar_cases):
    slab, _, s1, step_px = _lumbar_slice(lumbar_cases[0] if any(p.label == "S1" for p in lumbar_cases[0].points)
                                         else lumbar_cases[1])
    row = int(round(slab.ras_to_pixel(s1)[0, 1]))
    assert training._anchor_in_view(slab, s1, step_px) == "inside"
    assert training._anchor_in_view(slab.crop(rows=slice(0, row)), s1, step_px) == "at the border"
    assert training._anchor_in_view(slab.crop(rows=slice(0, max(row - int(step_px), 1))), s1, step_px) \
        == "cropped away"
    assert training._anchor_in_view(slab, None, step_px) == "off this slice"


@pytest.mark.slow
def test_tiny_training_run_writes_a_loadable_package(tmp_path):
    options = training.TrainingOptions(region="lumbar", cases=3, validation_cases=1, epochs=1, seed=3,
                                       command="pytest tiny run", patches_per_slice=60, model_id="tiny-lumbar")
    path = training.train_spine_label(options, tmp_path)
    card = json.loads((path / "model_card.json").read_text())
    assert card["task"] == "spine-label" and card["region"] == "lumbar" and card["anchor_level"] == "S1"
    assert METRIC_KEYS <= set(card["metrics"])
    assert card["training_command"] == "pytest tiny run" and "synthetic" in card["training_data"]
    assert card["max_slice_thickness_mm"] > 0 and card["spacing"][0] == 2.0
    registry = ModelRegistry(tmp_path, tmp_path / "none")
    model = load_spine_label_model("lumbar", "tiny-lumbar", registry=registry, onnx=False)
    assert isinstance(model.networks, DetectorPair) and model.anchor_level == "S1"
    assert set(card["onnx"]["parts"]) == {"vertebra", "anchor"}  # exported: the CPU runs it without torch
    assert not isinstance(load_spine_label_model("lumbar", "tiny-lumbar", registry=registry, device="cpu").networks,
                          DetectorPair)
    assert "S1" in model.shape_model.levels and "L3" in model.shape_model.levels


def test_augmentation_varies_intensities_but_keeps_the_range():
    rng = np.random.default_rng(0)
    rows, cols = np.indices((60, 50))
    slab = np.stack([np.hypot(rows - 30, cols - 25) * -20.0 + 1000.0] * 2).astype(np.float32)  # CT-like values
    variants = [training.augment_intensities(slab, rng) for _ in range(8)]
    for variant in variants:
        assert variant.shape == slab.shape and variant.dtype == np.float32
        assert variant.min() >= 0.0 and variant.max() <= 1.0
    assert max(np.abs(a - b).mean() for a in variants for b in variants) > 0.02  # not one fixed mapping
    # the anatomy stays: every variant still peaks in the middle of the blob
    assert all(np.corrcoef(v[0].ravel(), slab[0].ravel())[0, 1] > 0.5 for v in variants)


# ------------------------------------------------------------------ the Training module's run: stop, epochs, fine-tune

def _write_real_layout(cases, folder):
    """Scans with their body centres side by side, as the Training module exports them (--real-data)."""
    from spinebrain.io import write_image
    from spinebrain.outputs.markups import write_markups

    folder.mkdir(parents=True)
    for number, case in enumerate(cases):
        write_image(case.image, folder / f"scan{number}.nii.gz")
        write_markups(case.points, folder / f"scan{number}.mrk.json", name=f"scan{number}")
    return folder


def test_fine_tuning_refuses_a_model_of_another_kind_region_or_size():
    from spinebrain.models import ModelCard
    from spinebrain.spinelabel.fine_tune import PAIR_ARCHITECTURE, check_start_card

    pair = {"architecture": PAIR_ARCHITECTURE, "kwargs": {"vertebra": {"patch": 24}, "anchor": {"patch": 32}}}

    def card(**changes):
        values = dict(id="start", task="spine-label", version="1", labels={"0": "background", "1": "centre"},
                      modalities=["T2"], spacing=[2.0, 2.0, 4.0], patch_size=[24, 24, 1], normalisation={},
                      network=pair, region="lumbar")
        values.update(changes)
        return ModelCard(**values)

    check_start_card(card(), "lumbar", 2.0, 24, 32)  # the trainer's own sizes: accepted
    with pytest.raises(InputError, match="labels the cervical spine"):
        check_start_card(card(region="cervical"), "lumbar", 2.0, 24, 32)
    with pytest.raises(InputError, match="heatmap.*detector"):
        check_start_card(card(network={"architecture": "spinebrain.spinelabel.heatmap.HeatmapDetector", "kwargs": {}}),
                         "lumbar", 2.0, 24, 32)
    with pytest.raises(InputError, match="32/32-pixel patches"):
        check_start_card(card(network={**pair, "kwargs": {"vertebra": {"patch": 32}, "anchor": {"patch": 32}}}),
                         "lumbar", 2.0, 24, 32)
    with pytest.raises(InputError, match="1.0 mm pixels"):
        check_start_card(card(spacing=[1.0, 1.0, 4.0]), "lumbar", 2.0, 24, 32)
    with pytest.raises(InputError, match="not a vertebra labelling model"):
        check_start_card(card(task="brain-tissue"), "lumbar", 2.0, 24, 32)


@pytest.mark.slow
def test_held_out_real_scans_choose_epochs_a_stop_file_ends_early_and_the_package_fine_tunes(tmp_path):
    import io

    from spinebrain.protocol import Progress

    real = training.generate_cases("lumbar", 2, first_seed=31)
    train_dir = _write_real_layout(real[:1], tmp_path / "points")
    validation_dir = _write_real_layout(real[1:], tmp_path / "points-validation")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "STOP").write_text("stop")  # each detector then ends after its first epoch
    stream = io.StringIO()
    options = training.TrainingOptions(region="lumbar", cases=2, validation_cases=1, epochs=3, seed=4,
                                       patches_per_slice=60, model_id="scene-lumbar", real_data=str(train_dir),
                                       real_validation=str(validation_dir), run_dir=str(run_dir))
    path = training.train_spine_label(options, tmp_path / "out", Progress(json_lines=True, stream=stream))
    card = json.loads((path / "model_card.json").read_text())
    assert card["metrics"]["stopped"] == "stop requested" and card["metrics"]["epochs_run"] == 2
    assert card["metrics"]["real_validation"]["cases"] == 1 and "held-out real" in \
        card["metrics"]["real_validation"]["measured_on"]
    epochs = [json.loads(line) for line in stream.getvalue().splitlines() if '"event": "epoch"' in line]
    assert [(e["epoch"], e["epochs"], e["detector"]) for e in epochs] == [(1, 8, "vertebra"), (2, 8, "anchor")]
    assert all(e["val_loss"] is not None and e["val_loss"] > 0 and e["best_epoch"] == e["epoch"] for e in epochs)
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in logged] == [1, 2]

    (run_dir / "STOP").unlink()
    tuned = training.train_spine_label(training.TrainingOptions(
        region="lumbar", cases=2, validation_cases=1, epochs=1, anchor_epochs=1, seed=5, patches_per_slice=60,
        model_id="scene-lumbar-tuned", real_data=str(train_dir), init_from=str(path)), tmp_path / "out")
    tuned_card = json.loads((tuned / "model_card.json").read_text())
    assert tuned_card["fine_tuned_from"]["id"] == "scene-lumbar" and tuned_card["metrics"]["epochs_run"] == 2
    assert tuned_card["network"] == card["network"]
    with pytest.raises(InputError, match="labels the lumbar spine"):
        training.train_spine_label(training.TrainingOptions(region="cervical", cases=2, init_from=str(path)),
                                   tmp_path / "out")
