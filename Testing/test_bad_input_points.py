"""Point files (``--fixed``) and references (``evaluate``) that cannot be used: exit 2, one sentence, nothing written.

A ``--fixed`` file is read and checked -- every point has a finite 3D position and a vertebra name,
no name twice, every point on the scan -- before any model loads (a point far outside the image
used to drop every detection silently). ``evaluate`` refuses a reference that is not a vertebra
label map of the same scan (the scan itself, a probability map, another patient's labels, a
file compared with itself) instead of printing a meaningless score.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from bad_input_support import (
    assert_clear_message,
    assert_refused,
    ct_like,
    markups_document,
    run_cli,
    snapshot,
    volume,
    write_json,
)

from spinebrain.errors import EXIT_OK, InputError
from spinebrain.geometry import index_to_ras
from spinebrain.io import write_image
from spinebrain.outputs import read_markups, write_label_map, write_markups
from spinebrain.points import LabelledPoint
from spinebrain.validate import check_points_in_image


def lps(ras):
    return [-ras[0], -ras[1], ras[2]]


@pytest.fixture
def scan(tmp_path):
    """A small CT-like scan on disk and the RAS position of its centre."""
    image = volume(ct_like())
    path = write_image(image, tmp_path / "scan.nrrd")
    centre = index_to_ras(image, np.array([[12.0, 12.0, 8.0]]))[0]
    return path, [float(v) for v in centre]


@pytest.fixture
def no_model(monkeypatch):
    import spinebrain.spinelabel.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although the input should have been refused")

    monkeypatch.setattr(pipeline, "load_spine_label_models", refuse)


def point(label="L3", position=None, **extra):
    entry = {"label": label, **extra}
    if position is not None:
        entry["position"] = position
    return entry


# name -> (document or text, words): centre-relative positions are filled in by the test
FIXED_FILES = {
    "no_position": (markups_document(point("L3")), ["L3", "no position"]),
    "two_numbers": (markups_document(point("L3", [1.0, 2.0])), ["L3", "three finite numbers"]),
    "nan_position": (markups_document(point("L3", [1.0, float("nan"), 2.0])), ["L3", "three finite"]),
    "text_position": (markups_document(point("L3", ["a", "b", "c"])), ["L3", "position"]),
    "point_not_object": (markups_document("L3"), ["not a JSON object"]),
    "unknown_name": (markups_document(point("Vertebra X", "centre")), ["not a vertebra name"]),
    "empty_name": (markups_document(point("", "centre")), ["not a vertebra name"]),
    "named_twice": (markups_document(point("L3", "centre"), point("L3", "centre")), ["L3 twice"]),
    "no_points": (markups_document(), ["no placed point"]),
    "only_preview_points": (markups_document(point("L3", "centre", positionStatus="preview")), ["no placed point"]),
    "far_outside": (markups_document(point("L3", "far")), ["L3", "outside the image"]),
    "ras_far_outside": (markups_document(point("L2", "far"), system="RAS"), ["L2", "outside the image"]),
    "unknown_coordinates": (markups_document(point("L3", "centre"), system="IJK"), ["coordinates IJK"]),
    "not_json": ("{ this is not json", ["could not read", "markups"]),
    "json_not_markups": ({"points": []}, ["not a Slicer markups file"]),
    "markups_not_a_list": ({"markups": {"type": "Fiducial"}}, ["not a Slicer markups file"]),
}


def _fill(document, centre):
    text = json.dumps(document)
    return text.replace('"centre"', json.dumps(lps(centre))).replace('"far"', json.dumps([5000.0, 0.0, 0.0]))


@pytest.mark.parametrize("case", list(FIXED_FILES))
def test_bad_fixed_points_are_refused_before_any_model(tmp_path, scan, no_model, capsys, case):
    path, centre = scan
    document, words = FIXED_FILES[case]
    fixed = write_json(tmp_path / "fixed.mrk.json", _fill(document, centre) if isinstance(document, dict) else document)
    assert_refused(["spine-label", path, "--out", tmp_path / "out" / "labels.mrk.json", "--fixed", fixed],
                   capsys, tmp_path, *words)


@pytest.mark.parametrize("case", ["missing", "folder", "binary", "fcsv_garbage"])
def test_unreadable_fixed_files(tmp_path, scan, no_model, capsys, case):
    path, _ = scan
    fixed = {"missing": tmp_path / "nowhere.mrk.json", "folder": tmp_path / "points.mrk.json",
             "binary": tmp_path / "binary.mrk.json", "fcsv_garbage": tmp_path / "old.fcsv"}[case]
    if case == "folder":
        fixed.mkdir()
    elif case == "binary":
        fixed.write_bytes(bytes(range(256)) * 4)
    elif case == "fcsv_garbage":
        fixed.write_text("# Markups fiducial file version = 4.11\nnot,a,real\x00,row\n")
    words = {"missing": ["not found"], "folder": ["is a folder"], "binary": ["could not read"],
             "fcsv_garbage": []}[case]
    message = assert_refused(["spine-label", path, "--out", tmp_path / "labels.mrk.json", "--fixed", fixed],
                             capsys, tmp_path, *words)
    assert fixed.name in message


def test_points_in_and_outside_the_image():
    image = volume(ct_like())
    centre = index_to_ras(image, np.array([[12.0, 12.0, 8.0]]))[0]
    check_points_in_image([LabelledPoint("L3", tuple(centre))], image)
    near_edge = centre + np.array([0.0, 0.0, 8 * 2.0 + 9.0])  # 9 mm beyond the last slice: within the margin
    check_points_in_image([LabelledPoint("L3", tuple(near_edge))], image)
    with pytest.raises(InputError) as error:
        check_points_in_image([LabelledPoint("L4", tuple(centre + [0.0, 0.0, 200.0]))], image)
    assert_clear_message(str(error.value), "L4", "outside the image")


def test_a_point_without_position_in_the_python_api(tmp_path):
    path = write_json(tmp_path / "p.mrk.json", markups_document(point("C2")))
    with pytest.raises(InputError) as error:
        read_markups(path)
    assert_clear_message(str(error.value), "C2", "no position")


# ------------------------------------------------------------------------------------------ evaluate


def vertebra_labels(origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    """Three VerSe-labelled blocks (L1, L2, L3) stacked along k, 2 mm slices."""
    array = np.zeros((30, 20, 20), np.uint8)
    for index, value in enumerate((20, 21, 22)):
        array[2 + 10 * index: 8 + 10 * index, 6:14, 6:14] = value
    image = volume(array, spacing=(1.0, 1.0, 2.0))
    image.SetOrigin(origin)
    return image


def predicted_points(labels: sitk.Image) -> list[LabelledPoint]:
    centres = index_to_ras(labels, np.array([[10.0, 10.0, 5.0 + 10 * n] for n in range(3)]))
    return [LabelledPoint(name, tuple(c), 0.9) for name, c in zip(("L1", "L2", "L3"), centres)]


@pytest.fixture
def evaluation(tmp_path):
    labels = vertebra_labels()
    folder = tmp_path / "eval"
    folder.mkdir()
    pred = write_markups(predicted_points(labels), folder / "case.mrk.json")
    ref = folder / "case.nii.gz"
    sitk.WriteImage(labels, str(ref))
    return folder, pred, ref


def _reference(folder, case):
    """Write the bad reference of ``case``; return (path, words)."""
    if case == "the_scan_itself":
        scan = write_image(volume(ct_like(), spacing=(1.0, 1.0, 2.0)), folder / "scan.nrrd")
        return scan, ["not a vertebra label map"]
    if case == "probability_map":
        array = np.random.default_rng(0).random((30, 20, 20)).astype(np.float32)
        return write_image(volume(array, spacing=(1.0, 1.0, 2.0)), folder / "prob.nii.gz"), ["not a vertebra label map"]
    if case == "empty_labels":
        path = folder / "empty.nii.gz"
        sitk.WriteImage(volume(np.zeros((30, 20, 20), np.uint8), spacing=(1.0, 1.0, 2.0)), str(path))
        return path, ["no labelled vertebra"]
    if case == "another_patient":
        path = folder / "other.nii.gz"
        sitk.WriteImage(vertebra_labels(origin=(0.0, 0.0, 400.0)), str(path))
        return path, ["same scan"]
    if case == "named_labels_elsewhere":
        return write_label_map(vertebra_labels(origin=(300.0, 0.0, 0.0)), {20: "L1", 21: "L2", 22: "L3"},
                               folder / "named.nii.gz"), ["same scan"]
    if case == "points_far_away":
        far = [LabelledPoint("L1", (500.0, 500.0, 500.0))]
        return write_markups(far, folder / "far.mrk.json"), ["same scan"]
    if case == "no_reference_points":
        return write_json(folder / "none.mrk.json", markups_document()), ["holds no points"]
    if case == "not_a_reference_type":
        path = folder / "notes.txt"
        path.write_text("L1 L2 L3")
        return path, ["neither a .mrk.json nor a label map"]
    raise KeyError(case)


REFERENCE_CASES = ["the_scan_itself", "probability_map", "empty_labels", "another_patient", "named_labels_elsewhere",
                   "points_far_away", "no_reference_points", "not_a_reference_type"]


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_evaluate_refuses_a_reference_of_another_kind_or_scan(tmp_path, evaluation, capsys, case):
    folder, pred, _ = evaluation
    ref, words = _reference(folder, case)
    assert_refused(["evaluate", "spine-label", "--pred", pred, "--ref", ref, "--out", tmp_path / "scores.csv"],
                   capsys, tmp_path, *words)


EVALUATE_OPTIONS = {
    "same_file": (lambda f, p, r: ["--pred", p, "--ref", p], ["same file"]),
    "pred_not_markups": (lambda f, p, r: ["--pred", r, "--ref", r.with_name("x.mrk.json")], ["does not exist"]),
    "pred_is_image": (lambda f, p, r: ["--pred", r, "--ref", p], ["not a .mrk.json"]),
    "missing_pred": (lambda f, p, r: ["--pred", f / "nope.mrk.json", "--ref", r], ["does not exist"]),
    "file_and_folder": (lambda f, p, r: ["--pred", p, "--ref", f], ["both as files or both as folders"]),
    "no_common_case": (lambda f, p, r: ["--pred", f, "--ref", f.parent], ["no case name"]),
    "unknown_partial": (lambda f, p, r: ["--pred", p, "--ref", r, "--partial", "L1,L9"], ["L9", "not a vertebra name"]),
    "out_not_a_table": (lambda f, p, r: ["--pred", p, "--ref", r, "--out", f.parent / "scores.xlsx"], [".csv"]),
    "out_is_a_folder": (lambda f, p, r: ["--pred", p, "--ref", r, "--out", f], ["existing folder"]),
}


@pytest.mark.parametrize("case", list(EVALUATE_OPTIONS))
def test_evaluate_refuses_bad_arguments(tmp_path, evaluation, capsys, case):
    folder, pred, ref = evaluation
    make, words = EVALUATE_OPTIONS[case]
    argv = ["evaluate", "spine-label", *make(folder, pred, ref)]
    if "--out" not in argv:
        argv += ["--out", tmp_path / "scores.csv"]
    assert_refused(argv, capsys, tmp_path, *words)


def test_evaluate_never_replaces_a_table_unasked_and_says_where_it_wrote(tmp_path, evaluation, capsys):
    _, pred, ref = evaluation
    out = tmp_path / "scores.csv"
    out.write_text("my own table\n")
    assert_refused(["evaluate", "spine-label", "--pred", pred, "--ref", ref, "--out", out], capsys, tmp_path,
                   "already exists", "--overwrite")
    capsys.readouterr()
    from spinebrain.cli import main

    argv = ["evaluate", "spine-label", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--overwrite"]
    assert main(argv) == EXIT_OK
    assert str(out.resolve()) in capsys.readouterr().err  # says where the table went
    assert out.read_text().startswith("case,")


def test_evaluate_with_a_matching_reference_still_scores(tmp_path, evaluation, capsys):
    folder, pred, ref = evaluation
    before = snapshot(folder)
    code, _ = run_cli(["evaluate", "spine-label", "--pred", pred, "--ref", ref, "--out", tmp_path / "s.csv"], capsys)
    assert code == EXIT_OK and snapshot(folder) == before
