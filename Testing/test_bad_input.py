"""Unusable images give one clear sentence (the problem and what to do), exit code 2, and write nothing.

Families: files that cannot be read (missing, damaged, cut short, raw ITK/teem errors), types (2D,
4D, vector, complex, a Python object that is not an image), geometry (spacing, shear, a NIfTI
without geometry) and values (NaN/Inf -- also in NIfTI, whose reader turns them into 0 --, constant,
masks, label maps, integer data that wrapped around). Each hostile file is built on the fly, read
the way a user's file is read, then given to the command line in-process (``demo --input`` and
``spine-label``): the image is refused before any model loads, and the folder is byte-for-byte
as before.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from bad_input_support import assert_clear_message, assert_refused, ct_like, noise, snapshot, volume

from spinebrain.errors import EXIT_BAD_INPUT, InputError, InputTypeError
from spinebrain.io import load_volume, write_image
from spinebrain.validate import check_label_map, check_plausible, check_volume


def with_value(value: float, dtype=np.float32) -> np.ndarray:
    array = noise(dtype=dtype)
    array[2, 3, 4] = value
    return array


def four_d() -> sitk.Image:
    return sitk.JoinSeries([volume(noise()), volume(noise() + 1)])


def vector() -> sitk.Image:
    image = volume(noise())
    return sitk.Compose([image, image, image])


def complex_image() -> sitk.Image:
    array = noise()
    return volume((array + 1j * array[::-1]).astype(np.complex64))


def labels_image(count: int, dtype=np.uint8) -> sitk.Image:
    array = np.zeros((8, 12, 12), dtype=dtype)
    for value in range(1, count):
        array[:, value % 12, :] = value
    return volume(array)


def wrapped(dtype) -> sitk.Image:
    return volume(ct_like().astype(dtype))  # negative CT numbers wrap around an unsigned or 8-bit type


# name -> (suffix, function making the image, words the message must contain)
BAD_IMAGES = {
    "2d": (".nrrd", lambda: volume(noise((10, 12))), ["2D"]),
    "single_slice": (".nii.gz", lambda: volume(noise((1, 10, 12))), ["2D"]),
    "4d": (".nii.gz", four_d, ["4D"]),
    "vector": (".nrrd", vector, ["components"]),
    "complex_nifti": (".nii.gz", complex_image, ["complex", "magnitude"]),
    "complex_mha": (".mha", complex_image, ["complex"]),
    "constant": (".nrrd", lambda: volume(np.full((6, 10, 12), 7, np.int16)), ["constant"]),
    "all_zero_float": (".nii.gz", lambda: volume(np.zeros((6, 10, 12), np.float32)), ["constant"]),
    "nan": (".nrrd", lambda: volume(with_value(np.nan)), ["NaN"]),
    "inf": (".mha", lambda: volume(with_value(np.inf)), ["infinite"]),
    "nan_nifti": (".nii.gz", lambda: volume(with_value(np.nan)), ["NaN"]),
    "inf_nifti_uncompressed": (".nii", lambda: volume(with_value(-np.inf)), ["infinite"]),
    "nan_nifti_double": (".nii.gz", lambda: volume(with_value(np.nan, np.float64)), ["NaN"]),
    "tiny_spacing": (".nrrd", lambda: volume(noise(), spacing=(0.0001, 0.8, 2.0)), ["spacing"]),
    "huge_spacing": (".nrrd", lambda: volume(noise(), spacing=(0.8, 0.8, 1000.0)), ["spacing"]),
    "sheared": (".nrrd", lambda: volume(noise(), direction=(1, 0.5, 0, 0, 1, 0, 0, 0, 1)), ["non-orthogonal"]),
}

# Images a reader accepts but that are not scans a model may label (check_plausible refuses them).
NOT_SCANS = {
    "binary_mask": (".nrrd", lambda: volume((noise() > 100).astype(np.uint8)), ["mask"]),
    "float_mask": (".nii.gz", lambda: volume((noise() > 100).astype(np.float32)), ["mask"]),
    "label_map": (".nii.gz", lambda: labels_image(9), ["label map"]),
    "label_map_int16": (".nrrd", lambda: labels_image(25, np.int16), ["label map"]),
    "ct_as_uint16": (".nrrd", lambda: wrapped(np.uint16), ["unsigned", "signed"]),
    "ct_cut_to_uint8": (".nii.gz", lambda: wrapped(np.uint8), ["wrapped"]),
}


def nifti_without_geometry(folder):
    """A NIfTI-1 file with voxel size 0 and qform/sform codes 0 (ITK reads it as 1 mm, silently)."""
    path = folder / "no_geometry.nii"
    sitk.WriteImage(volume(noise()), str(path))
    header = bytearray(path.read_bytes())
    header[80:92] = struct.pack("<3f", 0.0, 0.0, 0.0)  # pixdim[1..3]
    header[252:256] = struct.pack("<2h", 0, 0)  # qform_code, sform_code
    path.write_bytes(bytes(header))
    return path


def write_bad_file(folder, case: str):
    """Write the bad input of ``case`` into ``folder``; return (path, words the message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    if case == "missing":
        return folder / "no_such_scan.nii.gz", ["not found"]
    if case == "garbage":
        path = folder / "garbage.nii.gz"
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return path, ["could not read", "damaged"]
    if case == "empty_file":
        path = folder / "empty.nrrd"
        path.write_bytes(b"")
        return path, ["could not read"]
    if case == "nrrd_bad_header":  # teem's own error text must come wrapped in a sentence
        path = folder / "bad_header.nrrd"
        path.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4\nencoding: raw\n\n" + "x" * 64)
        return path, ["could not read"]
    if case == "mhd_without_data":
        path = folder / "header_only.mhd"
        path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
                        "ElementDataFile = missing.raw\n")
        return path, ["could not read"]
    if case == "huge_header":  # a header whose sizes would need terabytes: refused before ITK allocates them
        path = folder / "huge.nrrd"
        path.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 100000 100000 100000\nendian: little\n"
                        "encoding: raw\n\n0000")
        return path, ["declares", "voxels", "header"]
    if case == "truncated":
        good = folder / "good.nii"
        sitk.WriteImage(volume(noise((20, 40, 40))), str(good))
        path = folder / "truncated.nii.gz"
        path.write_bytes(gzip.compress(good.read_bytes()[:10000]))
        good.unlink()
        return path, ["could not read", "cut short"]
    if case == "cut_download":  # a .nii.gz whose gzip stream itself stops half-way
        good = folder / "good.nii.gz"
        sitk.WriteImage(volume(noise((20, 40, 40))), str(good))
        path = folder / "cut_download.nii.gz"
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        good.unlink()
        return path, ["could not read", "cut short"]
    if case == "empty_folder":
        path = folder / "empty_dicom_folder"
        path.mkdir()
        return path, ["no dicom series"]
    if case == "folder_of_text":
        path = folder / "not_dicom"
        path.mkdir()
        (path / "notes.txt").write_text("not an image")
        return path, ["no dicom series"]
    if case == "no_geometry_nifti":
        return nifti_without_geometry(folder), ["no geometry", "voxel size"]
    suffix, make, words = {**BAD_IMAGES, **NOT_SCANS}[case]
    path = folder / f"{case}{suffix}"
    sitk.WriteImage(make(), str(path))
    return path, words


