"""Result files (markups, segmentations, label maps, tables, pictures) checked against real Slicer readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from spinebrain import RESEARCH_NOTICE, outputs
from spinebrain.anatomy import structure
from spinebrain.errors import InputError
from spinebrain.geometry import ijk_to_ras_matrix, index_to_ras, same_grid
from spinebrain.outputs.pictures import Panel, _panel_slice, save_montage_png, save_overview_png
from spinebrain.points import LabelledPoint, parse_point_description, point_description
from spinebrain.tables import Column

POINTS = [
    LabelledPoint("L3", (12.25, -40.5, 101.125), confidence=0.93),
    LabelledPoint("L4", (11.0, -38.0, 70.75), confidence=0.5, description="checked"),
    LabelledPoint("S1", (-3.5, 20.0, -15.0), user_set=True),
]
NAMES = {21: "L2", 22: "L3", 26: "S1"}


def oblique_label_image() -> sitk.Image:
    """Small anisotropic, obliquely oriented label map with two vertebrae (S1 named but empty)."""
    array = np.zeros((7, 9, 11), dtype=np.uint8)  # [k, j, i]
    array[1:3, 2:5, 3:7] = 21
    array[4:6, 1:3, 1:2] = 22
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 1.3, 3.1))
    image.SetOrigin((12.5, -30.25, 7.0))
    image.SetDirection(Rotation.from_euler("xyz", [12, -25, 40], degrees=True).as_matrix().ravel())
    return image


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------- markups


def test_markups_read_by_slicer(scene, tmp_path):
    path = outputs.write_markups(POINTS, tmp_path / "labels.mrk.json")
    from spinebrain_slicer.bridge import load_node  # reads with Slicer's own storage node

    node = load_node(scene, path, "vtkMRMLMarkupsFiducialNode")
    assert node.GetName() == "SpineLabel"
    assert node.GetNumberOfControlPoints() == len(POINTS)
    for index, point in enumerate(POINTS):
        assert node.GetNthControlPointLabel(index) == point.label
        np.testing.assert_allclose(node.GetNthControlPointPosition(index), point.ras, atol=1e-3)
        assert bool(node.GetNthControlPointLocked(index)) == point.user_set
        confidence, description = parse_point_description(node.GetNthControlPointDescription(index))
        assert confidence == point.confidence and description == point.description


def test_markups_file_is_lps_with_notice(tmp_path):
    path = outputs.write_markups(POINTS[:1], tmp_path / "one.mrk.json")
    document = json.loads(path.read_text())
    assert document["notice"] == RESEARCH_NOTICE
    markup = document["markups"][0]
    assert markup["coordinateSystem"] == "LPS"
    x, y, z = POINTS[0].ras
    assert markup["controlPoints"][0]["position"] == [-x, -y, z]


def test_slicer_written_markups_are_read(scene, tmp_path):
    import slicer

    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Edited")
    for point in POINTS:
        index = node.AddControlPoint(*point.ras, point.label)
        node.SetNthControlPointLocked(index, point.user_set)
        node.SetNthControlPointDescription(index, point_description(point))
    node.AddControlPoint(0.0, 0.0, 0.0, "unplaced")
    node.UnsetNthControlPointPosition(len(POINTS))  # Slicer's "missing" point: has no position
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "edited.mrk.json"))
    assert storage.WriteData(node) == 1

    points = outputs.read_markups(tmp_path / "edited.mrk.json")
    assert [p.label for p in points] == [p.label for p in POINTS]
    for read, written in zip(points, POINTS):
        np.testing.assert_allclose(read.ras, written.ras, atol=1e-3)
        assert (read.confidence, read.user_set, read.description) == (written.confidence, written.user_set, written.description)


def test_read_markups_accepts_ras_files(tmp_path):
    path = tmp_path / "ras.mrk.json"
    path.write_text(json.dumps({"markups": [{"type": "Fiducial", "coordinateSystem": "RAS", "controlPoints": [
        {"label": "C2", "position": [1.0, 2.0, 3.0], "description": "a note"}]}]}))
    (point,) = outputs.read_markups(path)
    assert point.ras == (1.0, 2.0, 3.0) and point.confidence is None and point.description == "a note"


@pytest.mark.parametrize("content", ["not json", '{"points": []}'])
def test_read_markups_rejects_other_files(tmp_path, content):
    path = tmp_path / "bad.mrk.json"
    path.write_text(content)
    with pytest.raises(InputError, match="markups"):
        outputs.read_markups(path)


def test_write_markups_rejects_non_finite_point(tmp_path):
    with pytest.raises(InputError, match="finite"):
        outputs.write_markups([LabelledPoint("L1", (0.0, float("nan"), 1.0))], tmp_path / "p.mrk.json")
    assert files_in(tmp_path) == []


# ------------------------------------------------------------------------------------- segmentations


@pytest.fixture
def segmentation_scene(scene):
    bridge = pytest.importorskip("spinebrain_slicer.bridge")
    bridge.register_segmentation_converters()  # slicer-core starts without them
    return scene


def test_segmentation_read_by_slicer(segmentation_scene, tmp_path):
    import slicer
    from slicer.util import arrayFromVolume

    scene = segmentation_scene
    labels = oblique_label_image()
    path = outputs.write_segmentation(labels, NAMES, tmp_path / "vertebrae.seg.nrrd")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1

    segmentation = node.GetSegmentation()
    segment_ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    assert [segmentation.GetSegment(s).GetName() for s in segment_ids] == list(NAMES.values())
    for segment_id, name in zip(segment_ids, NAMES.values()):
        segment = segmentation.GetSegment(segment_id)
        np.testing.assert_allclose(segment.GetColor(), structure(name).color, atol=1e-6)
        assert f"SCT^{structure(name).code}^" in segment.GetTerminology()

    # Slicer's own export on the reference geometry gives back the grid and voxels exactly
    exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToLabelmapNode(
        node, exported, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    np.testing.assert_allclose(_ijk_to_ras(exported), ijk_to_ras_matrix(labels), atol=1e-6)
    slicer_array = arrayFromVolume(exported)  # values 1..n in segment order
    original = sitk.GetArrayFromImage(labels)
    for number, value in enumerate(NAMES, start=1):
        np.testing.assert_array_equal(slicer_array == number, original == value)


def _ijk_to_ras(volume_node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_segmentation_round_trip_keeps_geometry_and_values(tmp_path):
    labels = oblique_label_image()
    path = outputs.write_segmentation(labels, NAMES, tmp_path / "v.seg.nrrd")
    read, names = outputs.read_segmentation(path)
    assert names == NAMES
    assert same_grid(read, labels, tolerance_mm=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(labels))


def test_slicer_resaved_segmentation_is_read_in_place(segmentation_scene, tmp_path):
    """Slicer crops to the segments' extent on save: the read map must still sit at the same RAS place."""
    import slicer

    scene = segmentation_scene
    labels = oblique_label_image()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(outputs.write_segmentation(labels, NAMES, tmp_path / "ours.seg.nrrd")))
    assert storage.ReadData(node) == 1
    storage.SetFileName(str(tmp_path / "slicer.seg.nrrd"))
    assert storage.WriteData(node) == 1

    read, names = outputs.read_segmentation(tmp_path / "slicer.seg.nrrd")
    assert names == NAMES
    back = sitk.Resample(read, labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0, read.GetPixelID())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))


