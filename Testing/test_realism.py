"""Realism report: generated vs real cases (montage, histograms, vertebra sizes), with and without real data."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.anatomy import VERTEBRA_LABELS
from spinebrain.cli import build_parser, execute
from spinebrain.outputs import read_table
from spinebrain.protocol import Progress
from spinebrain.synth import morphometry
from spinebrain.synth.realism import (
    BRAIN_VOLUME_COLUMNS,
    INTENSITY_COLUMNS,
    SIZE_COLUMNS,
    border_sharpness,
    brain_report,
    histogram_overlap,
    vertebra_sizes,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(argv):
    stream = io.StringIO()
    args = build_parser().parse_args(["--progress-json", *argv])
    code = execute(args.run, args, Progress(json_lines=True, stream=stream))
    return code, [json.loads(line) for line in stream.getvalue().splitlines()]


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


def test_vertebra_sizes_of_a_box():
    """A 20 x 30 x 40 mm block labelled L3: volume, extents and completeness are measured, not assumed."""
    array = np.zeros((30, 30, 30), np.uint8)
    array[5:25, 5:20, 5:15] = VERTEBRA_LABELS["L3"]  # k (S) 20 slices, j (A) 15, i (R) 10 at 2 mm
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # i -> R, j -> A, k -> S (RAS)
    (row,) = vertebra_sizes(image)
    assert row["level"] == "L3" and row["complete"]
    assert row["volume"] == pytest.approx(20 * 15 * 10 * 8 / 1000.0)
    assert row["body height"] == pytest.approx(38.0, abs=2.5)  # voxel centres span 19 steps of 2 mm
    assert row["body width"] == pytest.approx(18.0, abs=2.5)
    assert sorted([row["box length"], row["box width"], row["box thickness"]]) == pytest.approx([20, 30, 40], abs=0.5)
    array[0, 10, 10] = VERTEBRA_LABELS["L3"]  # now it touches the border
    touching = sitk.GetImageFromArray(array)
    touching.CopyInformation(image)
    assert not vertebra_sizes(touching)[0]["complete"]


def test_histogram_overlap_and_border_sharpness():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 20000), rng.normal(0, 1, 20000)
    assert histogram_overlap(a, b) > 0.9 and histogram_overlap(a, b + 10) < 0.05
    assert 0.3 < histogram_overlap(a, b + 1) < 0.8
    step = np.zeros((20, 20, 20), np.float32)
    step[:, :, 10:] = 1.0  # GM (0) | WM (1) along i
    gm, wm = step == 0, step == 1
    step += 0.5
    sharp = sitk.GetImageFromArray(step)
    blurred = sitk.SmoothingRecursiveGaussian(sharp, 2.0)
    assert border_sharpness(sharp, gm, wm) > 1.5 * border_sharpness(blurred, gm, wm) > 0


def test_spine_report_without_real_data(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    out = tmp_path / "report"
    code, events = _run(["realism", "spine", "--out", str(out), "--data", str(empty), "--cases", "1", "--spacing", "3"])
    assert code == 0, events
    logs = " ".join(e["message"] for e in events if e["event"] == "log")
    assert "generated cases only" in logs and str(empty) in logs
    written = {e["path"] for e in events if e["event"] == "result"}
    for name in ("realism_spine.png", "spine_intensity_histograms.png", "vertebra_sizes.png"):
        assert str(out / name) in written and _is_png(out / name)
    rows = read_table(out / "vertebra_sizes.csv", SIZE_COLUMNS)
    assert {r["source"] for r in rows} == {"generated", "published"}
    generated = [r for r in rows if r["source"] == "generated" and r["complete"]]
    assert {"L3", "C6"} <= {r["level"] for r in generated}
    for r in generated:  # generated sizes within a factor 2 of the published body height
        published = morphometry.LEVEL_SIZES[r["level"]].height
        if r["level"] not in ("C1", "C2", "S1"):
            assert published / 2 < r["body height"] < published * 2, r
    stats = read_table(out / "spine_intensity_stats.csv", INTENSITY_COLUMNS)
    ct_bone = [r["median"] for r in stats if r["image"] == "CT" and r["class"] == "vertebra"]
    assert ct_bone and all(100 < v < 1000 for v in ct_bone)


@pytest.mark.realdata
def test_spine_report_with_real_data(data_dir, real_case, tmp_path):
    real_case("A6_tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz")
    code, events = _run(["realism", "spine", "--out", str(tmp_path), "--data", str(data_dir), "--cases", "1",
                         "--spacing", "3"])
    assert code == 0, events
    assert _is_png(tmp_path / "realism_spine.png")
    rows = read_table(tmp_path / "vertebra_sizes.csv", SIZE_COLUMNS)
    real = {(r["case"], r["level"]): r for r in rows if r["source"] == "real"}
    l3 = real[("A6", "L3")]
    assert l3["complete"] and not real[("A6", "L2")]["complete"]
    labels = sitk.ReadImage(str(real_case("A6_tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz")))
    voxels = np.count_nonzero(sitk.GetArrayViewFromImage(labels) == 22)
    assert l3["volume"] == pytest.approx(voxels * np.prod(labels.GetSpacing()) / 1000.0, abs=5e-4)  # tables round to 0.001
    assert 20 < l3["volume"] < 90  # cm³: a lumbar vertebra, mask volume in a wide sanity range
    assert 18 < l3["body height"] < 40
    a8 = [r for (case, _), r in real.items() if case == "A8"]
    assert len(a8) == 9 and all(10 < r["volume"] < 100 for r in a8)
    stats = read_table(tmp_path / "spine_intensity_stats.csv", INTENSITY_COLUMNS)
    real_bone = [r for r in stats if r["source"] == "real" and r["image"] == "CT" and r["class"] == "vertebra"]
    assert {r["case"] for r in real_bone} == {"A3", "A5", "A6"}
    assert all(100 < r["median"] < 700 for r in real_bone)
    summary = " ".join(e["message"] for e in events if e["event"] == "log")
    assert "A6" in summary and "L3" in summary


@pytest.mark.slow
def test_brain_report_without_real_data(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    report = brain_report(tmp_path / "report", data_dir=empty, cases=1, spacing=3.0)
    assert report.real_cases == [] and "generated cases only" in report.notes[0]
    assert all(p.is_file() for p in report.files)
    assert _is_png(tmp_path / "report" / "realism_brain.png")
    volumes = read_table(tmp_path / "report" / "brain_volumes.csv", BRAIN_VOLUME_COLUMNS)
    icv = [r["volume"] for r in volumes if r["structure"] == "Intracranial volume"]
    assert len(icv) == 2 and all(900 < v < 2200 for v in icv)  # mL, adult range


@pytest.mark.slow
@pytest.mark.realdata
def test_brain_report_with_real_data(data_dir, real_case, tmp_path):
    for folder in ("B2_ms_lesjak2017_mni", "B5_nii2mesh_t1_fast", "B6_tcga_du_7294_lgg_silver"):
        real_case(folder)
    report = brain_report(tmp_path, data_dir=data_dir, cases=1, spacing=3.0)
    assert report.real_cases == ["B2", "B5", "B6"] and not report.notes
    assert _is_png(tmp_path / "realism_brain.png") and _is_png(tmp_path / "brain_intensity_histograms.png")
    volumes = read_table(tmp_path / "brain_volumes.csv", BRAIN_VOLUME_COLUMNS)
    b5 = {r["structure"]: r["volume"] for r in volumes if r["case"] == "B5"}
    assert 300 < b5["Grey matter"] < 1000 and 250 < b5["White matter"] < 900  # adult brain, mL
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(real_case("B2_ms_lesjak2017_mni/patient07/GOLD_STANDARD.nii.gz"))))
    b2_lesion = [r["volume"] for r in volumes if r["case"] == "B2" and r["structure"] == "lesion"]
    assert b2_lesion == [pytest.approx(np.count_nonzero(lesion) / 1000.0)]  # 1 mm voxels
    stats = read_table(tmp_path / "brain_intensity_stats.csv", INTENSITY_COLUMNS)
    flair = {r["class"]: r["median"] for r in stats if r["case"] == "B2" and r["image"] == "FLAIR"}
    assert flair["lesion"] > flair["brain"]  # MS lesions are bright on FLAIR
