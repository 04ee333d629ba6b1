"""The README's first command, ``spinebrain demo``, end to end on a generated scan."""

from __future__ import annotations

import json

import SimpleITK as sitk

from spinebrain.cli import main
from spinebrain.outputs import read_markups, read_table
from spinebrain.tables import Column


def test_demo_writes_labels_picture_score_and_reference(tmp_path, scene):
    from spinebrain_slicer.bridge import load_node

    out = tmp_path / "demo"
    assert main(["--quiet", "demo", "--out", str(out), "--seed", "3"]) == 0

    scan = sitk.ReadImage(str(out / "scan_1mm.nrrd"))
    assert scan.GetSpacing() == (1.0, 1.0, 1.0)
    assert (out / "labels_overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "reference" / "spine_vertebrae.seg.nrrd").exists()

    points = read_markups(out / "labels.mrk.json")
    assert points and all(p.confidence is not None for p in points)
    node = load_node(scene, out / "labels.mrk.json", "vtkMRMLMarkupsFiducialNode")  # Slicer's own reader
    assert [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())] == [p.label for p in points]

    columns = [Column("metric", "text"), Column("value", "float"), Column("unit", "text")]
    score = {row["metric"]: row for row in read_table(out / "labels_score.csv", columns)}
    assert score["detection sensitivity"]["unit"] == "%" and 0 <= score["detection sensitivity"]["value"] <= 100
    assert score["localisation error (mean)"]["unit"] == "mm"
    assert "notice" in json.loads((out / "labels.mrk.json").read_text())


def test_demo_on_the_users_scan_labels_it_without_a_reference(tmp_path):
    from spinebrain.synth.spine import generate_spine

    case = generate_spine(seed=5, modality="t2", view="lumbar", spacing=(1.5, 1.5, 3.0))
    scan = tmp_path / "my_scan.nii.gz"
    sitk.WriteImage(case.image, str(scan))
    out = tmp_path / "demo"
    assert main(["--quiet", "demo", "--input", str(scan), "--out", str(out)]) == 0
    assert (out / "labels.mrk.json").exists() and (out / "labels_overview.png").exists()
    assert not (out / "labels_score.csv").exists() and not (out / "reference").exists()
