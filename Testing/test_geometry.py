"""The axis-order and RAS/LPS convention of spinebrain.geometry, checked against SimpleITK itself."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from spinebrain.geometry import (
    LPS_TO_RAS,
    array_from_image,
    geometry_from_ijk_to_ras,
    image_from_array,
    index_to_ras,
    ijk_to_ras_matrix,
    lps_to_ras,
    ras_to_index,
    ras_to_lps,
    same_grid,
    set_geometry_from_ijk_to_ras,
)


def oblique_image(size=(7, 5, 3), spacing=(0.7, 1.3, 3.1), euler=(25, -10, 40), origin=(-80.5, 12.25, 301.0)):
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(Rotation.from_euler("zyx", euler, degrees=True).as_matrix().ravel())
    return image


ORIENTED = [
    oblique_image(),
    oblique_image(euler=(0, 0, 0)),
    oblique_image(euler=(180, 0, 0), spacing=(2.0, 0.5, 0.5)),  # LAS/RAS-like flips
    oblique_image(euler=(90, 45, -30), spacing=(1.0, 1.0, 5.0)),
]


@pytest.mark.parametrize("image", ORIENTED)
def test_index_to_ras_agrees_with_simpleitk(image):
    rng = np.random.default_rng(1)
    indices = rng.uniform(-2, 8, size=(20, 3))
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(p)) for p in indices])
    assert np.allclose(index_to_ras(image, indices), lps_to_ras(expected), atol=1e-9)
    # single point in, single point out
    assert index_to_ras(image, indices[0]).shape == (3,)
    assert np.allclose(index_to_ras(image, indices[0]), expected[0] * [-1, -1, 1])


@pytest.mark.parametrize("image", ORIENTED)
def test_ras_to_index_inverts_index_to_ras(image):
    indices = np.array([[0, 0, 0], [6, 4, 2], [1.5, 2.25, 0.5]])
    assert np.allclose(ras_to_index(image, index_to_ras(image, indices)), indices, atol=1e-9)
    lps = image.TransformContinuousIndexToPhysicalPoint((1.5, 2.25, 0.5))
    assert np.allclose(ras_to_index(image, ras_to_lps(lps)), (1.5, 2.25, 0.5), atol=1e-9)


@pytest.mark.parametrize("image", ORIENTED)
def test_ijk_to_ras_matrix_round_trip(image):
    matrix = ijk_to_ras_matrix(image)
    spacing, origin, direction = geometry_from_ijk_to_ras(matrix)
    assert np.allclose(spacing, image.GetSpacing())
    assert np.allclose(origin, image.GetOrigin())
    assert np.allclose(direction, image.GetDirection())

    copy = set_geometry_from_ijk_to_ras(sitk.Image(image.GetSize(), sitk.sitkUInt8), matrix)
    assert same_grid(copy, image, tolerance_mm=1e-9)
    assert np.allclose(ijk_to_ras_matrix(copy), matrix)


def test_ijk_to_ras_matrix_of_a_plain_image():
    image = sitk.Image([4, 4, 4], sitk.sitkUInt8)
    image.SetSpacing((2.0, 3.0, 4.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    expected = np.array([[-2, 0, 0, -10], [0, -3, 0, -20], [0, 0, 4, 30], [0, 0, 0, 1]], dtype=float)
    assert np.array_equal(ijk_to_ras_matrix(image), expected)


def test_geometry_from_matrix_rejects_a_zero_axis():
    matrix = np.eye(4)
    matrix[:, 1] = 0
    with pytest.raises(ValueError, match="zero-length"):
        geometry_from_ijk_to_ras(matrix)


def test_lps_ras_flip_is_its_own_inverse():
    points = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
    assert np.array_equal(lps_to_ras(points), [[-1, 2, 3], [-4, -5, -6]])
    assert np.array_equal(ras_to_lps(lps_to_ras(points)), points)
    assert np.array_equal(LPS_TO_RAS @ LPS_TO_RAS, np.eye(3))


def test_array_order_is_kji():
    image = oblique_image(size=(7, 5, 3))
    image[6, 1, 2] = 42  # SimpleITK indexes (i, j, k)
    array = array_from_image(image)
    assert array.shape == (3, 5, 7)
    assert array[2, 1, 6] == 42 and array.sum() == 42

    back = image_from_array(array, reference=image)
    assert back[6, 1, 2] == 42 and same_grid(back, image, tolerance_mm=1e-12)
    with pytest.raises(ValueError, match="does not match"):
        image_from_array(array.transpose(2, 1, 0), reference=image)


def test_same_grid_detects_each_difference():
    image = oblique_image()
    assert same_grid(image, sitk.Image(image))
    moved = sitk.Image(image)
    moved.SetOrigin(tuple(np.array(image.GetOrigin()) + [0, 0, 0.01]))
    assert not same_grid(image, moved)
    assert same_grid(image, moved, tolerance_mm=0.1)
    finer = sitk.Image(image)
    finer.SetSpacing((0.7, 1.3, 3.0))
    assert not same_grid(image, finer)
    assert not same_grid(image, oblique_image(size=(7, 5, 4)))
    flipped = oblique_image(euler=(25, -10, 40 + 180))
    assert not same_grid(image, flipped)
