"""SpineLabel evaluation: hand-computed counts, and the real VerSe sub-verse004 label map."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.anatomy import vertebra_name
from spinebrain.errors import InputError
from spinebrain.geometry import index_to_ras
from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.metrics import aggregate, evaluate_points, label_at, reference_centroids
from spinebrain.spinelabel.operations import shift_up

VERSE = "A8_verse_sub-verse004_labels_only"


def P(label, ras):
    return LabelledPoint(label, tuple(float(v) for v in ras))


REFERENCE = [P(name, (0, 0, -30 * k)) for k, name in enumerate(["L1", "L2", "L3", "L4", "L5", "S1"])]
PREDICTED = [
    P("L1", (3, 4, 0)),  # inside L1, 5 mm off, right name
    P("L3", (0, 0, -32)),  # inside L2, 2 mm off, wrong name
    P("L2", (0, 0, -35)),  # second point inside L2 (farther): false positive, though VerSe calls L2 identified
    P("L4", (50, 0, -60)),  # outside every vertebra
    P("L4", (0, 0, -90)),  # exact L4
]  # L3 and L5 missed; S1 missed but only partly visible


def test_hand_computed_case():
    r = evaluate_points(PREDICTED, ref_points=REFERENCE, ref_partial={"S1"})
    assert (r["tp"], r["fp"], r["fn"]) == (3, 2, 2)
    assert r["sensitivity"] == pytest.approx(3 / 5) and r["precision"] == pytest.approx(3 / 5)
    assert r["accuracy"] == pytest.approx(3 / 7)
    assert r["localisation_mean_mm"] == pytest.approx(7 / 3)
    assert r["localisation_sd_mm"] == pytest.approx(math.sqrt(((5 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (7 / 3) ** 2) / 2))
    assert r["labeling_accuracy"] == pytest.approx(2 / 5) and r["labeling_accuracy_strict"] == pytest.approx(2 / 7)
    assert r["identification_rate"] == pytest.approx(3 / 6)  # L1, L2, L4 of six reference vertebrae
    assert sorted(r["missed"]) == ["L3", "L5"]
    assert json.loads(json.dumps(r))["tp"] == 3
    # S1 not flagged partial: it becomes a false negative
    assert evaluate_points(PREDICTED, ref_points=REFERENCE)["fn"] == 3


def test_aggregate_pools_vertebrae():
    first = evaluate_points(PREDICTED, ref_points=REFERENCE, ref_partial={"S1"})
    perfect = evaluate_points(REFERENCE[:2], ref_points=REFERENCE[:2])
    total = aggregate([first, perfect])
    assert (total["tp"], total["fp"], total["fn"], total["cases"]) == (5, 2, 2, 2)
    assert total["accuracy"] == pytest.approx(5 / 9)
    assert total["localisation_mean_mm"] == pytest.approx(7 / 5)
    assert total["labeling_accuracy"] == pytest.approx(4 / 7)


def test_reference_is_required():
    with pytest.raises(InputError, match="reference"):
        evaluate_points(PREDICTED)


@pytest.fixture
def verse(real_case):
    mask = sitk.ReadImage(str(real_case(f"{VERSE}/sub-verse004_seg-vert_msk.nii.gz")))
    entries = json.loads(real_case(f"{VERSE}/sub-verse004_seg-subreg_ctd.json").read_text())[1:]
    # VerSe body centroids are voxel indices of the mask grid (its PIR axes)
    bodies = [P(vertebra_name(e["label"]), index_to_ras(mask, [e["X"], e["Y"], e["Z"]])) for e in entries]
    info = json.loads(real_case(f"{VERSE}/vertebra_info.json").read_text())
    return mask, bodies, info


def test_centroids_and_lookup_on_real_label_map(verse):
    mask, bodies, info = verse
    centroids = reference_centroids(mask)
    for entry in info["vertebrae"]:
        assert np.allclose(centroids[entry["name"]], entry["centroid_world_mm_nifti_RAS"], atol=0.06)
    assert [label_at(mask, p.ras) for p in bodies] == [p.label for p in bodies]
    assert label_at(mask, (0.0, 0.0, 0.0)) is None  # far outside the image


def test_perfect_and_shifted_predictions_on_real_label_map(verse):
    mask, bodies, _ = verse
    perfect = evaluate_points(bodies, ref_points=bodies, ref_labels=mask)
    assert perfect["sensitivity"] == perfect["precision"] == perfect["labeling_accuracy"] == 1.0
    assert perfect["identification_rate"] == 1.0 and perfect["localisation_mean_mm"] == 0.0
    shifted = evaluate_points(shift_up(bodies), ref_points=bodies, ref_labels=mask)
    assert shifted["sensitivity"] == shifted["precision"] == 1.0  # still inside the vertebrae
    assert shifted["labeling_accuracy"] == 0.0 and shifted["identification_rate"] == 0.0
    # label map alone: whole-vertebra centroids; an off-spine point is a false positive
    extra = evaluate_points(bodies + [P("S1", bodies[-1].ras + np.array([80.0, 0, 0]))], ref_labels=mask)
    assert (extra["tp"], extra["fp"], extra["fn"]) == (9, 1, 0)
    assert 8 < extra["localisation_mean_mm"] < 16  # bodies lie anterior to whole-vertebra centroids
    # the top vertebra not fully visible and not found: no false negative
    partial = evaluate_points(bodies[1:], ref_points=bodies, ref_labels=mask, ref_partial={"T9"})
    assert partial["fn"] == 0 and partial["sensitivity"] == 1.0