FILE_CASES = ["missing", "garbage", "empty_file", "nrrd_bad_header", "mhd_without_data", "huge_header", "truncated",
              "cut_download",
              "empty_folder", "folder_of_text", "no_geometry_nifti", *BAD_IMAGES]
ALL_CASES = FILE_CASES + list(NOT_SCANS)


# ---------------------------------------------------------------------------- the core


@pytest.mark.parametrize("case", FILE_CASES)
def test_bad_file_gives_one_clear_sentence(tmp_path, case):
    path, words = write_bad_file(tmp_path / "inputs", case)
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as error:
        load_volume(path)
    assert_clear_message(str(error.value), *words)
    if case not in ("missing", "empty_folder", "folder_of_text"):
        assert path.name in str(error.value)  # says which file
    assert snapshot(tmp_path) == before  # reading wrote nothing


@pytest.mark.parametrize("case", list(NOT_SCANS))
def test_what_is_not_a_scan_is_refused_before_any_model(tmp_path, case):
    path, words = write_bad_file(tmp_path / "inputs", case)
    image = load_volume(path)  # a readable volume...
    with pytest.raises(InputError) as error:  # ...that no model may label
        check_plausible(image, modalities=["CT", "T1", "T2"])
    assert_clear_message(str(error.value), *words)


def test_good_files_pass_and_real_scans_are_plausible(tmp_path):
    path = write_image(volume(noise()), tmp_path / "good.nrrd")
    assert load_volume(path).GetSize() == (12, 10, 6)
    ct = volume(ct_like())
    assert check_plausible(ct, modalities=["CT", "T1", "T2"]) == []
    mr = volume(np.clip(noise((8, 16, 16), mean=300, spread=120), 0, None).astype(np.uint16))
    assert check_plausible(mr, modalities=["T1", "T2"]) == []


def test_modality_misfit_is_an_explicit_warning_not_a_silent_pass():
    mr = volume(np.clip(noise((8, 16, 16), mean=300, spread=120), 0, None).astype(np.uint16))
    (warning,) = check_plausible(mr, modalities=["CT"])
    assert "do not look like CT" in warning
    (warning,) = check_plausible(volume(ct_like()), modalities=["T1", "T2"])
    assert "look like CT" in warning and "T1, T2" in warning


def test_spacing_limits_are_inclusive_of_real_scans():
    check_volume(volume(noise(), spacing=(0.2, 0.2, 10.0)))  # micro-CT-ish to thick-slice MR
    with pytest.raises(InputError, match="spacing"):
        check_volume(volume(noise(), spacing=(np.nan, 1.0, 1.0)))


