"""Unusable input gives one clear sentence (the problem and what to do) and writes nothing.

Each case is a real file on disk read the way a user's file is read (:func:`spinebrain.io.load_volume`),
then the same files go through the command line (``spinebrain demo --input``): exit code 2, the
message on stderr, and an output folder left empty.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.cli import main
from spinebrain.errors import EXIT_BAD_INPUT, InputError
from spinebrain.io import load_volume, write_image
from spinebrain.validate import check_label_map, check_volume

ACTIONS = re.compile(
    r"\b(run again|load|use|check|replace|resample|extract|fix|choose|give|point|re-export)\b", re.IGNORECASE
)


def assert_clear_message(message: str, *problem_words: str) -> None:
    """One line, at most two short sentences, names the problem, says what to do."""
    assert "\n" not in message, message
    assert len(message) < 400, message
    sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", message) if s]
    assert len(sentences) <= 2, message
    for word in problem_words:
        assert word.lower() in message.lower(), (word, message)
    assert ACTIONS.search(message), f"no advice in: {message}"
    assert "Traceback" not in message and "sitk::ERROR" not in message, message


def volume(array: np.ndarray, spacing=(0.8, 0.8, 2.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing(spacing[: image.GetDimension()])
    if direction is not None:
        image.SetDirection(direction)
    return image


def noise(shape=(6, 10, 12), dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(0).normal(100, 20, shape).astype(dtype)


def with_nan(value: float) -> np.ndarray:
    array = noise()
    array[2, 3, 4] = value
    return array


def four_d() -> sitk.Image:
    return sitk.JoinSeries([volume(noise()), volume(noise() + 1)])


def vector() -> sitk.Image:
    image = volume(noise())
    return sitk.Compose([image, image, image])


# name -> (suffix, function making the image, words the message must contain)
BAD_IMAGES = {
    "2d": (".nrrd", lambda: volume(noise((10, 12))), ["2D"]),
    "single_slice": (".nii.gz", lambda: volume(noise((1, 10, 12))), ["2D"]),
    "4d": (".nii.gz", four_d, ["4D"]),
    "vector": (".nrrd", vector, ["components"]),
    "constant": (".nrrd", lambda: volume(np.full((6, 10, 12), 7, np.int16)), ["constant"]),
    "nan": (".nrrd", lambda: volume(with_nan(np.nan)), ["NaN"]),
    "inf": (".mha", lambda: volume(with_nan(np.inf)), ["infinite"]),
    "tiny_spacing": (".nrrd", lambda: volume(noise(), spacing=(0.0001, 0.8, 2.0)), ["spacing"]),
    "huge_spacing": (".nrrd", lambda: volume(noise(), spacing=(0.8, 0.8, 1000.0)), ["spacing"]),
    "sheared": (".nrrd", lambda: volume(noise(), direction=(1, 0.5, 0, 0, 1, 0, 0, 0, 1)), ["non-orthogonal"]),
}


def write_bad_file(folder, case: str):
    """Write the bad input of ``case`` into ``folder``; return (path, words the message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    if case == "missing":
        return folder / "no_such_scan.nii.gz", ["not found"]
    if case == "garbage":
        path = folder / "garbage.nii.gz"
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return path, ["could not read", "damaged"]
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
    suffix, make, words = BAD_IMAGES[case]
    path = folder / f"{case}{suffix}"
    sitk.WriteImage(make(), str(path))
    return path, words


ALL_CASES = ["missing", "garbage", "truncated", "cut_download", "empty_folder", *BAD_IMAGES]


# ---------------------------------------------------------------------------- the core


@pytest.mark.parametrize("case", ALL_CASES)
def test_bad_file_gives_one_clear_sentence(tmp_path, case):
    path, words = write_bad_file(tmp_path / "inputs", case)
    before = sorted((tmp_path / "inputs").rglob("*"))
    with pytest.raises(InputError) as error:
        load_volume(path)
    assert_clear_message(str(error.value), *words)
    if case not in ("missing", "empty_folder"):
        assert path.name in str(error.value)  # says which file
    assert sorted((tmp_path / "inputs").rglob("*")) == before  # reading wrote nothing


def test_good_file_passes(tmp_path):
    path = write_image(volume(noise()), tmp_path / "good.nrrd")
    assert load_volume(path).GetSize() == (12, 10, 6)


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


# ---------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("case", ALL_CASES)
def test_cli_exits_2_and_writes_nothing(tmp_path, case, capsys):
    path, words = write_bad_file(tmp_path / "inputs", case)
    out = tmp_path / "out"
    code = main(["--quiet", "demo", "--input", str(path), "--out", str(out)])
    assert code == EXIT_BAD_INPUT
    stderr = capsys.readouterr().err.strip().splitlines()
    assert stderr and stderr[-1].startswith("spinebrain: ")
    assert_clear_message(stderr[-1].removeprefix("spinebrain: "), *words)
    assert not out.exists() or not any(out.iterdir())


def test_cli_reports_bad_input_as_json_in_a_real_process(tmp_path):
    path, _ = write_bad_file(tmp_path / "inputs", "nan")
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "spinebrain", "--progress-json", "demo", "--input", str(path), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == EXIT_BAD_INPUT, completed.stderr
    events = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == EXIT_BAD_INPUT
    assert_clear_message(errors[0]["message"], "NaN")
    assert events[-1] == {"event": "done", "code": EXIT_BAD_INPUT}
    assert not out.exists() or not any(out.iterdir())
