"""The 3D instance model's sampler and a tiny training run on the shared engine (real MONAI, real files)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.spinesegment.data3d import cached_cases, load_case, prepare_case, save_case
from spinebrain.spinesegment.sampler3d import PatchSampler, SamplerSettings, choose_target, is_complete


def box_case(name="box", cut_top=False):
    """Three bone boxes along z (VerSe L1-L3 labels), on a 4 mm-friendly 2 mm grid."""
    hu = np.full((80, 40, 40), -100, np.int16)
    hu[:, :2, :2] = -1000
    labels = np.zeros(hu.shape, np.uint8)
    for value, lo in ((20, 55), (21, 33), (22, 11)):  # L1 on top
        hu[lo:lo + 14, 10:30, 10:30] = 700
        labels[lo:lo + 14, 10:30, 10:30] = value
    image, label_image = sitk.GetImageFromArray(hu), sitk.GetImageFromArray(labels)
    for im in (image, label_image):
        im.SetSpacing((2.0, 2.0, 2.0))
    names = {20: "L1", 21: "L2", 22: "L3"}
    return prepare_case(name, image, label_image, names, {20: not cut_top, 21: True, 22: True}, 4.0)


def test_prepared_case_ranks_run_cranial_to_caudal():
    case = box_case()
    assert case.names == ["L1", "L2", "L3"]
    top_z = [np.argwhere(case.ranks == r)[:, 0].max() for r in (1, 2, 3)]
    assert top_z[0] > top_z[1] > top_z[2]  # axis 0 runs inferior -> superior, rank 1 is the highest


def test_target_is_the_first_vertebra_not_in_memory_and_completeness_follows_the_3_percent_rule():
    case = box_case()
    order = [1, 2, 3]
    assert choose_target(case.ranks, set(), order, 16) == 1
    assert choose_target(case.ranks, {1}, order, 16) == 2
    assert choose_target(case.ranks, {1}, order[::-1], 16) == 3  # bottom-up
    voxels = int(case.voxels[1])
    assert is_complete(case, 2, voxels) and is_complete(case, 2, int(np.ceil(0.97 * voxels)))
    assert not is_complete(case, 2, int(0.96 * voxels))
    partial = box_case(cut_top=True)
    assert not is_complete(partial, 1, int(partial.voxels[0]))  # marked partial in the scan


def test_samples_have_the_loss_layout(tmp_path):
    sampler = PatchSampler(SamplerSettings(patch=16, min_voxels=8), np.random.default_rng(3))
    case = box_case()
    for _ in range(8):
        sample = sampler.sample(case)
        assert sample["image"].shape == (2, 16, 16, 16) and sample["label"].shape == (3, 16, 16, 16)
        target, weights, complete = sample["label"]
        assert set(np.unique(target)) <= {0.0, 1.0} and weights.min() >= 1.0
        assert np.all(complete == complete.flat[0])
        assert not (target.astype(bool) & (sample["image"][1] > 0.5)).any()  # never a vertebra in memory
    save_case(case, tmp_path)
    again = load_case(cached_cases(tmp_path)[0])
    np.testing.assert_array_equal(again.ranks, case.ranks)


def test_traversal_score_is_one_for_a_perfect_predictor_and_counts_misses_and_false_instances():
    from spinebrain.spinesegment.training3d import traversal_score
    from spinebrain.spinesegment.traversal import TraversalSettings

    case = box_case()  # on the 4 mm grid: ranks 1-3 as image values stand in for a perfect network's view
    case.image = case.ranks.astype(np.float32)
    settings = TraversalSettings(patch=16, n_min=8, threshold=0.5)
    totals = np.bincount(case.ranks.ravel())

    def perfect(image, memory):  # the first vertebra from the top of the patch that is not in memory
        ranks = np.rint(image).astype(int)
        for rank in range(1, len(totals)):
            target = (ranks == rank) & (memory < 0.5)
            if target.sum() >= settings.n_min:
                return target.astype(np.float32), float(target.sum() == totals[rank])
        return np.zeros(image.shape, np.float32), 0.0

    assert traversal_score(perfect, [case], settings) == {"traversal_dice": 1.0, "false_per_case": 0.0}

    def blind(image, memory):
        return np.zeros(image.shape, np.float32), 0.0

    assert traversal_score(blind, [case], settings)["traversal_dice"] == 0.0


@pytest.mark.slow
def test_tiny_training_run_writes_a_loadable_package(tmp_path):
    from spinebrain.spinesegment.pipeline3d import load_model_3d, segment_vertebrae
    from spinebrain.spinesegment.training3d import Train3DOptions, export_package, train

    cache = tmp_path / "cache"
    save_case(box_case("train_a"), cache)
    save_case(box_case("val_a", cut_top=True), cache)
    options = Train3DOptions(str(cache), str(tmp_path / "run"), spacing_mm=4.0, patch=16, filters=4, levels=2,
                             min_voxels=8, batch_size=2, samples_per_epoch=4, validation_patches=2, max_epochs=2,
                             traversal_every=1, fp_weight=0.5)
    assert train(options).is_file()
    scores = [json.loads(line) for line in (tmp_path / "run" / "traversal.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in scores] == [1, 2] and all(0.0 <= s["traversal_dice"] <= 1.0 for s in scores)
    assert (tmp_path / "run" / "best_traversal.safetensors").is_file()
    package = export_package(tmp_path / "run", tmp_path / "models", {"note": "tiny test run"})
    model = load_model_3d(str(package))
    assert model.card.task == "spine-segment-3d" and model.card.modalities == ["CT"]
    assert model.card.extra["loss"]["lambda"] == 0.5  # the card records the loss the run used
    hu = np.full((40, 40, 40), -100, np.int16)
    hu[0] = -1000
    hu[10:30, 12:28, 12:28] = 700
    result = segment_vertebrae(sitk.GetImageFromArray(hu), model)  # runs end to end (quality not judged)
    assert result.label_image.GetSize() == (40, 40, 40)


@pytest.mark.slow
def test_train_command_in_3d_mode_uses_a_prepared_cache(tmp_path):
    from spinebrain.cli import main

    cache = tmp_path / "cache"
    save_case(box_case("train_a"), cache)
    run = tmp_path / "run"
    assert main(["--quiet", "train", "spine-segment", "--mode", "3d", "--out", str(run), "--cache", str(cache),
                 "--synthetic", "0:0", "--validation-cases", "0", "--epochs", "1", "--samples", "2",
                 "--patch", "16", "--filters", "4", "--levels", "2"]) == 0
    assert (run / "package" / "spine-segment-ct-3d" / "model_card.json").is_file()
