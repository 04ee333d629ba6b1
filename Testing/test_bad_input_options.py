"""Options with values no run can use: a usage error (exit 2) with one sentence, before any work.

Seeds must be whole numbers from 0 to 2**32-1 (``phantom --seed -5`` used to end in a numpy
traceback), voxel sizes must be plausible, choices must be known. ``--progress-json`` and
``--quiet`` are accepted after the subcommand too.
"""

from __future__ import annotations

import json

import pytest
from bad_input_support import assert_clear_message, assert_refused

from spinebrain.cli import global_flags_first, main
from spinebrain.errors import EXIT_BAD_INPUT, InputError
from spinebrain.validate import check_seed, check_spacing_option

BAD_OPTIONS = {
    "phantom_spine_negative_seed": (["phantom", "spine", "--seed", "-5"], ["--seed -5", "0 to"]),
    "phantom_brain_negative_seed": (["phantom", "brain", "--seed", "-1"], ["--seed -1"]),
    "phantom_huge_seed": (["phantom", "spine", "--seed", str(2**40)], ["out of range"]),
    "phantom_text_seed": (["phantom", "spine", "--seed", "abc"], ["not a whole number"]),
    "phantom_fraction_seed": (["phantom", "spine", "--seed", "1.5"], ["not a whole number"]),
    "demo_negative_seed": (["demo", "--seed", "-5"], ["--seed -5"]),
    "phantom_zero_spacing": (["phantom", "spine", "--spacing", "0"], ["--spacing 0", "voxel size"]),
    "phantom_negative_spacing": (["phantom", "brain", "--spacing", "-1"], ["--spacing -1"]),
    "phantom_nan_spacing": (["phantom", "spine", "--spacing", "nan"], ["--spacing nan"]),
    "phantom_huge_spacing": (["phantom", "spine", "--spacing", "1000"], ["--spacing 1000"]),
    "phantom_text_spacing": (["phantom", "brain", "--spacing", "thin"], ["not a number"]),
    "phantom_unknown_contrast": (["phantom", "brain", "--contrasts", "t1,dwi"], ["dwi", "--contrasts"]),
    "phantom_no_contrast": (["phantom", "brain", "--contrasts", ","], ["--contrasts"]),
    "phantom_unknown_view": (["phantom", "spine", "--view", "sacral"], ["invalid choice", "sacral"]),
    "spine_label_unknown_region": (["spine-label", "x.nrrd", "--region", "neck"], ["invalid choice", "neck"]),
    "unknown_command": (["segment-everything"], ["invalid choice"]),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option_values_are_usage_errors(tmp_path, capsys, case):
    argv, words = BAD_OPTIONS[case]
    if argv[0] in ("phantom", "demo", "spine-label"):
        argv = [*argv, "--out", str(tmp_path / "out")]
    assert_refused(argv, capsys, tmp_path, *words)


@pytest.mark.parametrize("value", [0, 1, 2**32 - 1, "7"])
def test_good_seeds_pass(value):
    assert check_seed(value) == int(value)


@pytest.mark.parametrize("value", [-1, 2**32, 1.5, "x", None])
def test_bad_seeds_in_the_python_api(value):
    with pytest.raises(InputError):
        check_seed(value)


def test_spacing_option_limits():
    assert check_spacing_option("0.5") == 0.5
    with pytest.raises(InputError, match="outside"):
        check_spacing_option(float("inf"))


def test_global_flags_are_accepted_after_the_subcommand(tmp_path, capsys):
    assert global_flags_first(["demo", "--progress-json", "--out", "x"]) == ["--progress-json", "demo", "--out", "x"]
    assert global_flags_first(["demo", "--", "--quiet"]) == ["demo", "--", "--quiet"]
    code = main(["phantom", "spine", "--seed", "-5", "--out", str(tmp_path / "o"), "--progress-json"])
    assert code == EXIT_BAD_INPUT
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["error", "done"]
    assert_clear_message(events[0]["message"].split(": ", 1)[1], "--seed -5")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("arguments", [
    ["train", "spine-label", "--region", "lumbar", "--cases", "2", "--epochs", "1"],
    ["train", "spine-label", "--region", "lumbar", "--detector", "heatmap", "--id", "spine-label-lumbar"],
    ["train", "datalist", "--task", "brain-tissue", "--datalist", "absent.json", "--id", "spine-label-lumbar"],
])
def test_training_into_an_existing_package_is_refused_before_any_work(tmp_path, capsys, arguments):
    existing = tmp_path / "models" / "spine-label-lumbar"
    existing.mkdir(parents=True)
    (existing / "model_card.json").write_text("{}", encoding="utf-8")
    before = sorted(p.name for p in (tmp_path / "models").rglob("*"))
    assert main(["--quiet", *arguments, "--out", str(tmp_path / "models")]) == 2
    assert sorted(p.name for p in (tmp_path / "models").rglob("*")) == before
    assert "A model package already exists at" in capsys.readouterr().err
