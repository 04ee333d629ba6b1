"""Turning a scan's content (a coronal tilt): image, label map and points move together."""

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.geometry import index_to_ras, ras_to_index
from spinebrain.spinelabel.heatmap_training import tilted
from spinebrain.turn import A_P, Turn, volume_centre_ras


def _marked_volume(ras_marks: dict[int, np.ndarray]) -> sitk.Image:
    """A 60 mm cube at 1.5 mm in LPS storage, a small bright cube at each RAS mark, numbered in a label map."""
    image = sitk.Image([40, 40, 40], sitk.sitkFloat32)
    image.SetSpacing((1.5, 1.5, 1.5))
    image.SetOrigin((10.0, -20.0, 5.0))
    array = np.zeros((40, 40, 40), np.float32)
    for value, ras in ras_marks.items():
        i, j, k = np.rint(ras_to_index(image, ras)).astype(int)
        array[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2] = value
    turned = sitk.GetImageFromArray(array)
    turned.CopyInformation(image)
    return turned


def _centre_of(image: sitk.Image, value: float) -> np.ndarray:
    where = np.argwhere(sitk.GetArrayViewFromImage(image) == value)
    return index_to_ras(image, where.mean(0)[::-1])


@pytest.mark.parametrize("degrees", [-12.0, 30.0])
def test_a_turned_mark_lies_where_the_turned_point_says(degrees):
    probe = sitk.Image([40, 40, 40], sitk.sitkFloat32)
    probe.SetSpacing((1.5, 1.5, 1.5))
    probe.SetOrigin((10.0, -20.0, 5.0))
    centre = volume_centre_ras(probe)
    mark = centre + np.array([0.0, 3.0, 18.0])  # 18 mm above the centre: a coronal turn moves it across R
    labels = _marked_volume({1: mark})
    turn = Turn(degrees, A_P, centre)
    moved = turn.point(mark)
    assert np.linalg.norm(moved - centre) == pytest.approx(np.linalg.norm(mark - centre))
    assert abs(moved[0] - centre[0]) == pytest.approx(18.0 * np.sin(np.radians(abs(degrees))), abs=1e-6)
    assert moved[1] == pytest.approx(mark[1])  # A-P is the axis: unchanged
    turned = turn.image(labels, is_label=True)
    assert np.linalg.norm(_centre_of(turned, 1) - moved) < 1.5  # a voxel: nearest-neighbour steps
    assert set(np.unique(sitk.GetArrayViewFromImage(turned))) == {0, 1}  # nearest neighbour for labels


def test_a_grown_grid_keeps_a_mark_turned_out_of_the_old_field_of_view():
    probe = sitk.Image([40, 40, 40], sitk.sitkFloat32)
    probe.SetSpacing((1.5, 1.5, 1.5))
    probe.SetOrigin((10.0, -20.0, 5.0))
    centre = volume_centre_ras(probe)
    mark = centre + np.array([24.0, 0.0, 24.0])  # near a corner: turned 45 degrees it lies 34 mm out, past the face
    labels = _marked_volume({1: mark})
    turn = Turn(45.0, A_P, centre)
    assert not np.any(sitk.GetArrayFromImage(turn.image(labels, is_label=True)))  # turned out of the old grid
    grown = turn.image(labels, is_label=True, grow=0.25)
    assert grown.GetSize() == (60, 60, 60) and grown.GetSpacing() == labels.GetSpacing()
    assert np.linalg.norm(_centre_of(grown, 1) - turn.point(mark)) < 1.5  # a voxel: nearest-neighbour steps


def test_a_tilted_training_case_moves_image_labels_and_points_together():
    probe = sitk.Image([40, 40, 40], sitk.sitkFloat32)
    probe.SetSpacing((1.5, 1.5, 1.5))
    probe.SetOrigin((10.0, -20.0, 5.0))
    centre = volume_centre_ras(probe)
    points = {"L4": centre + np.array([0.0, 0.0, 12.0]), "L5": centre - np.array([0.0, 0.0, 12.0])}
    labels = sitk.Cast(_marked_volume({1: points["L4"], 2: points["L5"]}), sitk.sitkUInt8)
    image = sitk.Cast(labels > 0, sitk.sitkFloat32) * 100.0
    same = tilted(image, labels, points, 0.0)
    assert same[0] is image and same[2] is points
    turned_image, turned_labels, turned_points = tilted(image, labels, points, 15.0)
    assert set(turned_points) == {"L4", "L5"}
    step = turned_points["L4"] - turned_points["L5"]
    assert np.degrees(np.arctan2(abs(step[0]), step[2])) == pytest.approx(15.0, abs=1e-6)
    for value, name in ((1, "L4"), (2, "L5")):
        assert np.linalg.norm(_centre_of(turned_labels, value) - turned_points[name]) < 1.5  # a voxel: nearest-neighbour steps
    weights = sitk.GetArrayFromImage(turned_image)
    where = np.argwhere(weights > 0)
    weighted = (where * weights[weights > 0][:, None]).sum(0) / weights.sum()
    midpoint = (turned_points["L4"] + turned_points["L5"]) / 2
    assert np.linalg.norm(index_to_ras(turned_image, weighted[::-1]) - midpoint) < 1.5  # a voxel: nearest-neighbour steps