def test_segmentation_needs_a_name_for_every_value(tmp_path):
    with pytest.raises(InputError, match=r"\[22\] have no name"):
        outputs.write_segmentation(oblique_label_image(), {21: "L2"}, tmp_path / "x.seg.nrrd")
    assert files_in(tmp_path) == []


def test_nifti_label_map_with_sidecar_round_trip(tmp_path):
    labels = oblique_label_image()
    path = outputs.write_label_map(labels, NAMES, tmp_path / "vertebrae.nii.gz")
    assert files_in(tmp_path) == ["vertebrae.json", "vertebrae.nii.gz"]
    sidecar = json.loads((tmp_path / "vertebrae.json").read_text())
    assert sidecar["notice"] == RESEARCH_NOTICE and sidecar["labels"]["22"] == "L3"
    read, names = outputs.read_label_map(path)
    assert names == NAMES
    assert same_grid(read, labels, tolerance_mm=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(labels))


def test_label_map_without_sidecar_is_refused(tmp_path):
    sitk.WriteImage(oblique_label_image(), str(tmp_path / "bare.nii.gz"))
    with pytest.raises(InputError, match="bare.json"):
        outputs.read_label_map(tmp_path / "bare.nii.gz")


# --------------------------------------------------------------------------------------------- tables

COLUMNS = [
    Column("name", "text"),
    Column("complete", "bool"),
    Column("volume", "float", "mm³"),
    Column("voxels", "int"),
]
RECORDS = [
    {"name": "L3", "complete": True, "volume": 30123.457, "voxels": 30123},
    {"name": "L4, partial", "complete": False, "volume": None, "voxels": 12},
]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_table_round_trip(tmp_path, suffix):
    path = outputs.write_table(RECORDS, COLUMNS, tmp_path / f"review{suffix}")
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert "volume (mm³)" in header and ("\t" in header) == (suffix == ".tsv")
    assert outputs.read_table(path, COLUMNS) == RECORDS


