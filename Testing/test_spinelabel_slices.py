"""SpineLabel sagittal slab extraction (exact 2D <-> 3D mapping) and point-annotation training targets."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from spinebrain.errors import InputError
from spinebrain.geometry import index_to_ras, set_geometry_from_ijk_to_ras
from spinebrain.spinelabel.slices import MODEL_PIXEL_MM, extract_sagittal_slab
from spinebrain.spinelabel.targets import (
    BACKGROUND, CENTRE, DISC, EDGE, balanced_sample, pixel_classes, points_on_slice, vertebra_spacing_mm,
)


def oblique_volume(values=None, size=(70, 60, 20)) -> sitk.Image:
    """A rotated sagittal acquisition (i -> anterior, j -> superior, k -> left, then tilted) with anisotropic voxels."""
    rotation = Rotation.from_euler("xyz", [15, -10, 25], degrees=True).as_matrix()
    permutation = np.array([[0, 0, -1], [1, 0, 0], [0, 1, 0]], float)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ permutation @ np.diag([0.9, 1.3, 3.0])
    matrix[:3, 3] = [12.0, -40.0, 30.0]
    image = set_geometry_from_ijk_to_ras(sitk.Image(*size, sitk.sitkFloat32), matrix)
    if values is not None:
        filled = sitk.GetImageFromArray(values(image).astype(np.float32))
        filled.CopyInformation(image)
        image = filled
    return image


def blob_at(center_ras, sigma_mm=4.0):
    def values(image):
        k, j, i = np.indices(image.GetSize()[::-1])
        ras = index_to_ras(image, np.c_[i.ravel(), j.ravel(), k.ravel()])
        return 100.0 * np.exp(-((ras - center_ras) ** 2).sum(1) / (2 * sigma_mm**2)).reshape(k.shape)
    return values


@pytest.mark.parametrize("pixel_mm", [MODEL_PIXEL_MM["cervical"], MODEL_PIXEL_MM["lumbar"]])
def test_blob_in_oblique_anisotropic_volume_is_found_at_its_pixel_and_maps_back(pixel_mm):
    geometry_only = extract_sagittal_slab(oblique_volume(), pixel_mm, slices_each_side=2, step_mm=4.0)
    target = (geometry_only.mid_index + 1, 30.3, 25.6)  # off the pixel centres on purpose
    center = geometry_only.pixel_to_ras(*target)

    slab = extract_sagittal_slab(oblique_volume(blob_at(center)), pixel_mm, slices_each_side=2, step_mm=4.0)
    assert np.allclose(slab.ijk_to_ras, geometry_only.ijk_to_ras)  # the grid depends on geometry only
    s, row, col = np.unravel_index(np.argmax(slab.arrays), slab.arrays.shape)
    assert (s, row, col) == (target[0], round(target[1]), round(target[2]))
    assert np.isclose(slab.r_positions[s], center[0])

    # the blob's intensity centroid on its slice maps back to its RAS position within half a pixel
    plane = slab.arrays[s]
    weights = np.clip(plane - 0.5 * plane.max(), 0, None)
    rows, cols = np.indices(plane.shape)
    centroid = ((weights * rows).sum() / weights.sum(), (weights * cols).sum() / weights.sum())
    assert np.all(np.abs(slab.pixel_to_ras(s, *centroid) - center) < 0.5 * pixel_mm)
    assert np.allclose(slab.ras_to_pixel(center), target, atol=1e-9)


def test_slab_axes_point_inferior_posterior_right_at_the_model_pixel_size():
    slab = extract_sagittal_slab(oblique_volume(), 2.0, slices_each_side=1, step_mm=3.0)
    origin = slab.pixel_to_ras(0, 0, 0)
    assert np.allclose(slab.pixel_to_ras(0, 1, 0) - origin, [0, 0, -2.0])  # next row: 2 mm inferior
    assert np.allclose(slab.pixel_to_ras(0, 0, 1) - origin, [0, -2.0, 0])  # next column: 2 mm posterior
    assert np.allclose(slab.pixel_to_ras(1, 0, 0) - origin, [3.0, 0, 0])  # next slice: 3 mm right
    assert np.allclose(np.diff(slab.r_positions), 3.0) and len(slab) == 3 == len(slab.arrays)

    pixels = np.array([[0, 1.5, 2.0], [2, 10.25, 7.0], [1, 0.0, 33.3]])
    ras = slab.pixel_to_ras(pixels[:, 0], pixels[:, 1], pixels[:, 2])
    assert ras.shape == (3, 3) and np.allclose(slab.ras_to_pixel(ras), pixels)
    assert np.allclose(index_to_ras(slab.image(), pixels[:, ::-1]), ras)  # the slab image carries the geometry


def test_a_crop_keeps_the_grid_and_refuses_empty_blocks():
    slab = extract_sagittal_slab(oblique_volume(), 2.0, slices_each_side=2, step_mm=3.0)
    crop = slab.crop(slice(1, 4), slice(3, 9), slice(2, 12))
    assert crop.arrays.shape == (3, 6, 10) and np.array_equal(crop.arrays, slab.arrays[1:4, 3:9, 2:12])
    assert np.allclose(crop.pixel_to_ras(0, 0, 0), slab.pixel_to_ras(1, 3, 2))
    assert np.allclose(crop.ras_to_pixel(slab.pixel_to_ras(2, 5.5, 7.0)), [1, 2.5, 5.0])
    assert np.allclose(crop.r_positions, slab.r_positions[1:4]) and crop.mid_index == 1
    with pytest.raises(InputError, match="non-empty"):
        slab.crop(rows=slice(5, 5))


def test_mid_sagittal_slice_is_the_middle_of_the_left_right_extent_and_outside_slices_are_dropped():
    spacing = (1.0, 1.0, 2.0)
    image = sitk.Image(20, 30, 9, sitk.sitkInt16)  # LPS axes; k is superior, i is left: R extent 19 mm
    image.SetSpacing(spacing)
    slab = extract_sagittal_slab(image, 1.0, slices_each_side=3, step_mm=4.0)
    corners = index_to_ras(image, np.array([[0, 0, 0], [19, 29, 8]], float))
    assert np.isclose(slab.r_positions[slab.mid_index], corners[:, 0].mean())
    assert len(slab) == 5  # +-12 mm would leave the 19 mm wide volume; +-4 and +-8 stay
    assert slab.arrays.shape[1:] == (17, 30)  # rows: 16 mm S-I extent at 1 mm; columns: 29 mm A-P

    leftmost = corners[:, 0].min()  # R of the leftmost voxel centre
    off_centre = extract_sagittal_slab(image, 1.0, slices_each_side=3, step_mm=4.0, center_r=leftmost + 1)
    assert off_centre.mid_index == 0 and len(off_centre) == 4  # only the slices towards the volume remain
    assert np.allclose(off_centre.r_positions, leftmost + 1 + np.array([0, 4, 8, 12]))


def test_bad_volumes_are_refused_with_an_input_error():
    with pytest.raises(InputError, match="3D"):
        extract_sagittal_slab(sitk.Image(10, 10, sitk.sitkFloat32), 1.0)
    with pytest.raises(InputError, match="components"):
        extract_sagittal_slab(sitk.Image([5, 5, 5], sitk.sitkVectorFloat32, 3), 1.0)
    with pytest.raises(InputError, match="positive"):
        extract_sagittal_slab(sitk.Image(5, 5, 5, sitk.sitkFloat32), 0.0)


# -- training targets ------------------------------------------------------------------------------
POINTS = np.array([[10.0, 20.0], [27.0, 21.0], [44.0, 22.0]])  # (row, col), 17 px apart


def test_pixel_classes_follow_the_circle_rules():
    classes = pixel_classes((60, 45), POINTS, pixel_mm=2.0)
    spacing_mm = vertebra_spacing_mm(POINTS, 2.0)
    assert np.isclose(spacing_mm, 2.0 * np.hypot(17, 1))
    rows, cols = np.indices(classes.shape)
    distance = np.min([np.hypot(rows - r, cols - c) for r, c in POINTS], axis=0) * 2.0

    assert np.all(classes[distance <= 0.2 * spacing_mm - 1e-6] == CENTRE)
    # beyond the edge circle only the tips of the disc lenses (radius 0.65 spacing) remain
    assert set(np.unique(classes[distance > 0.6 * spacing_mm + 1e-6])) == {BACKGROUND, DISC}
    assert np.all(classes[distance > 0.65 * spacing_mm + 1e-6] == BACKGROUND)
    assert classes[18, 20] == DISC and classes[36, 22] == DISC  # between adjacent points
    assert classes[10, 20 + 7] == EDGE  # beside a centre, outside its small circle
    assert classes[10 - 8, 20] == EDGE  # above the first vertebra there is no disc (no neighbour)
    assert set(np.unique(classes)) == {BACKGROUND, CENTRE, DISC, EDGE}

    # explicit radii override the spacing rule
    small = pixel_classes((60, 45), POINTS, pixel_mm=2.0, centre_radius_mm=2.0, edge_radius_mm=8.0)
    assert (small == CENTRE).sum() < (classes == CENTRE).sum() and small[10, 20 + 7] == BACKGROUND


def test_anchor_targets_make_only_the_anchor_centre_positive():
    classes = pixel_classes((60, 45), POINTS, pixel_mm=2.0)
    anchor = pixel_classes((60, 45), POINTS, pixel_mm=2.0, anchor_index=2)
    assert anchor[44, 22] == CENTRE and anchor[10, 20] == EDGE and anchor[27, 21] == EDGE
    assert np.array_equal(anchor == CENTRE, (classes == CENTRE) & (np.indices(classes.shape)[0] > 35))


def test_balanced_sample_keeps_every_centre_pixel_and_equal_numbers_of_the_others():
    classes = pixel_classes((60, 45), POINTS, pixel_mm=2.0)
    indices = balanced_sample(classes, np.random.default_rng(0))
    picked = classes.ravel()[indices]
    n_centre = (classes == CENTRE).sum()
    assert len(np.unique(indices)) == len(indices)
    assert (picked == CENTRE).sum() == n_centre
    for value in (BACKGROUND, DISC, EDGE):
        assert (picked == value).sum() == min(n_centre, (classes == value).sum())
    assert not np.array_equal(indices, balanced_sample(classes, np.random.default_rng(1)))
    assert len(balanced_sample(np.zeros((5, 5), np.int8), np.random.default_rng(0))) == 0


def test_targets_refuse_one_point_without_a_spacing_and_inverted_radii():
    with pytest.raises(InputError, match="spacing"):
        pixel_classes((20, 20), [[5.0, 5.0]], pixel_mm=1.0)
    assert (pixel_classes((20, 20), [[5.0, 5.0]], pixel_mm=1.0, spacing_mm=15.0) == CENTRE).any()
    with pytest.raises(InputError, match="radius"):
        pixel_classes((20, 20), POINTS, pixel_mm=1.0, centre_radius_mm=9.0, edge_radius_mm=4.0)


def test_points_on_slice_selects_the_annotations_of_that_slice():
    slab = extract_sagittal_slab(oblique_volume(), 2.0, slices_each_side=2, step_mm=4.0)
    wanted = [(1, 12.0, 9.5), (1, 30.0, 11.0), (3, 20.0, 10.0)]
    points = slab.pixel_to_ras(*np.array(wanted).T) + np.array([1.5, 0, 0])  # 1.5 mm off the slice plane
    on_one = points_on_slice(slab, points, 1)
    assert np.allclose(on_one, [[12.0, 9.5], [30.0, 11.0]])
    assert np.allclose(points_on_slice(slab, points, 3), [[20.0, 10.0]])
    assert points_on_slice(slab, points, 1, tolerance_mm=1.0).shape == (0, 2)


@pytest.mark.parametrize("oblique", [False, True])
def test_blurring_only_the_band_gives_the_same_slab_as_blurring_the_whole_volume(monkeypatch, oblique):
    from spinebrain.spinelabel import slices

    rng = np.random.default_rng(3)
    if oblique:
        image = oblique_volume(lambda im: rng.normal(0, 100, im.GetSize()[::-1]), size=(90, 60, 40))
    else:  # wide in R (0.5 mm voxels) against a narrow band: most of the volume is cropped away
        image = sitk.GetImageFromArray(rng.normal(0, 100, (30, 40, 200)).astype(np.float32))
        image.SetSpacing((0.5, 1.0, 1.5))
    corners = slices._corner_ras(image)
    cropped = slices._around_band(image, corners.min(axis=0), corners.max(axis=0), -4.0, 4.0)
    assert np.prod(cropped.GetSize()) < np.prod(image.GetSize())
    fast = extract_sagittal_slab(image, 2.0, slices_each_side=2, step_mm=2.0)
    monkeypatch.setattr(slices, "_around_band", lambda image, *bounds: image)
    whole = extract_sagittal_slab(image, 2.0, slices_each_side=2, step_mm=2.0)
    assert np.allclose(fast.ijk_to_ras, whole.ijk_to_ras)
    assert np.allclose(fast.arrays, whole.arrays, atol=1e-3)


def test_fine_voxels_are_binned_before_the_blur_and_the_slab_stays_that_of_the_gaussian_alone(monkeypatch):
    """A 0.7 mm volume at 2 mm pixels: pairs of voxels are averaged first (a quarter of the voxels to blur);
    the Gaussian adds the variance the box lacks, so the slab and a blob's place stay those of the Gaussian alone."""
    from spinebrain.spinelabel import slices

    fine = oblique_volume(size=(120, 100, 40))
    fine.SetSpacing((0.7, 0.7, 1.2))
    assert list(slices._bins(fine, 2.0)) == [2, 2, 1]
    assert list(slices._bins(oblique_volume(), 2.0)) == [1, 1, 1]  # 0.9 mm: binning would coarsen the slab
    centre = extract_sagittal_slab(fine, 2.0, slices_each_side=2, step_mm=2.0).pixel_to_ras(2, 14.3, 16.6)
    values = blob_at(centre, sigma_mm=3.0)(fine).astype(np.float32)
    image = sitk.GetImageFromArray(values + np.random.default_rng(0).normal(0, 5, values.shape).astype(np.float32))
    image.CopyInformation(fine)

    binned = extract_sagittal_slab(image, 2.0, slices_each_side=2, step_mm=2.0)
    monkeypatch.setattr(slices, "_bins", lambda image, pixel_mm: np.ones(3, int))
    gaussian = extract_sagittal_slab(image, 2.0, slices_each_side=2, step_mm=2.0)
    assert np.allclose(binned.ijk_to_ras, gaussian.ijk_to_ras)
    assert np.abs(binned.arrays - gaussian.arrays).max() < 0.06 * gaussian.arrays.max()
    assert np.std(binned.arrays - gaussian.arrays) < 0.05 * np.std(gaussian.arrays[gaussian.arrays < 20])  # noise too

    def centroid(slab):
        plane = slab.arrays[2]
        weights = np.clip(plane - 0.5 * plane.max(), 0, None)
        rows, cols = np.indices(plane.shape)
        return np.array([(weights * rows).sum(), (weights * cols).sum()]) / weights.sum()
    assert np.all(np.abs(centroid(binned) - centroid(gaussian)) < 0.1)  # pixels (0.2 mm)
    assert np.all(np.abs(centroid(binned) - [14.3, 16.6]) < 0.25)
