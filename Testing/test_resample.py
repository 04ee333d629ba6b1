"""Resampling, reorienting, cropping and padding keep world positions and label values."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from spinebrain.errors import InputError
from spinebrain.geometry import array_from_image, index_to_ras, same_grid
from spinebrain.resample import (
    bounding_box,
    crop_or_pad,
    crop_to_bounding_box,
    extract_slab,
    orientation_of,
    pad_to_size,
    reorient,
    resample_like,
    resample_to_spacing,
)

SPACING = (0.8, 1.3, 3.0)
SIZE = (40, 30, 16)  # (i, j, k)


def oblique_image(array_kji: np.ndarray, spacing=SPACING) -> sitk.Image:
    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing(spacing)
    image.SetOrigin((-12.5, 40.0, 7.25))
    image.SetDirection(Rotation.from_euler("xyz", [20, -15, 30], degrees=True).as_matrix().ravel())
    return image


def world_grid(image: sitk.Image) -> np.ndarray:
    """LPS position of every voxel centre, shaped [k, j, i, 3]."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in reversed(size)), indexing="ij")
    ijk = np.stack([i, j, k], -1).reshape(-1, 3).astype(float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.array(image.GetOrigin()) + (ijk * image.GetSpacing()) @ direction.T
    return lps.reshape(*reversed(size), 3)


def blob_image(center_lps, sigma_mm=6.0) -> sitk.Image:
    """Smooth Gaussian blob around a world point, on the oblique anisotropic grid."""
    template = oblique_image(np.zeros(SIZE[::-1], np.float32))
    distance2 = ((world_grid(template) - center_lps) ** 2).sum(-1)
    return oblique_image(np.exp(-distance2 / (2 * sigma_mm**2)).astype(np.float32))


def weighted_centroid_lps(image: sitk.Image) -> np.ndarray:
    weights = array_from_image(image).astype(float)
    return (world_grid(image) * weights[..., None]).reshape(-1, 3).sum(0) / weights.sum()


def label_image() -> sitk.Image:
    """Integer labels {0, 3, 7, 26} in boxes of a few voxels, on the oblique grid."""
    labels = np.zeros(SIZE[::-1], np.uint8)
    labels[3:8, 5:15, 5:20] = 3
    labels[8:13, 10:25, 18:35] = 7
    labels[2:6, 18:28, 25:38] = 26
    return oblique_image(labels)


def value_at(image: sitk.Image, lps) -> float:
    return image[image.TransformPhysicalPointToIndex(tuple(float(v) for v in lps))]


# ---------------------------------------------------------------------------- resample_to_spacing


def test_resample_keeps_origin_direction_and_extent():
    image = blob_image(np.zeros(3))
    out = resample_to_spacing(image, 1.0)
    assert out.GetSpacing() == (1.0, 1.0, 1.0)
    assert out.GetOrigin() == image.GetOrigin()
    assert out.GetDirection() == image.GetDirection()
    assert out.GetPixelID() == image.GetPixelID()
    old_extent = np.array(image.GetSize()) * image.GetSpacing()
    new_extent = np.array(out.GetSize()) * out.GetSpacing()
    assert np.all(np.abs(new_extent - old_extent) <= 0.5 * np.array(out.GetSpacing()) + 1e-9)


def test_resample_per_axis_spacing():
    out = resample_to_spacing(blob_image(np.zeros(3)), (1.6, 2.6, 1.5))
    assert out.GetSize() == (20, 15, 32)


def test_landmark_world_position_preserved_through_resample_and_back():
    center = oblique_image(np.zeros(SIZE[::-1], np.float32)).TransformContinuousIndexToPhysicalPoint(
        (19.5, 14.2, 7.6)
    )
    image = blob_image(np.array(center))
    assert np.allclose(weighted_centroid_lps(image), center, atol=0.3)

    isotropic = resample_to_spacing(image, 1.0)
    assert np.allclose(weighted_centroid_lps(isotropic), center, atol=0.3)

    back = resample_like(isotropic, image)
    assert same_grid(back, image, tolerance_mm=1e-9)
    assert back.GetDirection() == image.GetDirection()
    assert np.allclose(weighted_centroid_lps(back), center, atol=0.3)
    # Smooth content survives the round trip (linear interpolation error only).
    assert np.abs(array_from_image(back) - array_from_image(image)).max() < 0.1


def test_labels_stay_integer_and_keep_their_values():
    labels = label_image()
    isotropic = resample_to_spacing(labels, 1.0, is_label=True)
    assert isotropic.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(array_from_image(isotropic))) == {0, 3, 7, 26}

    back = resample_like(isotropic, labels, is_label=True)
    before, after = array_from_image(labels), array_from_image(back)
    assert back.GetPixelID() == sitk.sitkUInt8 and same_grid(back, labels, tolerance_mm=1e-9)
    assert set(np.unique(after)) == {0, 3, 7, 26}
    for value in (3, 7, 26):
        a, b = before == value, after == value
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85, value


def test_label_centroid_world_position_preserved():
    labels = label_image()
    isotropic = resample_to_spacing(labels, 1.0, is_label=True)
    for value in (3, 7):
        before = world_grid(labels)[array_from_image(labels) == value].mean(0)
        after = world_grid(isotropic)[array_from_image(isotropic) == value].mean(0)
        assert np.linalg.norm(before - after) < 1.0, value


