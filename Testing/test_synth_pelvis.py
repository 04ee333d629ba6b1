"""Synthetic spine generator: the bony pelvis (ilia, sacroiliac joints, sacrum, coccyx) and floating ribs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from spinebrain import geometry
from spinebrain.anatomy import PELVIS_LABELS, VERTEBRA_LABELS
from spinebrain.synth import SpineOptions, generate_spine
from spinebrain.synth import spine_render as rnd

FIVE_LUMBAR = SpineOptions(rate_four_lumbar=0.0, rate_six_lumbar=0.0, scoliosis_probability=0.0)
ILIA = (PELVIS_LABELS["Left ilium"], PELVIS_LABELS["Right ilium"])


def _superior_mm(image, mask_kji):
    """RAS superior coordinate of every voxel in a [k, j, i] mask."""
    k, j, i = np.nonzero(mask_kji)
    return geometry.index_to_ras(image, np.stack([i, j, k], axis=1).astype(float))[:, 2]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lumbar_view_holds_both_ilia_with_crests_between_l4_and_s1(seed):
    case = generate_spine(seed, "ct", "lumbar", spacing=(2.0, 2.0, 2.0), orientation="axial", options=FIVE_LUMBAR)
    structures = sitk.GetArrayFromImage(case.structures)
    assert set(ILIA) <= set(np.unique(structures).tolist())
    centre = {r.name: r.body_centre_ras for r in case.vertebrae}
    assert {"L4", "S1"} <= set(centre)
    for value in ILIA:
        crest = _superior_mm(case.structures, structures == value).max()
        assert centre["S1"][2] < crest < centre["L4"][2], (value, crest, centre["S1"][2], centre["L4"][2])
    # right ilium on the patient's right (RAS +x), left on the left
    k, j, i = np.nonzero(structures == PELVIS_LABELS["Right ilium"])
    right_x = geometry.index_to_ras(case.structures, np.stack([i, j, k], 1).astype(float))[:, 0].mean()
    assert right_x > centre["S1"][0] + 40
    # the ilia are bone on CT: cortex and marrow, not soft tissue
    hu = sitk.GetArrayFromImage(case.image)[np.isin(structures, ILIA)]
    assert np.median(hu) > 120


def test_vertebra_label_map_keeps_only_vertebra_values_and_structures_agree():
    case = generate_spine(2, "t1", "lumbar", spacing=(2.0, 2.0, 2.0), options=FIVE_LUMBAR)
    labels, structures = sitk.GetArrayFromImage(case.labels), sitk.GetArrayFromImage(case.structures)
    assert set(np.unique(labels).tolist()) - {0} <= set(VERTEBRA_LABELS.values())
    assert np.array_equal(structures[labels > 0], labels[labels > 0])
    assert not np.isin(labels, list(PELVIS_LABELS.values())).any()
    names = case.metadata["structure_names"]
    assert names[PELVIS_LABELS["Sacrum"]] == "Sacrum" and names[26] == "S1"


def test_sacroiliac_joint_is_a_thin_gap_between_sacrum_and_ilium():
    case = generate_spine(3, "ct", "whole", spacing=(1.5, 1.5, 1.5), orientation="sagittal",
                          options=SpineOptions(scoliosis_probability=0.0, render_full_spine=True))
    structures = sitk.GetArrayFromImage(case.structures)
    sacrum = np.isin(structures, [VERTEBRA_LABELS["S1"], PELVIS_LABELS["Sacrum"]])
    ilium = np.isin(structures, ILIA)
    assert sacrum.any() and ilium.any()
    gap_mm = ndimage.distance_transform_edt(~sacrum, sampling=case.structures.GetSpacing()[::-1])[ilium]
    assert gap_mm.min() >= 2.0  # a joint space: bone never touches
    assert np.sum(gap_mm < 6.0) > 50  # and the ilia do articulate with the sacrum (not floating far away)
    assert PELVIS_LABELS["Coccyx"] in np.unique(structures)
    coccyx_s = _superior_mm(case.structures, structures == PELVIS_LABELS["Coccyx"]).mean()
    assert coccyx_s < _superior_mm(case.structures, structures == PELVIS_LABELS["Sacrum"]).mean()


@pytest.mark.parametrize("seed", [0, 4])
def test_no_pelvis_in_a_cervical_view(seed):
    case = generate_spine(seed, "ct", "cervical", spacing=(2.0, 2.0, 2.0))
    structures = sitk.GetArrayFromImage(case.structures)
    assert not np.isin(structures, list(PELVIS_LABELS.values())).any()


def test_ribs_stop_above_l1_and_the_last_ribs_float():
    case = generate_spine(4, "ct", "whole", spacing=(2.0, 2.0, 2.0), orientation="axial",
                          options=SpineOptions(scoliosis_probability=0.0, rate_eleven_thoracic=0.0,
                                               rate_thirteen_thoracic=0.0, render_full_spine=True))
    tissue = sitk.GetArrayFromImage(case.tissue)
    structures = sitk.GetArrayFromImage(case.structures)
    centre = {r.name: np.array(r.body_centre_ras) for r in case.vertebrae}
    extra_bone = np.isin(tissue, [rnd.CORTICAL, rnd.CANCELLOUS]) & (structures == 0)  # ribs (and skull)
    k, j, i = np.nonzero(extra_bone)
    ras = geometry.index_to_ras(case.tissue, np.stack([i, j, k], 1).astype(float))
    lateral = np.abs(ras[:, 0] - centre["L1"][0]) > 40
    # no rib in L1's body slab
    half = 12.0
    assert not np.any(lateral & (np.abs(ras[:, 2] - centre["L1"][2]) < half))
    # ribs anterior of the spine only from the upper ribs: the floating 12th ends in the flank
    anterior = ras[:, 1] - centre["T12"][1]
    near_t12 = lateral & (np.abs(ras[:, 2] - centre["T12"][2]) < half)
    near_t7 = lateral & (np.abs(ras[:, 2] - centre["T7"][2]) < half)
    assert near_t12.any() and near_t7.any()
    assert anterior[near_t12].max() < anterior[near_t7].max() - 40


def test_abdominal_ct_has_bowel_gas_and_an_aorta_in_front_of_the_spine():
    case = generate_spine(1, "ct", "lumbar", spacing=(2.0, 2.0, 2.0), orientation="axial", options=FIVE_LUMBAR)
    tissue, hu = sitk.GetArrayFromImage(case.tissue), sitk.GetArrayFromImage(case.image)
    centre = {r.name: np.array(r.body_centre_ras) for r in case.vertebrae}
    for cls in (rnd.AIR, rnd.VESSEL):
        k, j, i = np.nonzero(tissue == cls)
        ras = geometry.index_to_ras(case.tissue, np.stack([i, j, k], 1).astype(float))
        offset = ras - centre["L3"]
        # in the abdomen in front of the spine, well inside the body wall (not the air around the body)
        front = (np.abs(offset[:, 2]) < 60) & (offset[:, 1] > 15) & (offset[:, 1] < 110) & (np.abs(offset[:, 0]) < 80)
        assert front.sum() > 20, rnd.TISSUE_NAMES[cls]
    vessel = np.median(hu[tissue == rnd.VESSEL])
    assert 20 < vessel < 60 or 130 < vessel < 380, vessel
    gas = hu[(tissue == rnd.AIR)]
    assert np.median(gas) < -800
