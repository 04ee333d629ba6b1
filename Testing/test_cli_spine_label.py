"""``spinebrain spine-label`` / ``evaluate spine-label`` from the command line: files Slicer reads, batches, metrics."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.cli import main
from spinebrain.geometry import set_geometry_from_ijk_to_ras
from spinebrain.io import write_image
from spinebrain.outputs import read_markups, write_markups
from spinebrain.points import LabelledPoint
from spinebrain.synth.spine import generate_spine


@pytest.fixture(scope="module")
def lumbar_scan(tmp_path_factory):
    case = generate_spine(5005, modality="ct", view="lumbar", spacing=(2.0, 2.0, 2.0))
    return write_image(case.image, tmp_path_factory.mktemp("scan") / "lumbar.nii.gz"), case


def test_single_scan_writes_exactly_the_named_file_and_picture(lumbar_scan, tmp_path, scene):
    scan, case = lumbar_scan
    out = tmp_path / "labels.mrk.json"
    assert main(["--quiet", "spine-label", str(scan), "--out", str(out), "--region", "lumbar", "--png",
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.mrk.json", "labels.png"]
    assert (tmp_path / "labels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from spinebrain_slicer.bridge import load_node  # reads with Slicer's own storage node

    node = load_node(scene, out, "vtkMRMLMarkupsFiducialNode")
    points = read_markups(out)
    assert node.GetNumberOfControlPoints() == len(points) >= 3
    for index, point in enumerate(points):
        assert node.GetNthControlPointLabel(index) == point.label
        np.testing.assert_allclose(node.GetNthControlPointPosition(index), point.ras, atol=1e-3)  # RAS
    reference = {p.label for p in case.points}
    assert sum(p.label in reference for p in points) >= len(points) // 2


def test_fixed_points_stay_locked_in_the_output(lumbar_scan, tmp_path):
    scan, case = lumbar_scan
    truth = {p.label: p for p in case.points}
    fixed = write_markups([LabelledPoint("L2", truth["L2"].ras, None, True)], tmp_path / "fixed.mrk.json")
    out = tmp_path / "out.mrk.json"
    assert main(["--quiet", "spine-label", str(scan), "--out", str(out), "--region", "lumbar",
                 "--fixed", str(fixed)]) == 0
    locked = [p for p in read_markups(out) if p.user_set]
    assert [p.label for p in locked] == ["L2"]
    np.testing.assert_allclose(locked[0].ras, truth["L2"].ras, atol=1e-3)


def test_batch_writes_per_case_outputs_and_summary(lumbar_scan, tmp_path):
    scan, _ = lumbar_scan
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "good.nii.gz").write_bytes(scan.read_bytes())
    tiny = sitk.GetImageFromArray(np.random.default_rng(0).normal(0, 1, (40, 20, 20)).astype(np.float32))
    write_image(set_geometry_from_ijk_to_ras(tiny, np.diag([2.0, 2.0, 1.0, 1.0])), folder / "short.nii.gz")
    out = tmp_path / "out"
    code = main(["--quiet", "spine-label", str(folder), "--out", str(out), "--region", "lumbar"])
    assert code == 2  # the failed case failed on its input
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert rows["good"]["status"] == "ok" and int(rows["good"]["vertebrae"]) >= 3
    assert rows["short"]["status"] == "failed" and "too little spine" in rows["short"]["message"]
    assert (out / "good" / "good.mrk.json").is_file()
    assert not (out / "short").exists()  # nothing written for the failed case


def test_bad_input_writes_nothing_and_says_why(tmp_path, capsys):
    image = sitk.GetImageFromArray(np.random.default_rng(1).normal(0, 1, (20, 30, 30)).astype(np.float32))
    scan = write_image(image, tmp_path / "thin.nii.gz")
    out = tmp_path / "x.mrk.json"
    assert main(["spine-label", str(scan), "--out", str(out), "--region", "lumbar"]) == 2
    assert not out.exists()
    assert "--detection-only" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ evaluate

REFERENCE = [LabelledPoint(f"L{n}", (0.0, 0.0, -35.0 * n)) for n in range(1, 6)]


def test_evaluate_prints_and_writes_the_paper_metrics(tmp_path, capsys):
    predicted = [
        LabelledPoint("L1", (1.0, 0.0, -35.0)),  # 1 mm off
        LabelledPoint("L2", (0.0, 3.0, -70.0)),  # 3 mm off
        LabelledPoint("L4", (0.0, 0.0, -105.0)),  # right place, wrong name (L3)
        LabelledPoint("L4", (0.0, 0.0, -142.0)),  # 2 mm off
        LabelledPoint("S1", (0.0, 90.0, -200.0)),  # nowhere near a vertebra: false positive
    ]  # L5 is missed
    ref = write_markups(REFERENCE, tmp_path / "case.mrk.json")
    pred_dir = tmp_path / "pred" / "case"
    pred_dir.mkdir(parents=True)
    write_markups(predicted, pred_dir / "case.mrk.json")
    table = tmp_path / "metrics.csv"
    assert main(["evaluate", "spine-label", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path),
                 "--out", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "detection sensitivity        80.0 %" in printed
    assert "localisation error mean      1.50 mm" in printed
    with open(table, newline="", encoding="utf-8") as handle:
        pooled = list(csv.DictReader(handle))[-1]
    assert pooled["case"] == "pooled (per vertebra)"
    assert float(pooled["detection sensitivity (%)"]) == 80.0  # 4 of 5
    assert float(pooled["detection precision (%)"]) == 80.0  # 4 of 5
    assert float(pooled["detection accuracy (%)"]) == pytest.approx(100 * 4 / 6, abs=0.01)
    assert float(pooled["labeling accuracy (%)"]) == 60.0  # L1, L2, L4 named right, of 5
    assert float(pooled["localisation error mean (mm)"]) == pytest.approx(1.5)  # (1 + 3 + 0 + 2) / 4
    assert int(pooled["false positives"]) == 1 and int(pooled["false negatives"]) == 1


def test_evaluate_against_a_label_map_with_partial_vertebrae(tmp_path, capsys):
    labels = np.zeros((40, 10, 10), np.uint8)
    labels[2:12] = 20  # L1 (VerSe value), slices k = 2..11
    labels[20:30] = 21  # L2
    labels[34:40] = 22  # L3, cut by the border: partial
    image = sitk.GetImageFromArray(labels)
    ref = write_image(image, tmp_path / "ref.nii.gz")
    centre_l1 = (-4.5, -4.5, 6.5)  # RAS of voxel (4.5, 4.5, 6.5): identity LPS geometry flips x, y
    pred = write_markups([LabelledPoint("L1", centre_l1), LabelledPoint("L3", (-4.5, -4.5, 24.5))],
                         tmp_path / "pred.mrk.json")
    assert main(["evaluate", "spine-label", "--pred", str(pred), "--ref", str(ref), "--partial", "L3",
                 "--out", str(tmp_path / "m.csv")]) == 0
    printed = capsys.readouterr().out
    assert "detection sensitivity        100.0 %" in printed  # L3 partial: not missed
    assert "labeling accuracy            50.0 %" in printed  # the L2 point is named L3
