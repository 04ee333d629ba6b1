"""BrainSeg tissue refinement (network prior x the scan's intensity mixture) and the training clock stop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinebrain.brainseg.refine import refine_tissue
from spinebrain.brainseg.training import clock_stop
from spinebrain.errors import InputError


@pytest.fixture(scope="module")
def phantom():
    """Nested shells: CSF outside, GM, WM core, inside a brain ball; T1-like means with noise."""
    grid = np.indices((40, 40, 40)) - 19.5
    radius = np.sqrt((grid ** 2).sum(0))
    truth = np.select([radius < 9, radius < 14, radius < 18], [3, 2, 1], 0).astype(np.uint8)
    rng = np.random.default_rng(0)
    image = np.choose(truth, [0.0, 30.0, 80.0, 130.0]) + rng.normal(0, 8, truth.shape)
    return truth, image.astype(np.float32), truth > 0


def vague_prior(truth: np.ndarray, shift: int = 2) -> np.ndarray:
    """A network-like prior: the truth one-hot, shifted and blurred, half mixed with a flat guess."""
    onehot = np.stack([np.roll(truth == c, shift, axis=0).astype(np.float32) for c in range(4)])
    blurred = np.stack([ndimage.gaussian_filter(channel, 2.0) for channel in onehot])
    return 0.5 * blurred / blurred.sum(0, keepdims=True) + 0.5 / 4


def dice(a, b, c):
    return 2 * np.sum((a == c) & (b == c)) / (np.sum(a == c) + np.sum(b == c))


def test_refinement_sharpens_a_vague_prior_with_the_intensities(phantom):
    truth, image, inside = phantom
    prior = vague_prior(truth)
    network = np.where(inside, prior[1:].argmax(0) + 1, 0)
    refined = refine_tissue(prior, image, inside, prior_weight=0.5)
    assert set(np.unique(refined[~inside])) == {0} and set(np.unique(refined[inside])) <= {1, 2, 3}
    for c in (1, 2, 3):
        assert dice(refined, truth, c) > max(0.95, dice(network, truth, c))


def test_the_class_order_comes_from_the_prior_not_an_assumed_contrast(phantom):
    truth, image, inside = phantom
    prior = vague_prior(truth)
    assert np.array_equal(refine_tissue(prior, image, inside), refine_tissue(prior, -image, inside))


def test_an_image_without_three_clusters_keeps_the_networks_answer(phantom):
    truth, _, inside = phantom
    prior = vague_prior(truth)
    flat = np.random.default_rng(1).normal(0, 1, truth.shape).astype(np.float32)  # no tissue contrast at all
    network = np.where(inside, np.clip(prior[1:4], 1e-4, None).argmax(0) + 1, 0)
    assert np.array_equal(refine_tissue(prior, flat, inside), network)


def test_clock_stop_writes_the_stop_file_once_the_time_has_passed(tmp_path, monkeypatch):
    import time

    assert clock_stop(None, tmp_path) == []
    [(_, stop_check)] = clock_stop("00:00", tmp_path)  # the next midnight: at most a day away
    stop_check(None)
    assert not (tmp_path / "STOP").exists()
    later = time.time() + 24 * 3600 + 60
    monkeypatch.setattr(time, "time", lambda: later)
    stop_check(None)
    assert (tmp_path / "STOP").is_file()
    with pytest.raises(InputError, match="HH:MM"):
        clock_stop("quarter past three", tmp_path)
