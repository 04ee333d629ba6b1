"""Intensity preprocessing: N4 removes a bias field, normalisations hit their targets, geometry kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.errors import InputError
from spinebrain.geometry import array_from_image, same_grid
from spinebrain.preprocess import (
    NyulStandardizer,
    clip_percentiles,
    clip_window,
    minmax,
    n4_bias_correction,
    window,
    zscore,
)

SHAPE = (24, 40, 44)  # (k, j, i)


def on_grid(array: np.ndarray) -> sitk.Image:
    """Image on an oblique, anisotropic grid (the geometry every function must keep)."""
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((1.1, 0.9, 2.5))
    image.SetOrigin((30.0, -12.0, 101.5))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    return image


def phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A two-tissue ellipsoid 'head' with noise: (array, head mask, homogeneous outer-tissue mask)."""
    k, j, i = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]].astype(float)
    radius = np.sqrt(((k - 12) / 10) ** 2 + ((j - 20) / 17) ** 2 + ((i - 22) / 19) ** 2)
    array = np.where(radius < 1, 100.0, 0.0)
    array[radius < 0.5] = 60.0
    array += np.random.default_rng(seed).normal(0, 1.0, SHAPE)
    return array, radius < 1, (radius < 0.95) & (radius > 0.6)


def mask_image(mask: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(on_grid(np.zeros(SHAPE)))
    return image


def coefficient_of_variation(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


# ---------------------------------------------------------------------------- N4


@pytest.mark.parametrize("with_mask", [False, True])
def test_n4_removes_a_multiplicative_bias_field(with_mask):
    array, head, tissue = phantom()
    k, j, i = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]].astype(float)
    bias = np.exp(0.35 * (i - 22) / 22 - 0.25 * (k - 12) / 12 + 0.15 * (j - 20) / 20)
    image = on_grid(array * bias)

    corrected = n4_bias_correction(image, mask_image(head) if with_mask else None)

    before = coefficient_of_variation(array_from_image(image)[tissue])
    after = coefficient_of_variation(array_from_image(corrected)[tissue])
    assert before > 0.1  # the bias is visible ...
    assert after < before / 3  # ... and N4 removes most of it
    assert corrected.GetPixelID() == sitk.sitkFloat32
    assert same_grid(corrected, image) and corrected.GetDirection() == image.GetDirection()


def test_n4_rejects_a_mask_with_no_positive_voxel():
    array, head, _ = phantom()
    with pytest.raises(InputError, match="no positive voxels"):
        n4_bias_correction(on_grid(array - 1000), mask_image(head))


# ---------------------------------------------------------------------------- simple normalisations


def test_zscore_inside_mask_has_mean_0_and_sd_1():
    array, head, _ = phantom()
    image = on_grid(array * 3 + 500)
    out = zscore(image, mask_image(head))
    inside = array_from_image(out)[head]
    assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-4
    assert array_from_image(out)[~head].mean() < -1  # background (below the head) stays outside
    assert same_grid(out, image) and out.GetPixelID() == sitk.sitkFloat32


def test_zscore_without_mask_and_constant_region():
    array, _, _ = phantom()
    out = array_from_image(zscore(on_grid(array)))
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3
    assert np.all(array_from_image(zscore(on_grid(np.full(SHAPE, 7.0)))) == 0)


def test_mask_on_another_grid_is_refused():
    array, head, _ = phantom()
    mask = mask_image(head)
    mask.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="different grid"):
        zscore(on_grid(array), mask)
    with pytest.raises(InputError, match="empty"):
        zscore(on_grid(array), mask_image(np.zeros(SHAPE, bool)))


def test_window_and_clip():
    ramp = np.linspace(-1000, 2000, np.prod(SHAPE)).reshape(SHAPE)
    image = on_grid(ramp)
    clipped = array_from_image(clip_window(image, -100, 300))
    assert clipped.min() == -100 and clipped.max() == 300
    inside = (ramp > -100) & (ramp < 300)
    assert np.allclose(clipped[inside], ramp[inside])
    assert np.array_equal(array_from_image(window(image, 100, 400)), clipped)
    with pytest.raises(ValueError):
        clip_window(image, 5, 5)


