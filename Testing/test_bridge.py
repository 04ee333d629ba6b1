"""The MRML bridge on real MRML (slicer-core): conversions and round trips through Slicer's own storage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")

import slicer  # noqa: E402
import slicerio  # noqa: E402
import vtk  # noqa: E402

from spinebrain import geometry, outputs  # noqa: E402
from spinebrain.anatomy import structure  # noqa: E402
from spinebrain.errors import InputError  # noqa: E402
from spinebrain.geometry import index_to_ras  # noqa: E402
from spinebrain.points import LabelledPoint  # noqa: E402
from spinebrain.tables import Column  # noqa: E402
from spinebrain_slicer import bridge  # noqa: E402
from spinebrain_slicer.bridge.segmentations import LABEL_VALUE_TAG, INCOMPLETE_OPACITY  # noqa: E402


def oblique_image(dtype=np.int16, size=(9, 8, 7), seed=0) -> sitk.Image:
    """Rotated, anisotropic (0.7 x 1.3 x 3.1 mm) LPS image with random voxels."""
    rng = np.random.default_rng(seed)
    array = (rng.normal(0, 300, size[::-1])).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 1.3, 3.1))
    image.SetOrigin((12.5, -40.25, 77.0))
    image.SetDirection(sitk.VersorTransform((0.3, 0.5, 0.2), 0.6).GetMatrix())
    return image


def corners_ras(image: sitk.Image) -> np.ndarray:
    size = np.array(image.GetSize()) - 1
    corners = np.array([[i, j, k] for i in (0, size[0]) for j in (0, size[1]) for k in (0, size[2])], dtype=float)
    return index_to_ras(image, corners)


def assert_same_image(actual: sitk.Image, expected: sitk.Image, tolerance_mm=1e-3):
    assert actual.GetSize() == expected.GetSize()
    assert sitk.GetArrayViewFromImage(actual).dtype == sitk.GetArrayViewFromImage(expected).dtype
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(actual), sitk.GetArrayViewFromImage(expected))
    np.testing.assert_allclose(corners_ras(actual), corners_ras(expected), atol=tolerance_mm)
    np.testing.assert_allclose(actual.GetDirection(), expected.GetDirection(), atol=1e-5)


def label_image_on(image: sitk.Image) -> sitk.Image:
    labels = np.zeros(image.GetSize()[::-1], np.uint8)
    labels[1:4, 1:5, 2:6] = 22  # L3
    labels[4:6, 2:6, 1:7] = 21  # L2
    labels[6, 0, 0] = 3  # a value without a name
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    return label_image


# ---------------------------------------------------------------- volumes


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_nifti_read_by_slicer_gives_the_simpleitk_image(scene, tmp_path, dtype):
    image = oblique_image(dtype)
    path = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(image, str(path))
    node = bridge.load_node(scene, path, "vtkMRMLScalarVolumeNode")
    assert_same_image(bridge.image_from_volume_node(node), sitk.ReadImage(str(path)))
    assert_same_image(bridge.image_from_volume_node(node), image)  # NIfTI keeps geometry as float32


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_volume_node_saved_by_slicer_reads_back_in_simpleitk(scene, tmp_path, suffix):
    image = oblique_image(np.int16)
    node = bridge.volume_node_from_image(scene, image, "result")
    path = bridge.save_node(node, tmp_path / f"result{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left behind
    assert_same_image(sitk.ReadImage(str(path)), image)


def test_updating_a_volume_node_keeps_its_id_and_touches_nothing_else(scene):
    first = bridge.volume_node_from_image(scene, oblique_image(seed=1), "result")
    other = bridge.volume_node_from_image(scene, oblique_image(seed=2), "result")
    assert other.GetName() != first.GetName()  # new nodes get unique names
    other_before = bridge.image_from_volume_node(other)

    replacement = oblique_image(np.float32, size=(4, 5, 6), seed=3)
    updated = bridge.volume_node_from_image(scene, replacement, "ignored", node=first)

    assert updated.GetID() == first.GetID() and updated.GetName() == "result"
    assert_same_image(bridge.image_from_volume_node(first), replacement)
    assert_same_image(bridge.image_from_volume_node(other), other_before)


def test_wrong_volume_inputs_are_refused(scene):
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "t")
    with pytest.raises(InputError, match="not a scalar volume"):
        bridge.image_from_volume_node(table)
    with pytest.raises(InputError, match="not a volume"):
        bridge.volume_node_from_image(scene, oblique_image(), "x", node=table)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no voxels"):
        bridge.image_from_volume_node(empty)


# ---------------------------------------------------------------- segmentations


def test_segmentation_survives_seg_nrrd_and_slicerio_agrees(scene, tmp_path):
    volume = bridge.volume_node_from_image(scene, oblique_image(), "ct")
    labels = label_image_on(oblique_image())
    names = {22: "L3", 21: "L2", 40: "Lesion"}
    node = bridge.segmentation_node_from_labels(scene, labels, names, reference_volume_node=volume)
    path = bridge.save_node(node, tmp_path / "vertebrae.seg.nrrd")

    loaded = bridge.load_node(scene, path, "vtkMRMLSegmentationNode")
    segmentation = loaded.GetSegmentation()
    assert list(segmentation.GetSegmentIDs()) == ["Segment_3", "Segment_21", "Segment_22", "Segment_40"]
    for value, name in names.items():
        segment_id = bridge.segment_id_for_label(value)
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetName() == name
        np.testing.assert_allclose(segment.GetColor(), structure(name).color, atol=1e-6)
        assert bridge.get_segment_flag(loaded, segment_id, "LabelValue") == str(value)
        tag = vtk.reference("")
        assert segment.GetTag(segment.GetTerminologyEntryTagName(), tag)
        assert str(tag) == structure(name).terminology_entry()

    exported, exported_names = bridge.labels_from_segmentation_node(loaded, volume)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(exported), sitk.GetArrayViewFromImage(labels))
    assert exported_names == {3: "Label 3", 21: "L2", 22: "L3", 40: "Lesion"}
    np.testing.assert_allclose(corners_ras(exported), corners_ras(labels), atol=1e-6)

    read = slicerio.read_segmentation(str(path))
    by_name = {s["name"]: s for s in read["segments"]}
    assert by_name["L3"]["labelValue"] == 22 and by_name["L2"]["labelValue"] == 21
    assert by_name["L3"]["terminology"]["type"][1] == structure("L3").code
    assert by_name["Lesion"]["terminology"]["category"][1] == structure("Lesion").category[1]
    voxels = read["voxels"]
    for value in (21, 22):
        assert np.count_nonzero(voxels == value) == np.count_nonzero(sitk.GetArrayViewFromImage(labels) == value)


def test_export_numbers_untagged_segments_by_vertebra_name_then_first_free_value(scene):
    volume = bridge.volume_node_from_image(scene, oblique_image(), "ct")
    labels = label_image_on(oblique_image())
    node = bridge.segmentation_node_from_labels(scene, labels, {22: "L3", 21: "Bone"}, reference_volume_node=volume)
    for segment_id in node.GetSegmentation().GetSegmentIDs():  # as if drawn by hand
        node.GetSegmentation().GetSegment(segment_id).RemoveTag(LABEL_VALUE_TAG)

    exported, names = bridge.labels_from_segmentation_node(node, volume)

    assert names == {1: "Label 3", 2: "Bone", 22: "L3"}
    source = sitk.GetArrayViewFromImage(labels)
    result = sitk.GetArrayViewFromImage(exported)
    np.testing.assert_array_equal(result == 22, source == 22)
    np.testing.assert_array_equal(result == 2, source == 21)
    np.testing.assert_array_equal(result == 1, source == 3)


def test_overlapping_segments_in_two_layers_export_with_the_later_one_winning(scene):
    image = oblique_image()
    volume = bridge.volume_node_from_image(scene, image, "ct")
    first = np.zeros(image.GetSize()[::-1], np.uint8)
    first[1:4, 1:4, 1:4] = 1
    second = np.zeros_like(first)
    second[3:6, 3:6, 3:6] = 2
    node, other = (
        bridge.segmentation_node_from_labels(scene, geometry.image_from_array(array, image), {value: name}, volume)
        for array, value, name in ((first, 1, "A"), (second, 2, "B"))
    )
    node.GetSegmentation().CopySegmentFromSegmentation(other.GetSegmentation(), bridge.segment_id_for_label(2))
    assert node.GetSegmentation().GetNumberOfLayers() == 2

    exported, names = bridge.labels_from_segmentation_node(node, volume)

    assert names == {1: "A", 2: "B"}
    expected = np.where(second > 0, 2, first)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(exported), expected)


def test_a_segmentation_made_of_surfaces_is_exported_through_the_registered_converter(scene):
    image = sitk.Image(40, 40, 40, sitk.sitkInt16)
    image.SetSpacing((1.0, 1.2, 0.9))
    volume = bridge.volume_node_from_image(scene, image, "ct")
    zyx = np.indices(image.GetSize()[::-1])
    ball = (((zyx - 20.0) ** 2).sum(axis=0) < 12.0**2).astype(np.uint8) * 22
    node = bridge.segmentation_node_from_labels(scene, geometry.image_from_array(ball, image), {22: "L3"}, volume)
    assert node.CreateClosedSurfaceRepresentation()
    segmentation = node.GetSegmentation()
    segmentation.SetSourceRepresentationName("Closed surface")
    segmentation.GetSegment(bridge.segment_id_for_label(22)).RemoveRepresentation("Binary labelmap")
    assert not segmentation.ContainsRepresentation("Binary labelmap")

    exported, names = bridge.labels_from_segmentation_node(node, volume)

    assert names == {22: "L3"}
    result = sitk.GetArrayViewFromImage(exported) == 22
    dice = 2 * np.count_nonzero(result & (ball > 0)) / (np.count_nonzero(result) + np.count_nonzero(ball))
    assert dice > 0.9


def test_updating_a_segmentation_replaces_segments_and_keeps_the_id(scene):
    volume = bridge.volume_node_from_image(scene, oblique_image(), "ct")
    labels = label_image_on(oblique_image())
    node = bridge.segmentation_node_from_labels(scene, labels, {22: "L3", 21: "L2"}, reference_volume_node=volume)
    node_id = node.GetID()
    only_l4 = sitk.BinaryThreshold(labels, 22, 22, 23, 0)
    bridge.segmentation_node_from_labels(scene, sitk.Cast(only_l4, sitk.sitkUInt8), {23: "L4"}, volume, node=node)
    assert node.GetID() == node_id
    assert [s.GetName() for s in _segments(node)] == ["L4"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


def test_closed_surfaces_can_be_made_once_converters_are_registered(scene):
    volume = bridge.volume_node_from_image(scene, oblique_image(), "ct")
    node = bridge.segmentation_node_from_labels(scene, label_image_on(oblique_image()), {22: "L3"}, volume)
    bridge.register_segmentation_converters()  # idempotent: a second call registers nothing twice
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory_rules = [rule.GetClassName() for rule in factory.GetConverterRules()]
    assert len(factory_rules) == len(set(factory_rules))
    assert node.CreateClosedSurfaceRepresentation()
    l3 = node.GetSegmentation().GetSegment(bridge.segment_id_for_label(22))
    assert l3.GetRepresentation("Closed surface").GetNumberOfPoints() > 0


def test_incomplete_flag_survives_seg_nrrd_and_is_shown_again(scene, tmp_path):
    volume = bridge.volume_node_from_image(scene, oblique_image(), "ct")
    node = bridge.segmentation_node_from_labels(scene, label_image_on(oblique_image()), {22: "L3", 21: "L2"}, volume)
    l2, l3 = bridge.segment_id_for_label(21), bridge.segment_id_for_label(22)
    bridge.set_segment_complete(node, l2, False)
    bridge.set_segment_complete(node, l3, True)
    assert node.GetDisplayNode().GetSegmentOpacity3D(l2) == pytest.approx(INCOMPLETE_OPACITY)

    loaded = bridge.load_node(scene, bridge.save_node(node, tmp_path / "s.seg.nrrd"), "vtkMRMLSegmentationNode")
    assert bridge.get_segment_flag(loaded, l2, "Complete") == "false"
    assert bridge.get_segment_flag(loaded, l3, "Complete") == "true"
    bridge.show_completeness(loaded)
    assert loaded.GetDisplayNode().GetSegmentOpacity3D(l2) == pytest.approx(INCOMPLETE_OPACITY)
    assert loaded.GetDisplayNode().GetSegmentOpacity3D(l3) == pytest.approx(1.0)
    with pytest.raises(InputError, match="no segment"):
        bridge.set_segment_flag(loaded, "T1", "Complete", True)


def test_label_map_on_another_grid_is_refused_before_any_node_is_made(scene):
    volume = bridge.volume_node_from_image(scene, oblique_image(), "ct")
    shifted = label_image_on(oblique_image())
    shifted.SetOrigin(tuple(np.array(shifted.GetOrigin()) + 2.0))
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="different grid"):
        bridge.segmentation_node_from_labels(scene, shifted, {22: "L3"}, reference_volume_node=volume)
    assert scene.GetNumberOfNodes() == nodes_before


def test_bad_label_names_and_values_are_refused(scene):
    labels = label_image_on(oblique_image())
    with pytest.raises(InputError, match="both named"):
        bridge.segmentation_node_from_labels(scene, labels, {22: "L3", 21: "L3"})
    negative = sitk.Cast(labels, sitk.sitkInt16) - 5
    with pytest.raises(InputError, match="negative"):
        bridge.segmentation_node_from_labels(scene, negative, {})


def _segments(node):
    segmentation = node.GetSegmentation()
    return [segmentation.GetSegment(segment_id) for segment_id in segmentation.GetSegmentIDs()]


def test_cli_seg_nrrd_and_slicer_seg_nrrd_agree(scene, tmp_path):
    image = oblique_image()
    volume = bridge.volume_node_from_image(scene, image, "ct")
    labels = label_image_on(image)
    names = {3: "Label 3", 21: "L2", 22: "L3"}

    cli_file = outputs.write_segmentation(labels, names, tmp_path / "cli.seg.nrrd")
    from_cli = bridge.load_node(scene, cli_file, "vtkMRMLSegmentationNode")
    in_slicer = bridge.segmentation_node_from_labels(scene, labels, names, reference_volume_node=volume)
    assert list(from_cli.GetSegmentation().GetSegmentIDs()) == list(in_slicer.GetSegmentation().GetSegmentIDs())
    exported, exported_names = bridge.labels_from_segmentation_node(from_cli, volume)
    assert exported_names == names
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(exported), sitk.GetArrayViewFromImage(labels))

    read, read_names = outputs.read_segmentation(bridge.save_node(in_slicer, tmp_path / "slicer.seg.nrrd"))
    assert read_names == names
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(read), sitk.GetArrayViewFromImage(labels))
    np.testing.assert_allclose(corners_ras(read), corners_ras(labels), atol=1e-6)


# ---------------------------------------------------------------- markups

POINTS = [
    LabelledPoint("L3", (1.25, -20.5, 33.125), confidence=0.93),
    LabelledPoint("L4", (2.0, -22.75, 1.5), confidence=0.41, description="low contrast"),
    LabelledPoint("L5", (3.5, -25.0, -30.0), user_set=True),
]


def test_points_survive_mrk_json(scene, tmp_path):
    node = bridge.markups_node_from_points(scene, POINTS, "Vertebrae")
    path = bridge.save_node(node, tmp_path / "vertebrae.mrk.json")
    loaded = bridge.points_from_markups_node(bridge.load_node(scene, path, "vtkMRMLMarkupsFiducialNode"))

    assert [p.label for p in loaded] == ["L3", "L4", "L5"]
    for got, expected in zip(loaded, POINTS):
        np.testing.assert_allclose(got.ras, expected.ras, atol=1e-3)
        assert got.user_set == expected.user_set
        assert got.description == expected.description
        if expected.confidence is None:
            assert got.confidence is None
        else:
            assert got.confidence == pytest.approx(expected.confidence, abs=1e-6)


def test_cli_mrk_json_and_slicer_mrk_json_agree(scene, tmp_path):
    cli_file = outputs.write_markups(POINTS, tmp_path / "cli.mrk.json")
    from_cli = bridge.load_node(scene, cli_file, "vtkMRMLMarkupsFiducialNode")
    bridge.check_output_markups_node(from_cli)  # a reloaded SpineLabel result may be overwritten
    got = bridge.points_from_markups_node(from_cli)
    fields = [(p.label, p.user_set, p.description) for p in POINTS]
    assert [(p.label, p.user_set, p.description) for p in got] == fields
    np.testing.assert_allclose([p.ras for p in got], [p.ras for p in POINTS], atol=1e-3)

    node = bridge.markups_node_from_points(scene, POINTS, "Vertebrae")
    read = outputs.read_markups(bridge.save_node(node, tmp_path / "slicer.mrk.json"))
    assert [(p.label, p.user_set, p.confidence) for p in read] == [(p.label, p.user_set, p.confidence) for p in POINTS]
    np.testing.assert_allclose([p.ras for p in read], [p.ras for p in POINTS], atol=1e-3)


def test_updating_points_keeps_the_node_and_skips_unplaced_points(scene):
    node = bridge.markups_node_from_points(scene, POINTS, "Vertebrae")
    node_id = node.GetID()
    bridge.markups_node_from_points(scene, POINTS[:1], "ignored", node=node)
    assert node.GetID() == node_id and node.GetName() == "Vertebrae"
    assert [p.label for p in bridge.points_from_markups_node(node)] == ["L3"]
    node.AddControlPoint([0.0, 0.0, 0.0], "L4")
    node.SetNthControlPointPositionMissing(1)  # skipped by the user while placing
    assert [p.label for p in bridge.points_from_markups_node(node)] == ["L3"]


def test_foreign_markups_nodes_are_refused(scene):
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "ruler")
    with pytest.raises(InputError, match="not a point list"):
        bridge.check_output_markups_node(line)

    fiducials = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    fiducials.AddControlPoint([1.0, 2.0, 3.0], "F-1")
    with pytest.raises(InputError, match="not vertebra labels"):
        bridge.markups_node_from_points(scene, POINTS, "x", node=fiducials)
    assert fiducials.GetNthControlPointLabel(0) == "F-1" and fiducials.GetNumberOfControlPoints() == 1

    manual = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "my annotation")
    manual.AddControlPoint([1.0, 2.0, 3.0], "L1")
    with pytest.raises(InputError, match="not made by SpineLabel"):
        bridge.check_output_markups_node(manual)

    bridge.check_output_markups_node(None)
    bridge.check_output_markups_node(scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "empty"))
    ours = bridge.markups_node_from_points(scene, POINTS, "Vertebrae")
    bridge.check_output_markups_node(ours)
    ours.RemoveAttribute("SpineBrain.Content")  # as after loading our .mrk.json: confidences still say it is ours
    bridge.check_output_markups_node(ours)


# ---------------------------------------------------------------- tables

COLUMNS = [
    Column("name", "text"),
    Column("complete", "bool"),
    Column("volume", "float", "mm³"),
    Column("voxels", "int"),
]
RECORDS = [
    {"name": "L2", "complete": False, "volume": 28123.5, "voxels": 8333},
    {"name": "L3", "complete": True, "volume": 35012.25, "voxels": 10374},
    {"name": "L4", "complete": False, "volume": None, "voxels": 0},
]


def test_table_keeps_types_and_units_through_tsv_and_reads_edited_bools(scene, tmp_path):
    node = bridge.table_node_from_records(scene, RECORDS, COLUMNS, "Vertebrae")
    assert bridge.records_from_table_node(node, COLUMNS)[:2] == RECORDS[:2]  # in memory: exact
    path = bridge.save_node(node, tmp_path / "review.tsv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review.schema.tsv", "review.tsv"]
    loaded = bridge.load_node(scene, path, "vtkMRMLTableNode")

    classes = {c.name: loaded.GetTable().GetColumnByName(c.name).GetClassName() for c in COLUMNS}
    assert classes["name"] == "vtkStringArray" and classes["complete"] == "vtkBitArray"
    assert "Float64" in classes["volume"] or classes["volume"] == "vtkDoubleArray"
    assert loaded.GetColumnUnitLabel("volume") == "mm³"
    assert loaded.GetColumnTitle("volume") == "volume (mm³)"

    records = bridge.records_from_table_node(loaded, COLUMNS)
    for got, expected in zip(records, RECORDS):
        for key in ("name", "complete", "voxels"):
            assert got[key] == expected[key]
        assert type(got["complete"]) is bool and type(got["voxels"]) is int
    # Slicer's .tsv writer keeps 6 significant digits
    assert [r["volume"] for r in records[:2]] == pytest.approx([28123.5, 35012.25], rel=1e-5)
    assert math.isnan(records[2]["volume"])

    loaded.SetCellText(2, loaded.GetColumnIndex("complete"), "1")  # the user ticks the box
    assert [r["complete"] for r in bridge.records_from_table_node(loaded, COLUMNS)] == [False, True, True]


def test_records_are_read_from_a_plain_csv_table(scene, tmp_path):
    path = tmp_path / "edited.csv"
    path.write_text("name,complete,volume,voxels\nL2,true,1.5,3\nL3,no,,4\n", encoding="utf-8")
    node = bridge.load_node(scene, path, "vtkMRMLTableNode")
    records = bridge.records_from_table_node(node, COLUMNS)
    assert [r["complete"] for r in records] == [True, False]
    assert records[0]["volume"] == 1.5 and math.isnan(records[1]["volume"])
    assert [r["voxels"] for r in records] == [3, 4]


def test_table_update_keeps_id_and_missing_columns_are_reported(scene):
    node = bridge.table_node_from_records(scene, RECORDS, COLUMNS, "Vertebrae")
    node_id = node.GetID()
    bridge.table_node_from_records(scene, RECORDS[:1], COLUMNS[:2], "ignored", node=node)
    assert node.GetID() == node_id and node.GetNumberOfColumns() == 2 and node.GetNumberOfRows() == 1
    with pytest.raises(InputError, match="no column 'volume'"):
        bridge.records_from_table_node(node, COLUMNS)


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_pir_ct_has_the_same_geometry_in_slicer_and_simpleitk(scene, real_case):
    path = real_case("A6_tptbox_sample_ct/sub-ct_label-22_ct.nii.gz")
    node = bridge.load_node(scene, path, "vtkMRMLScalarVolumeNode")
    assert_same_image(bridge.image_from_volume_node(node), sitk.ReadImage(str(path)))


@pytest.mark.realdata
def test_real_vertebra_labels_round_trip_through_a_segmentation(scene, real_case):
    ct = real_case("A6_tptbox_sample_ct/sub-ct_label-22_ct.nii.gz")
    volume = bridge.load_node(scene, ct, "vtkMRMLScalarVolumeNode")
    labels = sitk.ReadImage(str(real_case("A6_tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz")))
    names = {21: "L2", 22: "L3", 23: "L4"}
    node = bridge.segmentation_node_from_labels(scene, labels, names, reference_volume_node=volume)
    exported, exported_names = bridge.labels_from_segmentation_node(node, volume)
    assert exported_names == names
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(exported), sitk.GetArrayViewFromImage(labels))
