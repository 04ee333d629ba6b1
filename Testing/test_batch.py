"""Batch runs: expanding inputs into cases, carrying on past failures, the summary table, exit codes."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.batch import (
    SUMMARY_NAME, BatchFailed, Case, add_batch_arguments, expand_inputs, run_batch, run_cases,
)
from spinebrain.cli import execute
from spinebrain.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, CancelledError, InputError, ModelError
from spinebrain.io import load_volume, write_image
from spinebrain.protocol import Progress


def _voxels(offset: int) -> np.ndarray:
    return (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 7 + offset).astype(np.int16)


def _volume(offset: int = 7) -> sitk.Image:
    image = sitk.GetImageFromArray(_voxels(offset))
    image.SetSpacing((0.8, 0.9, 2.0))
    return image


def _image_file(path, offset: int = 7):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(_volume(offset), str(path))
    return path


def _dicom_folder(folder, series_uid: str):
    """A small DICOM series written slice by slice, with the tags GDCM groups a series by."""
    folder.mkdir(parents=True)
    image = _volume()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0008|0060": "CT", "0020|000d": series_uid + ".0", "0020|000e": series_uid,
            "0020|0013": str(k + 1), "0020|0032": "\\".join(map(str, position)), "0020|0037": "1\\0\\0\\0\\1\\0",
            "0008|0018": f"{series_uid}.{k + 1}",
        }.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:02d}.dcm"))
        writer.Execute(slice_image)
    return folder


def _json_progress():
    stream = io.StringIO()
    return Progress(json_lines=True, stream=stream), stream


def _events(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _summary(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------ inputs


def test_files_folders_and_lists_become_named_unique_cases(tmp_path):
    first = _image_file(tmp_path / "a" / "scan.nii.gz")
    second = _image_file(tmp_path / "b" / "scan.nii.gz")
    folder = tmp_path / "folder"
    third, fourth = _image_file(folder / "sub-02.nrrd"), _image_file(folder / "sub-01.mha")
    (folder / ".scan-tmp.nrrd").write_text("a half-written temporary file")  # hidden: never a case
    listing = tmp_path / "cases.txt"
    listing.write_text("# training cases\nb/scan.nii.gz\n\n" + str(first) + "\n")
    cases = expand_inputs([first, folder, listing])
    assert [(c.name, c.path) for c in cases] == [
        ("scan", first), ("sub-01", fourth), ("sub-02", third), ("scan-2", second),
    ]
    assert all(c.series_uid is None for c in cases)


def test_csv_list_uses_the_path_column(tmp_path):
    image = _image_file(tmp_path / "images" / "case 1.nii")
    table = tmp_path / "list.csv"
    table.write_text("subject,image_path\nP1,images/case 1.nii\n,\n")
    assert expand_inputs([table]) == [Case("case 1", image)]


def test_dicom_folders_are_one_case_each(tmp_path):
    dataset = tmp_path / "dataset"
    _dicom_folder(dataset / "patient1", "1.2.826.0.1.3680043.2.1125.77.1")
    _dicom_folder(dataset / "patient2", "1.2.826.0.1.3680043.2.1125.77.2")
    (dataset / "notes.md").write_text("not an image")
    cases = expand_inputs([dataset], series_uid="1.2.3")
    assert [(c.name, c.path, c.series_uid) for c in cases] == [
        ("patient1", dataset / "patient1", "1.2.3"), ("patient2", dataset / "patient2", "1.2.3"),
    ]
    volume = load_volume(expand_inputs([dataset / "patient2"])[0].path)
    assert volume.GetSize() == (6, 5, 4)


def test_real_dicom_series_without_suffixes_is_one_case(real_case):
    folder = real_case("A3_ts_example_ct_dicom/dicom")
    assert expand_inputs([folder]) == [Case("dicom", folder)]


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere.nii.gz", "Input not found"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "No image files or DICOM series"),
    (lambda tmp: (tmp / "l.txt").write_text("gone.nii.gz\n") and tmp / "l.txt", "gone.nii.gz"),
])
def test_unusable_inputs_are_input_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        expand_inputs([make(tmp_path)])


def test_batch_arguments_parse_inputs_out_and_series():
    parser = argparse.ArgumentParser()
    add_batch_arguments(parser)
    args = parser.parse_args(["a.nii.gz", "folder", "-o", "results", "--series", "1.2"])
    assert (args.inputs, args.out, args.series) == (["a.nii.gz", "folder"], "results", "1.2")


# --------------------------------------------------------------------------------------------- run


def _threshold_case(case: Case, folder):
    """A real little pipeline: read the volume, fail on the ones named 'boom', write a mask."""
    image = load_volume(case.path, case.series_uid)
    if case.name.startswith("boom"):
        raise RuntimeError("the network produced NaNs")
    mask = write_image(sitk.Cast(image > 5, sitk.sitkUInt8), folder / "mask.nrrd")
    voxels = int(sitk.GetArrayFromImage(image > 5).sum())
    return {"outputs": [mask], "voxels": voxels, "mean": float(sitk.GetArrayFromImage(image).mean())}


def test_batch_carries_on_past_failures_and_writes_the_summary(tmp_path):
    good = _image_file(tmp_path / "in" / "good.nrrd", offset=3)
    boom = _image_file(tmp_path / "in" / "boom.nrrd")
    broken = tmp_path / "in" / "broken.nii.gz"
    broken.write_bytes(b"this is not a NIfTI file")
    dark = _image_file(tmp_path / "in" / "dark.nrrd", offset=-10)
    out = tmp_path / "out"
    progress, stream = _json_progress()
    report = run_batch(expand_inputs([tmp_path / "in"]), _threshold_case, out, progress)

    rows = {row["case"]: row for row in _summary(out / SUMMARY_NAME)}
    assert list(rows) == ["boom", "broken", "dark", "good"]
    assert [rows[n]["status"] for n in rows] == ["failed", "failed", "ok", "ok"]
    assert rows["boom"]["message"] == "Internal error: the network produced NaNs"
    assert "Could not read" in rows["broken"]["message"] and rows["broken"]["voxels"] == ""
    assert rows["good"]["outputs"] == os.path.join("good", "mask.nrrd")
    assert int(rows["good"]["voxels"]) == np.count_nonzero(_voxels(3) > 5) > 0
    assert int(rows["dark"]["voxels"]) == 0
    assert float(rows["good"]["mean"]) == pytest.approx(_voxels(3).mean())
    assert float(rows["good"]["seconds (s)"]) >= 0
    assert rows["good"]["input"] == str(good) and rows["dark"]["input"] == str(dark)
    assert sitk.ReadImage(str(out / "good" / "mask.nrrd")).GetSize() == (6, 5, 4)
    assert not (out / "boom").exists() and not (out / "broken").exists()

    events = _events(stream)
    assert [(e["name"], e["status"]) for e in events if e["event"] == "case"] == [
        ("boom", "failed"), ("broken", "failed"), ("dark", "ok"), ("good", "ok"),
    ]
    assert {"event": "result", "path": str(out / SUMMARY_NAME), "kind": "table"} in events
    assert [e["fraction"] for e in events if e["event"] == "progress"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [r.case.name for r in report.failed] == ["boom", "broken"]
    assert report.exit_code == EXIT_FAILED
    expected = r"2 of 4 cases failed \(boom: Internal error.*broken: Could not read"
    with pytest.raises(BatchFailed, match=expected) as error:
        report.raise_for_failures()
    assert error.value.exit_code == EXIT_FAILED
    assert boom.exists()


@pytest.mark.parametrize("names, code", [(["good", "good2"], EXIT_OK), (["good", "broken"], EXIT_BAD_INPUT),
                                         (["broken", "boom"], EXIT_FAILED)])
def test_batch_exit_code_through_the_cli_protocol(tmp_path, names, code):
    for name in names:
        if name == "broken":
            (tmp_path / "in").mkdir(exist_ok=True)
            (tmp_path / "in" / "broken.nrrd").write_text("NRRD0004\nnonsense\n")
        else:
            _image_file(tmp_path / "in" / f"{name}.nrrd")
    parser = argparse.ArgumentParser()
    add_batch_arguments(parser)
    args = parser.parse_args([str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    progress, stream = _json_progress()
    assert execute(lambda a, p: run_cases(a, p, _threshold_case), args, progress) == code
    events = _events(stream)
    assert events[-1] == {"event": "done", "code": code}
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == (code != EXIT_OK)
    failed = sum(not name.startswith("good") for name in names)
    if failed == len(names):  # nothing succeeded: nothing is written, not even a summary
        message = errors[0]["message"]
        assert message.startswith(f"All {failed} cases failed") and "nothing was written" in message
        assert not (tmp_path / "out").exists()
    else:  # the summary lists every case, the failed ones marked as failed
        if errors:
            assert errors[0]["message"].startswith(f"{failed} of 2 cases failed")
        rows = _summary(tmp_path / "out" / SUMMARY_NAME)
        assert len(rows) == 2 and sum(row["status"] == "failed" for row in rows) == failed


@pytest.mark.parametrize("error", [CancelledError("Cancelled by signal SIGTERM."), ModelError("No spine model.")])
def test_cancel_and_model_errors_stop_the_batch_without_a_summary(tmp_path, error):
    for name in ("a", "b", "c"):
        _image_file(tmp_path / "in" / f"{name}.nrrd")
    seen = []

    def process(case, folder):
        seen.append(case.name)
        if case.name == "b":
            raise error
        return {}

    progress, _ = _json_progress()
    with pytest.raises(type(error)):
        run_batch(expand_inputs([tmp_path / "in"]), process, tmp_path / "out", progress)
    assert seen == ["a", "b"]
    assert not (tmp_path / "out").exists()  # not even case a's finished files: a cancel leaves nothing
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # and no temporary folder