def test_clip_percentiles_uses_mask_statistics():
    array, head, _ = phantom()
    array[head & (np.arange(SHAPE[2]) == 22)] = 5000.0  # a hot line of outliers in the head
    image = on_grid(array)
    out = array_from_image(clip_percentiles(image, 1, 99, mask_image(head)))
    assert out.max() == pytest.approx(np.percentile(array[head], 99), rel=1e-5)
    assert out.min() == pytest.approx(np.percentile(array[head], 1), rel=1e-5)
    assert same_grid(clip_percentiles(image), image)


def test_minmax():
    array, head, _ = phantom()
    out = array_from_image(minmax(on_grid(array)))
    assert out.min() == 0 and out.max() == pytest.approx(1)
    masked = array_from_image(minmax(on_grid(array), mask_image(head)))[head]
    assert masked.min() == 0 and masked.max() == pytest.approx(1)
    assert np.all(array_from_image(minmax(on_grid(np.ones(SHAPE)))) == 0)


# ---------------------------------------------------------------------------- Nyúl


def brain_like(seed: int, scale: float, offset: float, gamma: float) -> tuple[sitk.Image, sitk.Image]:
    """The same anatomy with a different, non-linear intensity scaling (as between scanners)."""
    array, head, _ = phantom(seed)
    array = np.clip(array, 0, None) / 100.0
    return on_grid(scale * array**gamma + offset), mask_image(head)


def test_nyul_maps_different_scalings_to_the_same_landmarks():
    training = [brain_like(1, 800, 0, 1.0), brain_like(2, 300, 50, 1.3)]
    nyul = NyulStandardizer().fit([t[0] for t in training], [t[1] for t in training])

    a, mask_a = brain_like(3, 2000, 100, 0.8)
    b, mask_b = brain_like(4, 90, -20, 1.2)
    landmarks_a = nyul.landmarks(nyul.transform(a, mask_a), mask_a)
    landmarks_b = nyul.landmarks(nyul.transform(b, mask_b), mask_b)
    raw_a, raw_b = nyul.landmarks(a, mask_a), nyul.landmarks(b, mask_b)

    assert np.abs(raw_a - raw_b).max() > 100  # very different before
    assert np.allclose(landmarks_a, nyul.standard_landmarks, atol=0.5)
    assert np.allclose(landmarks_b, nyul.standard_landmarks, atol=0.5)
    assert nyul.standard_landmarks[0] == pytest.approx(0) and nyul.standard_landmarks[-1] == pytest.approx(100)
    assert same_grid(nyul.transform(a, mask_a), a)


def test_nyul_without_mask_uses_the_foreground_and_extrapolates():
    image, _ = brain_like(5, 500, 0, 1.0)
    nyul = NyulStandardizer(percentiles=(5, 50, 95)).fit([image])
    out = array_from_image(nyul.transform(image))
    assert np.allclose(nyul.landmarks(nyul.transform(image)), nyul.standard_landmarks, atol=0.5)
    assert out.min() < 0 and out.max() > 100  # values beyond the end landmarks continue linearly


def test_nyul_round_trips_through_a_model_card():
    image, mask = brain_like(6, 700, 10, 1.1)
    nyul = NyulStandardizer().fit([image], [mask])
    stored = json.loads(json.dumps(nyul.to_dict()))
    again = NyulStandardizer.from_dict(stored)
    assert np.array_equal(array_from_image(again.transform(image, mask)), array_from_image(nyul.transform(image, mask)))
    with pytest.raises(InputError):
        NyulStandardizer.from_dict({**stored, "standard_landmarks": [1.0, 2.0]})
    with pytest.raises(RuntimeError):
        NyulStandardizer().transform(image)


def test_nyul_handles_tied_landmarks():
    array = np.zeros(SHAPE)
    array[:, :, :30] = 10.0
    array[:, :, 30:] = np.linspace(20, 40, SHAPE[2] - 30)
    mask = mask_image(np.ones(SHAPE, bool))
    nyul = NyulStandardizer().fit([on_grid(array)], [mask])
    assert np.all(np.diff(nyul.standard_landmarks) > 0)
    assert np.all(np.isfinite(array_from_image(nyul.transform(on_grid(array), mask))))
