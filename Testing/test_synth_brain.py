"""Synthetic brain generator: determinism, label geometry, volumes, contrasts, skull, loader."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from spinebrain.errors import InputError
from spinebrain.geometry import same_grid
from spinebrain.synth import brain, brain_template
from spinebrain.synth.brain import BrainOptions, generate_brain
from spinebrain.synth.brain_dataset import SyntheticBrainDataset

FAST = 3.0  # mm: coarse grid keeps each case around a second
CLEAN = BrainOptions(thick_slice_probability=0.0)  # keep the working grid for 1-voxel geometry checks


def arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.fixture(scope="module")
def ms_case():
    return generate_brain(11, ("t1", "t2", "flair"), "ms", spacing=FAST, options=CLEAN)


@pytest.fixture(scope="module")
def tumour_case():
    return generate_brain(12, ("t1", "t1c", "flair"), "tumour", spacing=FAST, options=CLEAN)


def test_same_seed_same_case_other_seed_other_case():
    a = generate_brain(5, ("t1", "flair"), "ms", spacing=FAST)
    b = generate_brain(5, ("t1", "flair"), "ms", spacing=FAST)
    c = generate_brain(6, ("t1", "flair"), "ms", spacing=FAST)
    for name in ("t1", "flair"):
        assert np.array_equal(arr(a.images[name]), arr(b.images[name]))
    assert np.array_equal(arr(a.tissue), arr(b.tissue)) and np.array_equal(arr(a.lesions), arr(b.lesions))
    assert a.volumes == b.volumes
    assert a.metadata["seed"] == 5 and a.metadata["lesions"] == "ms" and a.metadata["contrasts"] == ["t1", "flair"]
    assert not np.array_equal(arr(a.images["t1"]), arr(c.images["t1"]))


def test_images_and_labels_share_one_grid(ms_case):
    for image in (*ms_case.images.values(), ms_case.lesions, ms_case.brain_mask):
        assert same_grid(image, ms_case.tissue)
    assert ms_case.tissue.GetSpacing() == (FAST,) * 3
    assert set(np.unique(arr(ms_case.tissue))) == {0, 1, 2, 3}
    assert ms_case.tissue_names == {1: "Cerebrospinal fluid", 2: "Grey matter", 3: "White matter"}
    assert ms_case.lesion_names == {1: "Lesion"}
    assert np.array_equal(arr(ms_case.brain_mask) > 0, arr(ms_case.tissue) > 0)


def test_ms_lesions_touch_white_matter(ms_case):
    lesions = arr(ms_case.lesions)
    wm_near = ndimage.binary_dilation(arr(ms_case.tissue) == brain.WM)
    components, count = ndimage.label(lesions > 0)
    assert count >= 1 and count == ms_case.volumes["lesion_count"]
    for label in range(1, count + 1):
        assert np.any(wm_near[components == label]), f"lesion {label} does not touch white matter"
    assert not np.any(lesions[arr(ms_case.tissue) == 0]), "lesion outside the brain"


def test_tumour_parts_are_nested(tumour_case):
    lesions, tissue = arr(tumour_case.lesions), arr(tumour_case.tissue)
    assert tumour_case.lesion_names == {1: "Necrosis", 2: "Neoplasm", 3: "Oedema"}
    necrosis, enhancing, oedema = (lesions == v for v in (1, 2, 3))
    assert necrosis.any() and enhancing.any() and oedema.any()
    brain_tissue = tissue > 0
    # the enhancing rim encloses the necrotic core
    around_necrosis = ndimage.binary_dilation(necrosis) & ~necrosis & brain_tissue
    assert np.all(enhancing[around_necrosis])
    # oedema encloses the whole tumour wherever the neighbour is brain parenchyma
    core = necrosis | enhancing
    around_core = ndimage.binary_dilation(core) & ~core & brain_tissue & (tissue != brain.CSF)
    assert around_core.any() and np.all(oedema[around_core])
    assert tumour_case.volumes["lesion_count"] == 1
    assert oedema.sum() > enhancing.sum() * 0.3  # oedema spreads beyond a thin shell


def test_volumes_add_up(ms_case, tumour_case):
    for case in (ms_case, tumour_case):
        v = case.volumes
        voxel_ml = np.prod(case.tissue.GetSpacing()) / 1000.0
        tissue, lesions = arr(case.tissue), arr(case.lesions)
        assert v["gm_ml"] + v["wm_ml"] + v["csf_ml"] == pytest.approx(v["icv_ml"], rel=1e-9)
        assert v["gm_ml"] == pytest.approx(np.sum(tissue == 2) * voxel_ml)
        assert v["wm_ml"] == pytest.approx(np.sum(tissue == 3) * voxel_ml)
        assert v["csf_ml"] == pytest.approx(np.sum(tissue == 1) * voxel_ml)
        assert v["icv_ml"] == pytest.approx(np.sum(arr(case.brain_mask)) * voxel_ml)
        assert v["lesion_load_ml"] == pytest.approx(sum(v["lesion_volumes_ml"]))
        assert v["lesion_load_ml"] == pytest.approx(np.sum(lesions > 0) * voxel_ml)
        assert len(v["lesion_volumes_ml"]) == v["lesion_count"]
        assert sum(v["lesion_label_ml"].values()) == pytest.approx(v["lesion_load_ml"])
        assert 1200 < v["icv_ml"] < 2600  # an adult brain, not an empty or exploded one


@pytest.mark.parametrize("seed", [21, 22])
def test_contrasts_order_tissues_like_real_scans(seed):
    case = generate_brain(seed, ("t1", "t2", "flair"), "ms", spacing=FAST)
    tissue, lesions = arr(case.tissue), arr(case.lesions)

    def mean(contrast, where):
        return float(arr(case.images[contrast])[where].mean())

    csf, gm, wm, lesion = tissue == 1, tissue == 2, tissue == 3, lesions == 1
    assert mean("t1", wm) > mean("t1", gm) > mean("t1", csf)
    assert mean("t2", csf) > mean("t2", gm) > mean("t2", wm)
    assert mean("flair", csf) < min(mean("flair", gm), mean("flair", wm))
    assert mean("flair", lesion) > max(mean("flair", gm), mean("flair", wm))
    assert mean("t1", lesion) < mean("t1", wm)


def test_tumour_enhances_on_t1c_only(tumour_case):
    lesions, tissue = arr(tumour_case.lesions), arr(tumour_case.tissue)
    t1, t1c, flair = (arr(tumour_case.images[c]) for c in ("t1", "t1c", "flair"))
    wm = (tissue == 3) & (lesions == 0)
    assert t1c[lesions == 2].mean() > t1c[wm].mean() > t1c[lesions == 1].mean()
    assert t1[lesions == 2].mean() < t1[wm].mean()
    assert flair[lesions == 3].mean() > flair[wm].mean()


def test_different_seeds_give_different_but_plausible_brains():
    wm = [arr(generate_brain(s, ("t1",), spacing=FAST, options=CLEAN).tissue) == 3 for s in (31, 32)]
    dice = 2 * np.sum(wm[0] & wm[1]) / (wm[0].sum() + wm[1].sum())
    assert 0.6 < dice < 0.98


def test_tissue_volumes_are_adult_and_follow_atrophy():
    young = dataclasses.replace(CLEAN, atrophy=(0.0, 0.0), ventricle_growth_mm=(0.0, 0.0))
    old = dataclasses.replace(CLEAN, atrophy=(1.0, 1.0), ventricle_growth_mm=(4.0, 4.0))
    a, b = (generate_brain(33, ("t1",), spacing=FAST, options=o).volumes for o in (young, old))
    for v in (a, b):  # published adult ranges (mL), with room for the per-case jitter
        assert 500 < v["gm_ml"] < 800 and 400 < v["wm_ml"] < 650 and 1100 < v["icv_ml"] < 1850, v
        assert 0.1 < v["csf_ml"] / v["icv_ml"] < 0.35, v
    assert b["gm_ml"] < a["gm_ml"] and b["csf_ml"] > a["csf_ml"]  # same head, older brain
    assert b["icv_ml"] == pytest.approx(a["icv_ml"], rel=0.02)


def test_skull_adds_a_shell_outside_the_brain():
    spacing = 2.0  # the bone layers are a few mm thick: coarser grids blur them away
    off = generate_brain(41, ("t1",), spacing=spacing, options=CLEAN)
    on = generate_brain(41, ("t1",), skull=True, spacing=spacing, options=CLEAN)
    assert np.array_equal(arr(off.tissue), arr(on.tissue))  # the skull changes no label
    mask = arr(on.brain_mask) > 0
    assert not np.any(arr(off.images["t1"])[~mask])  # skull-stripped: exactly 0 outside
    image = arr(on.images["t1"]) / arr(on.images["t1"])[arr(on.tissue) == 3].mean()
    distance = ndimage.distance_transform_edt(~mask) * spacing
    bands = [float(np.median(image[(distance > d) & (distance <= d + spacing)])) for d in np.arange(0, 24, spacing)]
    head = bands[: next(i for i, b in enumerate(bands) if b < 0.1)]  # up to the air around the head
    assert len(head) >= 3, bands
    assert max(head) > 0.6, bands  # scalp fat / marrow: bright on T1
    assert min(head) < 0.5 * max(head), bands  # CSF gap / cortical bone: dark on T1
    assert np.median(image[distance > 40]) < 0.1  # air beyond the head: noise only


def test_thick_slices_give_the_acquired_grid():
    case = generate_brain(51, ("t1", "flair"), "ms", spacing=(2.0, 2.0, 5.0))
    assert case.tissue.GetSpacing() == (2.0, 2.0, 5.0)
    for image in (*case.images.values(), case.lesions, case.brain_mask):
        assert same_grid(image, case.tissue)
    assert case.volumes["icv_ml"] == pytest.approx(case.volumes["gm_ml"] + case.volumes["wm_ml"] + case.volumes["csf_ml"])
    always_thick = dataclasses.replace(BrainOptions(), thick_slice_probability=1.0, slice_thickness_mm=(4.0, 6.0))
    spacing = generate_brain(52, spacing=FAST, options=always_thick).tissue.GetSpacing()
    assert sorted(spacing)[:2] == [FAST, FAST] and 4.0 <= max(spacing) <= 6.0


def test_domain_randomised_contrast_changes_class_means():
    random = dataclasses.replace(CLEAN, random_contrast_probability=1.0)
    a = generate_brain(61, ("t1",), spacing=FAST, options=random).metadata["class_means"]["t1"]
    b = generate_brain(61, ("t1",), spacing=FAST, options=CLEAN).metadata["class_means"]["t1"]
    assert a != b and all(0 < value <= 1 for value in a.values())


@pytest.mark.parametrize("kwargs, words", [
    (dict(contrasts=("t1", "dwi")), "dwi"),
    (dict(lesions="stroke"), "stroke"),
    (dict(spacing=0), "Spacing"),
    (dict(spacing=(1, 2)), "Spacing"),
])
def test_bad_arguments_raise_input_error(kwargs, words):
    with pytest.raises(InputError, match=words):
        generate_brain(1, **kwargs)


def test_missing_nilearn_says_how_to_install(monkeypatch):
    monkeypatch.setattr(brain_template.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install nilearn"):
        brain_template.template_folder()


def test_dataset_with_monai_dataloader_workers():
    from monai.data import DataLoader

    dataset = SyntheticBrainDataset(4, seed=7, contrasts=("t1", "flair"), lesions=("ms", "tumour"),
                                    spacing=FAST, crop=(24, 32, 32))
    first = dataset[1]
    assert first["image"].shape == (2, 24, 32, 32) and first["tissue"].shape == (1, 24, 32, 32)
    assert int(first["brain_mask"].sum()) > 0
    inside = first["image"][:, first["brain_mask"][0] > 0]
    assert abs(float(inside.mean())) < 1.0  # z-scored within the brain
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2, shuffle=False))
    assert len(batches) == 2 and batches[0]["image"].shape == (2, 2, 24, 32, 32)
    assert np.array_equal(batches[0]["image"][1].numpy(), first["image"].numpy())  # per-index seeds
    assert batches[0]["seed"][0] != batches[0]["seed"][1]
    with pytest.raises(IndexError):
        dataset[4]