def test_default_value_outside_the_input():
    image = blob_image(np.zeros(3)) + 5.0  # minimum is 5
    shifted = sitk.Image(image)
    shifted.SetOrigin(tuple(np.array(image.GetOrigin()) + 1000))
    assert np.allclose(array_from_image(resample_like(shifted, image)), 5.0)
    assert np.allclose(array_from_image(resample_like(shifted, image, default_value=-7)), -7.0)


def test_resample_rejects_non_positive_spacing():
    with pytest.raises(ValueError):
        resample_to_spacing(label_image(), (1.0, 0.0, 1.0))


# ---------------------------------------------------------------------------- reorient


@pytest.mark.parametrize("target", ["RAS", "LPS", "LAS", "PIR"])
def test_reorient_keeps_world_positions(target):
    labels = label_image()
    labels.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))  # LAS, as NIfTI from TotalSegmentator
    out = reorient(labels, target.lower())
    assert orientation_of(out) == target
    assert sorted(array_from_image(out).ravel()) == sorted(array_from_image(labels).ravel())
    for index in [(0, 0, 0), (10, 20, 5), (39, 29, 15)]:
        lps = labels.TransformIndexToPhysicalPoint(index)
        assert out[out.TransformPhysicalPointToIndex(lps)] == labels[index]


def test_ras_orientation_agrees_with_ijk_to_ras_matrix():
    out = reorient(label_image(), "RAS")
    ras = index_to_ras(out, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    steps = ras[1:] - ras[0]
    # i mostly towards +R, j towards +A, k towards +S
    assert np.argmax(np.abs(steps[0])) == 0 and steps[0][0] > 0
    assert np.argmax(np.abs(steps[1])) == 1 and steps[1][1] > 0
    assert np.argmax(np.abs(steps[2])) == 2 and steps[2][2] > 0


@pytest.mark.parametrize("bad", ["RRS", "XYZ", "RA", "RASL"])
def test_reorient_rejects_bad_codes(bad):
    with pytest.raises(InputError, match="one from each pair"):
        reorient(label_image(), bad)


# ---------------------------------------------------------------------------- crop and pad


def test_crop_to_bounding_box_keeps_world_positions():
    labels = label_image()
    mask = labels == 7
    cropped = crop_to_bounding_box(labels, mask, margin_mm=2.0)
    # box of label 7 is i 18..34, j 10..24, k 8..12; margin 2 mm = 3, 2, 1 voxels
    assert cropped.GetSize() == (17 + 6, 15 + 4, 5 + 2)
    assert (array_from_image(cropped) == 7).sum() == (array_from_image(labels) == 7).sum()
    for index in [(0, 0, 0), (5, 7, 3), (22, 18, 6)]:
        lps = cropped.TransformIndexToPhysicalPoint(index)
        assert value_at(labels, lps) == cropped[index]


def test_bounding_box_is_clipped_to_the_image():
    index, size = bounding_box(label_image() == 26, margin_mm=100.0)
    assert index == [0, 0, 0] and size == list(SIZE)


def test_crop_rejects_empty_and_misaligned_masks():
    labels = label_image()
    with pytest.raises(InputError, match="empty"):
        crop_to_bounding_box(labels, labels == 99)
    with pytest.raises(InputError, match="different grid"):
        crop_to_bounding_box(labels, resample_to_spacing(labels == 3, 1.0, is_label=True))


def test_pad_to_size_and_back_with_crop_or_pad():
    image = blob_image(np.zeros(3))
    padded = pad_to_size(image, (45, 30, 21), value=-1)
    assert padded.GetSize() == (45, 30, 21)
    assert padded.GetSpacing() == image.GetSpacing() and padded.GetDirection() == image.GetDirection()
    assert padded[0, 0, 0] == -1 and padded[44, 29, 20] == -1
    for index in [(0, 0, 0), (17, 12, 9), (39, 29, 15)]:
        lps = image.TransformIndexToPhysicalPoint(index)
        assert value_at(padded, lps) == image[index]

    back = crop_or_pad(padded, image.GetSize())
    assert same_grid(back, image, tolerance_mm=1e-6)
    assert np.array_equal(array_from_image(back), array_from_image(image))


def test_pad_to_size_leaves_large_axes_alone():
    image = label_image()
    assert pad_to_size(image, (10, 10, 10)).GetSize() == image.GetSize()


def test_crop_or_pad_mixed_axes():
    image = label_image()
    out = crop_or_pad(image, (32, 36, 16))
    assert out.GetSize() == (32, 36, 16)
    lps = image.TransformIndexToPhysicalPoint((20, 15, 8))
    assert value_at(out, lps) == image[20, 15, 8]


def test_extract_slab():
    image = label_image()
    slab = extract_slab(image, axis=0, center=20, thickness=5)
    assert slab.GetSize() == (5, 30, 16)
    assert np.array_equal(array_from_image(slab), array_from_image(image)[:, :, 18:23])
    assert np.allclose(slab.GetOrigin(), image.TransformIndexToPhysicalPoint((18, 0, 0)))
    edge = extract_slab(image, axis=2, center=0, thickness=4)
    assert edge.GetSize() == (40, 30, 4) and edge.GetOrigin() == image.GetOrigin()
