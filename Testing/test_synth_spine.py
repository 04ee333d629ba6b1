"""Synthetic spine generator: determinism, labels vs records, completeness, contrast, views, geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spinebrain import geometry
from spinebrain.anatomy import VERTEBRA_LABELS, vertebra_index
from spinebrain.errors import InputError
from spinebrain.synth import SpineOptions, SyntheticSpineDataset, generate_spine, synthesize_from_labels
from spinebrain.synth import spine_render as rnd
from spinebrain.synth.spine_anatomy import sample_anatomy, sample_level_names

COARSE = (3.0, 3.0, 3.0)
STRAIGHT = SpineOptions(scoliosis_probability=0.0)


def _array(image):
    return sitk.GetArrayFromImage(image)


def _value_at(image, ras):
    i, j, k = np.rint(geometry.ras_to_index(image, ras)).astype(int)
    return int(_array(image)[k, j, i])


def test_same_seed_same_case_and_other_seed_differs():
    a = generate_spine(5, "t2", "short", spacing=COARSE)
    b = generate_spine(5, "t2", "short", spacing=COARSE)
    c = generate_spine(6, "t2", "short", spacing=COARSE)
    assert np.array_equal(_array(a.image), _array(b.image))
    assert np.array_equal(_array(a.labels), _array(b.labels))
    assert np.array_equal(_array(a.structures), _array(b.structures))
    assert np.array_equal(_array(a.tissue), _array(b.tissue))
    assert a.metadata == b.metadata
    assert not (a.image.GetSize() == c.image.GetSize() and np.array_equal(_array(a.image), _array(c.image)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_records_match_label_map_and_order_craniocaudal(seed):
    case = generate_spine(seed, "ct", "whole", spacing=COARSE, orientation="random", options=STRAIGHT)
    labels = _array(case.labels)
    present = set(np.unique(labels).tolist()) - {0}
    assert present == {r.label for r in case.vertebrae}
    assert labels.dtype == np.uint8 and case.labels.GetSize() == case.image.GetSize()
    for record in case.vertebrae:
        assert VERTEBRA_LABELS[record.name] == record.label
        assert _value_at(case.labels, record.body_centre_ras) == record.label, record.name
        assert record.volume_mm3 > 0
    ordered = sorted(case.vertebrae, key=lambda r: vertebra_index(r.name))
    superior = [r.body_centre_ras[2] for r in ordered]
    assert np.all(np.diff(superior) < 0), superior
    assert [p.label for p in case.points] == [r.name for r in case.vertebrae if r.name in {p.label for p in case.points}]


@pytest.mark.parametrize("seed", range(5))
def test_lumbar_lordosis_and_thoracic_kyphosis_bend_the_right_way(seed):
    options = SpineOptions(scoliosis_probability=0.0, rate_eleven_thoracic=0.0, rate_four_lumbar=0.0)
    anatomy = sample_anatomy(np.random.default_rng(seed), options)
    curvature = anatomy.variants["curvature_deg"]
    if curvature["lumbar_lordosis"] < 15 or curvature["thoracic_kyphosis"] < 15:
        pytest.skip("this draw is nearly straight")
    centre = {v.name: anatomy.to_ras([v.s], [0.0], [0.0])[0] for v in anatomy.instances()}
    # lordosis: L3 lies anterior to the L1-S1 chord; kyphosis: T7 lies posterior to the T2-T12 chord
    def offset(name, top, bottom):
        a, b, p = centre[top], centre[bottom], centre[name]
        t = (p[2] - a[2]) / (b[2] - a[2])
        return p[1] - (a[1] + t * (b[1] - a[1]))
    assert offset("L3", "L1", "S1") > 0
    assert offset("T7", "T2", "T11") < 0


@pytest.mark.parametrize("seed,view", [(11, "lumbar"), (12, "thoracic"), (13, "cervical")])
def test_completeness_agrees_with_full_spine_render(seed, view):
    spacing = (2.5, 2.5, 2.5)
    case = generate_spine(seed, "ct", view, spacing=spacing, orientation="axial")
    full = generate_spine(seed, "ct", view, spacing=spacing, orientation="axial",
                          options=SpineOptions(render_full_spine=True))
    labels = _array(full.labels)
    (i0, j0, k0), (ni, nj, nk) = full.metadata["fov_offset_ijk"], full.metadata["fov_size_ijk"]
    window = labels[k0:k0 + nk, j0:j0 + nj, i0:i0 + ni]
    # same anatomy drawn on a larger grid (the coarse coordinate grid shifts: a few boundary voxels differ)
    assert np.mean(window != _array(case.labels)) < 0.01
    partial_seen = 0
    for record in case.vertebrae:
        total = np.count_nonzero(labels == record.label)
        outside = 1 - np.count_nonzero(window == record.label) / total
        assert abs(outside - record.fraction_outside) < 0.05, (record.name, outside, record.fraction_outside)
        if abs(outside - 0.03) > 0.03:
            assert record.complete == (outside <= 0.03), record.name
        partial_seen += not record.complete
    assert partial_seen >= 1  # a view always cuts at least one vertebra


def test_ct_hounsfield_ranges_are_plausible():
    case = generate_spine(21, "ct", "lumbar", spacing=(1.0, 1.0, 2.0), orientation="axial")
    image, tissue = _array(case.image).astype(float), _array(case.tissue)
    assert case.image.GetPixelID() == sitk.sitkInt16
    assert np.median(image[tissue == rnd.AIR]) < -900
    assert -160 < np.median(image[tissue == rnd.FAT]) < -40
    assert 0 < np.median(image[tissue == rnd.MUSCLE]) < 100
    assert np.median(image[tissue == rnd.CORTICAL]) > 200
    assert np.median(image[tissue == rnd.DISC]) < np.median(image[tissue == rnd.CORTICAL])


def test_mr_t2_shows_bright_csf_around_darker_cord_and_t1_bright_fat():
    t2 = generate_spine(22, "t2", "cervical", spacing=(1.0, 1.0, 3.0))
    image, tissue = _array(t2.image), _array(t2.tissue)
    assert np.median(image[tissue == rnd.CSF]) > 1.3 * np.median(image[tissue == rnd.CORD])
    t1 = generate_spine(23, "t1", "lumbar", spacing=(1.5, 1.5, 4.0))
    image, tissue = _array(t1.image), _array(t1.tissue)
    assert np.median(image[tissue == rnd.FAT]) > 1.5 * np.median(image[tissue == rnd.CSF])
    assert image.min() >= 0  # magnitude images


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_views_hold_their_anchor_vertebrae(seed):
    present = lambda case: set(np.unique(_array(case.labels)).tolist())  # noqa: E731
    assert VERTEBRA_LABELS["C2"] in present(generate_spine(seed, "t1", "cervical", spacing=COARSE, orientation="random"))
    assert VERTEBRA_LABELS["S1"] in present(generate_spine(seed, "t2", "lumbar", spacing=COARSE, orientation="random"))
    short = present(generate_spine(seed, "ct", "short", spacing=COARSE, orientation="random"))
    assert not short & {VERTEBRA_LABELS["C1"], VERTEBRA_LABELS["C2"], VERTEBRA_LABELS["S1"]}
    assert len(short - {0}) >= 2


def test_transitional_anatomy_rates_follow_the_options():
    options = SpineOptions(rate_eleven_thoracic=0.1, rate_thirteen_thoracic=0.05, rate_six_lumbar=0.08,
                           rate_four_lumbar=0.04)
    rng = np.random.default_rng(0)
    draws = [sample_level_names(rng, options)[1] for _ in range(4000)]
    rate = lambda key, value: np.mean([d[key] == value for d in draws])  # noqa: E731
    assert abs(rate("thoracic_count", 11) - 0.1) < 0.02
    assert abs(rate("thoracic_count", 13) - 0.05) < 0.015
    assert abs(rate("lumbar_count", 6) - 0.08) < 0.02
    assert abs(rate("lumbar_count", 4) - 0.04) < 0.015
    # and the names follow the count: T13 / L6 appear in the label values
    forced = generate_spine(2, "ct", "lumbar", spacing=COARSE,
                            options=SpineOptions(rate_thirteen_thoracic=1.0, rate_eleven_thoracic=0.0, rate_six_lumbar=1.0))
    names = {r.name for r in forced.vertebrae}
    assert {"L6", "L5"} <= names and forced.metadata["transitional"]["lumbar_count"] == 6
    assert VERTEBRA_LABELS["L6"] in np.unique(_array(forced.labels))


def test_axial_and_sagittal_acquisitions_agree_in_ras():
    axial = generate_spine(41, "t2", "lumbar", spacing=(3.0, 3.0, 4.0), orientation="axial")
    sagittal = generate_spine(41, "t2", "lumbar", spacing=(3.0, 3.0, 4.0), orientation="sagittal")
    assert not np.allclose(axial.image.GetDirection(), sagittal.image.GetDirection())
    centres_a = {p.label: np.array(p.ras) for p in axial.points}
    centres_s = {p.label: np.array(p.ras) for p in sagittal.points}
    common = set(centres_a) & set(centres_s)
    assert len(common) >= 4
    for name in common:
        assert np.allclose(centres_a[name], centres_s[name], atol=1e-6)
        assert _value_at(axial.labels, centres_a[name]) == VERTEBRA_LABELS[name]
        assert _value_at(sagittal.labels, centres_s[name]) == VERTEBRA_LABELS[name]
    # the slice axis of a sagittal scan runs left-right; of an axial scan, inferior-superior
    sag_k = np.abs(np.array(sagittal.image.GetDirection()).reshape(3, 3)[:, 2])
    ax_k = np.abs(np.array(axial.image.GetDirection()).reshape(3, 3)[:, 2])
    assert np.argmax(sag_k) == 0 and np.argmax(ax_k) == 2


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="modality"):
        generate_spine(0, "pet")
    with pytest.raises(InputError, match="Spacing"):
        generate_spine(0, "ct", spacing=-1.0)
    with pytest.raises(InputError, match="view"):
        generate_spine(0, "ct", view="pelvis")


def test_dataset_is_deterministic_across_dataloader_workers():
    dataset = SyntheticSpineDataset(4, base_seed=100, modality="random", view="short", spacing=(4.0, 4.0, 4.0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2)
    items = list(loader)
    assert len(items) == 4
    for index, item in enumerate(items):
        direct = dataset[index]
        assert item["seed"].item() == 100 + index
        assert np.array_equal(item["image"][0].numpy(), direct["image"])
        assert np.array_equal(item["label"][0].numpy(), direct["label"])
        assert item["image"].shape[1] == 1 and item["image"].shape == item["label"].shape
        assert item["points"].shape[-1] == 3


@pytest.mark.realdata
def test_synthesis_from_a_real_verse_mask(real_case):
    mask = sitk.ReadImage(str(real_case("A8_verse_sub-verse004_labels_only/sub-verse004_seg-vert_msk.nii.gz")))
    mask = sitk.Resample(mask, [n // 2 for n in mask.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                         mask.GetOrigin(), [s * 2 for s in mask.GetSpacing()], mask.GetDirection())
    case = synthesize_from_labels(mask, seed=3, modality="t2")
    before = set(np.unique(_array(mask)).astype(int).tolist()) - {0}
    after = {r.label for r in case.vertebrae}
    assert after <= before and len(after) >= len(before) - 1
    assert case.image.GetSize() == mask.GetSize()
    moved = np.mean(_array(case.labels) != _array(mask).astype(np.uint8))
    assert 0 < moved < 0.5  # deformed, but still the same spine
    warped = _array(case.labels)
    border = np.concatenate([warped[[0, -1]].ravel(), warped[:, [0, -1]].ravel(), warped[:, :, [0, -1]].ravel()])
    for record in case.vertebrae:  # real references: complete = the mask does not touch the border
        assert record.complete == (record.label not in set(border.tolist())), record.name
        assert record.fraction_outside is None


def _height_profile(name: str, region: str):
    """(rim height near the anterior wall, centre height) of a mean-sized body drawn alone, in mm."""
    from spinebrain.synth import morphometry
    from spinebrain.synth.spine_anatomy import Vertebra

    size = morphometry.LEVEL_SIZES[name]
    vert = Vertebra(name, VERTEBRA_LABELS[name], region, 0.0, size)
    ds = np.arange(-size.height, size.height, 0.1)
    column = lambda v: ds[rnd.vertebra_mask_points(vert, ds, np.zeros_like(ds), np.full_like(ds, v), 5.0, 5.0)]  # noqa: E731
    rim, centre = column(0.88 * size.depth / 2), column(0.0)
    return np.ptp(rim) + 0.1, np.ptp(centre) + 0.1


@pytest.mark.parametrize("name,region", [("C5", "cervical"), ("T8", "thoracic"), ("L3", "lumbar")])
def test_body_rims_reach_the_published_height_and_endplates_are_concave(name, region):
    from spinebrain.synth import morphometry
    from spinebrain.synth.spine_anatomy import Vertebra, endplate_cup

    table = morphometry.LEVEL_SIZES[name].height
    rim, centre = _height_profile(name, region)
    cup = endplate_cup(Vertebra(name, 1, region, 0.0, morphometry.LEVEL_SIZES[name]))
    assert abs(rim - table) < 0.6, (rim, table)  # VBHa / VBHp are rim heights
    assert abs((rim - centre) - 2 * cup) < 0.8, (rim, centre, cup)


def test_bodies_stack_with_the_middle_disc_height_between_endplate_centres():
    from spinebrain.synth.spine_anatomy import endplate_cup

    anatomy = sample_anatomy(np.random.default_rng(7), STRAIGHT)
    pairs = list(zip(anatomy.vertebrae[2:], anatomy.vertebrae[3:]))  # C3 down to the sacrum
    for upper, lower in pairs:
        if lower.region == "sacral" and lower.name != "S1":
            continue
        centre_gap = (lower.s - upper.s) - (upper.size.height + lower.size.height) / 2
        middle = centre_gap + endplate_cup(upper) + endplate_cup(lower)
        assert abs(middle - upper.size.disc) < 1e-6 or centre_gap == pytest.approx(1.0), (upper.name, middle)
    lumbar = [(u, lo) for u, lo in pairs if u.region == "lumbar" and lo.region == "lumbar"]
    assert all(5.0 < lo.s - u.s - (u.size.height + lo.size.height) / 2 < 10.0 for u, lo in lumbar)


def test_ct_bone_density_falls_with_age_within_published_ranges():
    from spinebrain.synth.spine import _contrast

    tissue = np.full((24, 24, 24), rnd.CANCELLOUS, np.uint8)
    ones = np.ones(tissue.shape, np.float32)
    median = lambda age, seed: float(np.median(_contrast(tissue, ones, None, None, (1.0, 1.0, 1.0), 1, "ct",  # noqa: E731
                                                         np.random.default_rng(seed), age=age)))
    young = [median(25, seed) for seed in range(8)]
    old = [median(80, seed) for seed in range(8)]
    assert 150 < np.mean(young) < 320 and 40 <= np.mean(old) < 180, (young, old)
    assert np.mean(young) > np.mean(old) + 80


def test_mr_tissue_order_matches_t1_and_t2_spine_imaging():
    def medians(modality, seed):
        case = generate_spine(seed, modality, "lumbar", spacing=(2.0, 2.0, 2.0), orientation="axial")
        image, tissue = _array(case.image), _array(case.tissue)
        core = lambda code: ndimage.binary_erosion(tissue == code, iterations=1)  # noqa: E731
        return {code: float(np.median(image[core(code)])) for code in (rnd.FAT, rnd.MUSCLE, rnd.CANCELLOUS, rnd.CSF)}

    from scipy import ndimage

    t2 = medians("t2", 51)
    assert t2[rnd.CSF] > t2[rnd.CANCELLOUS] > t2[rnd.MUSCLE] and t2[rnd.FAT] > t2[rnd.CANCELLOUS]
    t1 = medians("t1", 52)
    assert t1[rnd.FAT] > t1[rnd.CANCELLOUS] > t1[rnd.CSF] and t1[rnd.CANCELLOUS] > t1[rnd.MUSCLE]
