"""Scoring of the 3D mode: matching by overlap, Dice, MONAI surface distance, false / missed, completeness."""

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.spinesegment.evaluation3d import score_case, summarise


def image(array):
    result = sitk.GetImageFromArray(array.astype(np.uint16))
    result.SetSpacing((1.0, 1.0, 1.0))
    return result


def test_scores_match_by_overlap_and_count_false_and_missed():
    reference = np.zeros((40, 20, 20), np.uint16)
    reference[2:12, 5:15, 5:15] = 20  # L1, 1000 mm³
    reference[14:24, 5:15, 5:15] = 21  # L2
    reference[26:36, 5:15, 5:15] = 22  # L3: missed
    predicted = np.zeros_like(reference)
    predicted[2:12, 5:15, 5:15] = 101  # exact
    predicted[15:24, 5:15, 5:15] = 102  # one slice short of L2
    predicted[37:40, 0:20, 0:20] = 103  # false: no reference there
    score = score_case("case", image(predicted), {101: True, 102: False, 103: True}, image(reference),
                       {20: "L1", 21: "L2", 22: "L3"}, {20: True, 21: True, 22: False})
    by_name = {v.name: v for v in score.vertebrae}
    assert by_name["L1"].dice == 1.0 and by_name["L1"].surface_mm == 0.0
    assert by_name["L2"].dice == pytest.approx(2 * 900 / 1900, abs=1e-4)
    assert 0 < by_name["L2"].surface_mm < 1.0
    assert not by_name["L3"].matched
    assert score.false_instances == 1 and score.missed == 1
    summary = summarise([score])
    assert summary["matched"] == 2 and summary["completeness_accuracy"] == 0.5  # L1 right, L2 wrong
    assert summary["false_per_scan"] == 1.0 and summary["missed_per_scan"] == 1.0


def test_partly_labelled_references_count_no_false_instances():
    reference = np.zeros((20, 20, 20), np.uint16)
    reference[2:12, 5:15, 5:15] = 1
    predicted = np.zeros_like(reference)
    predicted[2:12, 5:15, 5:15] = 5
    predicted[13:20, 5:15, 5:15] = 6  # an unlabelled neighbour in the reference
    score = score_case("A5-like", image(predicted), {5: False, 6: True}, image(reference), {1: "T12"}, {1: False},
                       only_labelled=True)
    assert score.false_instances == 0 and score.vertebrae[0].predicted_complete is False


def test_mask_dice_is_monai_dice_of_two_masks_and_zero_without_overlap():
    from spinebrain.spinesegment.evaluation3d import mask_dice

    a = np.zeros((10, 10, 10), bool)
    b = np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True  # 64 voxels
    b[4:8, 2:6, 2:6] = True  # 64 voxels, 32 shared
    assert mask_dice(a, b) == pytest.approx(2 * 32 / 128)
    assert mask_dice(a, ~a & (np.indices(a.shape)[0] > 7)) == 0.0