def test_table_floats_are_rounded_to_their_column(tmp_path):
    path = outputs.write_table([{"volume": 30123.456789123, "ratio": 0.123456789}],
                               [Column("volume", "float", "mm³"), Column("ratio", "float", decimals=5)],
                               tmp_path / "t.csv")
    assert path.read_text(encoding="utf-8").splitlines()[1] == "30123.457,0.12346"


def test_table_read_by_slicer_with_types_and_units(scene, tmp_path):
    import slicer

    path = outputs.write_table(RECORDS, COLUMNS, tmp_path / "review.csv")
    node = scene.AddNewNodeByClass("vtkMRMLTableNode")
    storage = slicer.vtkMRMLTableStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    assert node.GetNumberOfRows() == len(RECORDS)
    volume = node.GetTable().GetColumnByName("volume (mm³)")
    assert volume.GetDataTypeAsString() == "double"
    assert node.GetColumnUnitLabel("volume (mm³)") == "mm³"
    assert volume.GetValue(0) == pytest.approx(RECORDS[0]["volume"])
    assert node.GetTable().GetColumnByName("complete").GetValue(0) == 1
    assert node.GetCellText(1, 0) == "L4, partial"


def test_table_refuses_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match=".csv or .tsv"):
        outputs.write_table(RECORDS, COLUMNS, tmp_path / "review.xlsx")


# ---------------------------------------------------------------------------------------- atomic writes


def test_failed_segmentation_write_keeps_previous_file(tmp_path, monkeypatch):
    path = outputs.write_segmentation(oblique_label_image(), NAMES, tmp_path / "v.seg.nrrd")
    before = path.read_bytes()

    def fail_mid_write(filename, segmentation, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"NRRD0005\npartial")
        raise OSError("disk full")

    monkeypatch.setattr(outputs.segmentations.slicerio, "write_segmentation", fail_mid_write)
    with pytest.raises(InputError, match="disk full"):  # a sentence, not a raw OSError
        outputs.write_segmentation(oblique_label_image(), NAMES, path)
    assert path.read_bytes() == before
    assert files_in(tmp_path) == ["v.seg.nrrd"]


def test_failed_table_write_keeps_both_previous_files(tmp_path, monkeypatch):
    path = outputs.write_table(RECORDS, COLUMNS, tmp_path / "t.csv")
    before = {name: (tmp_path / name).read_bytes() for name in files_in(tmp_path)}
    real_write_rows = outputs.tables._write_rows
    calls = []

    def fail_on_second(*args):
        calls.append(args)
        real_write_rows(*args)
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(outputs.tables, "_write_rows", fail_on_second)
    with pytest.raises(InputError):  # a sentence, not a raw OSError
        outputs.write_table(RECORDS[:1], COLUMNS, path)
    assert {name: (tmp_path / name).read_bytes() for name in files_in(tmp_path)} == before