def test_label_map_on_another_grid_is_refused():
    image = volume(noise())
    labels = sitk.Cast(image > 100, sitk.sitkUInt8)
    assert check_label_map(labels, image) is labels

    moved = sitk.Image(labels)
    moved.SetOrigin((0.0, 0.0, 5.0))
    smaller = labels[:, :, :4]
    for bad in (moved, smaller):
        with pytest.raises(InputError) as error:
            check_label_map(bad, image)
        assert_clear_message(str(error.value), "different grid", "nearest-neighbour")


def test_label_map_with_fractions_is_refused():
    image = volume(noise())
    fractional = sitk.Cast(image > 100, sitk.sitkFloat32) * 0.5
    with pytest.raises(InputError) as error:
        check_label_map(fractional, image)
    assert "non-integer" in str(error.value)
    whole = sitk.Cast(image > 100, sitk.sitkFloat32) * 3
    check_label_map(whole, image)


# ---------------------------------------------------------------------------- the Python API


def _label_spine(image):
    from types import SimpleNamespace

    from spinebrain.spinelabel.pipeline import label_spine

    card_only = SimpleNamespace(card=SimpleNamespace(modalities=["CT"]))  # the image is checked before the networks
    return label_spine(image, model=card_only)


def _write_markups(points):
    from spinebrain.outputs import write_markups

    return write_markups(points, "never_written.mrk.json")


def _read_markups(path):
    from spinebrain.outputs import read_markups

    return read_markups(path)


API_CALLS = {
    "load_volume(None)": (lambda: load_volume(None), "not None"),
    "load_volume(array)": (lambda: load_volume(np.zeros((4, 4, 4))), "not ndarray"),
    "load_volume('')": (lambda: load_volume(""), "empty name"),
    "check_volume(array)": (lambda: check_volume(np.zeros((4, 4, 4))), "numpy.ndarray"),
    "check_volume(None)": (lambda: check_volume(None), "not None"),
    "check_plausible(list)": (lambda: check_plausible([[1, 2], [3, 4]]), "builtins.list"),
    "label_spine(array)": (lambda: _label_spine(np.zeros((8, 8, 8), np.float32)), "numpy.ndarray"),
    "label_spine(None)": (lambda: _label_spine(None), "not None"),
    "write_markups(None)": (lambda: _write_markups(None), "not None"),
    "write_markups(dicts)": (lambda: _write_markups([{"label": "L1"}]), "LabelledPoint"),
    "read_markups(None)": (lambda: _read_markups(None), "NoneType"),
}


def test_a_path_with_a_nul_character_is_refused():
    with pytest.raises(InputError) as error:
        load_volume("scan\x00.nii.gz")
    assert_clear_message(str(error.value), "NUL")


@pytest.mark.parametrize("call", list(API_CALLS))
def test_python_api_given_the_wrong_object_says_what_it_needs(tmp_path, monkeypatch, call):
    monkeypatch.chdir(tmp_path)
    function, words = API_CALLS[call]
    with pytest.raises(InputTypeError) as error:
        function()
    assert isinstance(error.value, TypeError) and isinstance(error.value, InputError)  # both ways of catching it
    assert_clear_message(str(error.value), words)
    assert snapshot(tmp_path) == {}


# ---------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("case", ALL_CASES)
def test_demo_on_a_bad_scan_exits_2_and_writes_nothing(tmp_path, case, capsys):
    path, words = write_bad_file(tmp_path / "inputs", case)
    assert_refused(["demo", "--input", path, "--out", tmp_path / "out"], capsys, tmp_path, *words)


@pytest.mark.parametrize("case", ALL_CASES)
def test_spine_label_on_a_bad_scan_exits_2_before_any_model(tmp_path, case, capsys, monkeypatch):
    import spinebrain.spinelabel.pipeline as pipeline

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded for an image that should have been refused")

    monkeypatch.setattr(pipeline, "load_spine_label_models", no_model)
    path, words = write_bad_file(tmp_path / "inputs", case)
    assert_refused(["spine-label", path, "--out", tmp_path / "labels.mrk.json", "--png"], capsys, tmp_path, *words)


def test_cli_reports_bad_input_as_json_in_a_real_process(tmp_path):
    path, _ = write_bad_file(tmp_path / "inputs", "nan_nifti")
    out = tmp_path / "out"
    completed = subprocess.run(  # --progress-json after the subcommand works too
        [sys.executable, "-m", "spinebrain", "demo", "--progress-json", "--input", str(path), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == EXIT_BAD_INPUT, completed.stderr
    events = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == EXIT_BAD_INPUT
    assert_clear_message(errors[0]["message"], "NaN")
    assert events[-1] == {"event": "done", "code": EXIT_BAD_INPUT}
    assert not out.exists()