# -------------------------------------------------------------------------------------------- pictures


def box_volume(spacing=(1.0, 1.0, 4.0)) -> tuple[sitk.Image, np.ndarray]:
    """Axis-aligned (LPS) volume with a bright 40 x 40 x 40 mm cube in the anterior-superior corner."""
    size = [int(round(120 / s)) for s in spacing]
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin((-60.0, -60.0, -60.0))
    array = sitk.GetArrayFromImage(image)
    k0 = int(round(80 / spacing[2]))  # superior: k large
    j0 = int(round(40 / spacing[1]))  # anterior in LPS: y small
    array[k0:, :j0, :] = 100.0
    array += np.random.default_rng(0).normal(0, 1, array.shape).astype(np.float32)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out, array


def test_sagittal_slice_is_anterior_left_superior_up_with_true_aspect():
    image, _ = box_volume()
    plane_slice = _panel_slice(Panel(image))
    bright = plane_slice.image > 50
    rows, columns = np.nonzero(bright)
    height, width = plane_slice.image.shape
    assert columns.max() < width / 2 and rows.max() < height / 2  # anterior left, superior up
    # 40 mm x 40 mm stays square although the slices are 4 mm apart
    assert (rows.max() - rows.min() + 1) == pytest.approx(columns.max() - columns.min() + 1, abs=2)


def test_points_project_onto_their_voxel():
    image, _ = box_volume(spacing=(1.0, 2.0, 3.0))
    ras = index_to_ras(image, (60, 10, 35))
    plane_slice = _panel_slice(Panel(image, points=[LabelledPoint("L1", tuple(ras))]))
    column, row, _ = plane_slice.grid.TransformPhysicalPointToContinuousIndex(tuple(ras * [-1, -1, 1]))
    # anterior (small j) is left, superior (large k) is up
    assert column < plane_slice.image.shape[1] / 4 and row < plane_slice.image.shape[0] / 2


def test_overview_and_montage_pngs(tmp_path):
    import matplotlib.image

    image, _ = box_volume()
    labels = sitk.Cast(image > 50, sitk.sitkUInt8) * 22
    labels.CopyInformation(image)
    path = save_overview_png(image, tmp_path / "overview.png", points=POINTS, label_image=labels, names={22: "L3"},
                             title="test")
    assert matplotlib.image.imread(path).shape[2] in (3, 4)
    panels = [Panel(image, POINTS, labels, {22: "L3"}, plane, plane) for plane in ("sagittal", "coronal", "axial")]
    montage = save_montage_png(panels, tmp_path / "montage.png", columns=3)
    picture = matplotlib.image.imread(montage)
    assert picture.shape[1] > picture.shape[0]  # three panels side by side
    assert files_in(tmp_path) == ["montage.png", "overview.png"]


def test_unknown_plane_is_refused(tmp_path):
    image, _ = box_volume()
    with pytest.raises(InputError, match="plane"):
        save_overview_png(image, tmp_path / "x.png", plane="oblique")
    assert files_in(tmp_path) == []


def test_an_estimated_point_is_drawn_with_a_question_mark():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinebrain.outputs.pictures import _draw_points
    from spinebrain.points import ESTIMATE_NOTE

    image, _ = box_volume()
    grid = _panel_slice(Panel(image)).grid
    points = [LabelledPoint("L1", (0.0, 0.0, 0.0), 0.9),
              LabelledPoint("L2", (0.0, 0.0, -20.0), 0.0, description=f"{ESTIMATE_NOTE}: placed between L1 and L3")]
    figure, axes = plt.subplots()
    _draw_points(axes, points, grid)
    assert [text.get_text() for text in axes.texts] == ["L1", "L2?"]
    plt.close(figure)
