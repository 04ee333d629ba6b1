"""Output paths: nothing existing is replaced unasked, nothing is written on failure, long names work.

``--out`` naming an existing file, an existing folder ending in ``.mrk.json``, a folder holding an
earlier run's results, a path under a file, or a name longer than a file system allows: one
sentence, exit 2, and the folder byte-for-byte as before. ``--overwrite`` is the one way to replace
results. An input whose name is long enough that a temporary name beside the output used to
overflow the file system's limit now runs (short temporary names, case names capped).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from bad_input_support import assert_refused, ct_like, run_cli, snapshot, volume

from spinebrain.batch import MAX_CASE_NAME, SUMMARY_NAME
from spinebrain.errors import EXIT_OK, InputError
from spinebrain.io import atomic_path, write_image
from spinebrain.outputs import check_output_file, staged_outputs
from spinebrain.synth.spine import generate_spine


@pytest.fixture
def scan(tmp_path):
    return write_image(volume(ct_like()), tmp_path / "scan.nrrd")


@pytest.fixture
def no_model(monkeypatch):
    import spinebrain.spinelabel.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although the output path should have been refused")

    monkeypatch.setattr(pipeline, "load_spine_label_models", refuse)


def _existing_markups(tmp_path):
    target = tmp_path / "labels.mrk.json"
    target.write_text('{"my": "own points"}')
    return target


def _existing_png(tmp_path):
    (tmp_path / "labels.png").write_bytes(b"my picture")
    return tmp_path / "labels.mrk.json"


def _folder_named_like_a_file(tmp_path):
    target = tmp_path / "labels.mrk.json"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    return target


def _under_a_file(tmp_path):
    (tmp_path / "a_file").write_text("mine")
    return tmp_path / "a_file" / "labels.mrk.json"


SINGLE_OUT = {
    "existing_file": (_existing_markups, ["already exists", "--overwrite"]),
    "existing_png": (_existing_png, ["labels.png", "already exists"]),
    "existing_folder_named_mrk_json": (_folder_named_like_a_file, ["existing folder"]),
    "under_a_file": (_under_a_file, ["a_file", "is a file"]),
    "name_too_long": (lambda tmp_path: tmp_path / ("x" * 300 + ".mrk.json"), ["bytes long", "shorter name"]),
    "empty_out": (lambda tmp_path: "", ["--out is empty"]),
}


@pytest.mark.parametrize("case", list(SINGLE_OUT))
def test_spine_label_out_that_cannot_be_written_is_refused_first(tmp_path, scan, no_model, capsys, case):
    make, words = SINGLE_OUT[case]
    out = make(tmp_path)
    assert_refused(["spine-label", scan, "--out", out, "--png"], capsys, tmp_path, *words)


def _batch_out_is_a_file(tmp_path):
    (tmp_path / "results").write_text("mine")
    return tmp_path / "results"


def _batch_out_has_the_case(tmp_path):
    (tmp_path / "results" / "scan").mkdir(parents=True)
    (tmp_path / "results" / "scan" / "scan.mrk.json").write_text("earlier")
    return tmp_path / "results"


def _batch_out_has_a_summary(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / SUMMARY_NAME).write_text("earlier")
    return tmp_path / "results"


BATCH_OUT = {
    "out_is_a_file": (_batch_out_is_a_file, ["existing file"]),
    "out_holds_the_case": (_batch_out_has_the_case, ["already holds scan", "--overwrite"]),
    "out_holds_a_summary": (_batch_out_has_a_summary, [f"already holds {SUMMARY_NAME}"]),
}


@pytest.mark.parametrize("case", list(BATCH_OUT))
def test_batch_out_that_holds_results_is_refused_before_any_model(tmp_path, scan, no_model, capsys, case):
    make, words = BATCH_OUT[case]
    assert_refused(["spine-label", scan.parent, "--out", make(tmp_path)], capsys, tmp_path, *words)


def _demo_out_with_labels(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "labels.mrk.json").write_text("earlier demo")
    return tmp_path / "demo"


def _out_is_a_file(tmp_path):
    (tmp_path / "out").write_text("mine")
    return tmp_path / "out"


@pytest.mark.parametrize("command, make, words", [
    (["demo"], _demo_out_with_labels, ["already holds labels.mrk.json", "--overwrite"]),
    (["demo"], _out_is_a_file, ["existing file"]),
    (["phantom", "spine"], _out_is_a_file, ["existing file"]),
    (["phantom", "brain"], _out_is_a_file, ["existing file"]),
    (["phantom", "spine"], lambda tmp_path: tmp_path / ("p" * 260), ["bytes long"]),
    (["realism", "spine"], _out_is_a_file, ["existing file"]),
    (["demo"], lambda tmp_path: "", ["--out is empty"]),
    (["phantom", "brain"], lambda tmp_path: str(tmp_path / "a\x00b"), ["NUL"]),
], ids=["demo_earlier_results", "demo_out_file", "phantom_spine_out_file", "phantom_brain_out_file", "phantom_long",
        "realism_out_file", "demo_empty_out", "phantom_nul_out"])
def test_folder_outputs_refuse_before_any_work(tmp_path, capsys, command, make, words):
    assert_refused([*command, "--out", make(tmp_path)], capsys, tmp_path, *words)


def test_staged_outputs_refuse_at_the_move_and_leave_everything(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="already a file"):
        with staged_outputs(tmp_path / "out") as stage:
            stage.path("a.txt").write_text("new a")
            stage.path("b.txt").write_text("new b")
    assert snapshot(tmp_path) == before  # neither a.txt nor a temporary folder
    with staged_outputs(tmp_path / "out", overwrite=True) as stage:
        stage.path("b.txt").write_text("new b")
    assert (tmp_path / "out" / "b.txt").read_text() == "new b" and stage.committed == [tmp_path / "out" / "b.txt"]


def test_a_failure_inside_a_staged_run_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_outputs(tmp_path / "new" / "out") as stage:
            stage.path("case/a.txt").parent.mkdir(parents=True)
            stage.path("case/a.txt").write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_check_output_file_accepts_a_new_name_and_overwrite(tmp_path):
    assert check_output_file(tmp_path / "new" / "x.mrk.json") == tmp_path / "new" / "x.mrk.json"
    (tmp_path / "x.mrk.json").write_text("old")
    assert check_output_file(tmp_path / "x.mrk.json", overwrite=True)


def test_temporary_names_stay_short_for_long_file_names(tmp_path):
    long_name = "case_" + "y" * 240 + ".seg.nrrd"  # 254 bytes: fits, but not with a temporary prefix and suffix
    with atomic_path(tmp_path / long_name) as temporary:
        assert len(temporary.name) < 64 and temporary.name.endswith(".seg.nrrd")
        temporary.write_text("x")
    assert (tmp_path / long_name).read_text() == "x"


@pytest.fixture(scope="module")
def small_lumbar_scan(tmp_path_factory):
    case = generate_spine(5005, modality="ct", view="lumbar", spacing=(2.0, 2.0, 2.0))
    return case.image


def test_a_long_input_name_runs_and_the_case_name_is_capped(tmp_path, small_lumbar_scan, capsys):
    inputs = tmp_path / "in"
    scan = write_image(small_lumbar_scan, inputs / ("patient_" + "z" * 235 + ".nrrd"))  # 247-byte name
    code, message = run_cli(["spine-label", inputs, "--out", tmp_path / "out"], capsys)
    assert code == EXIT_OK, message
    (case_folder,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert len(case_folder.name) == MAX_CASE_NAME and scan.name.startswith(case_folder.name)
    assert (case_folder / f"{case_folder.name}.mrk.json").is_file()
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file or folder left anywhere


def test_single_scan_says_where_it_wrote_and_refuses_a_second_run(tmp_path, small_lumbar_scan, capsys):
    scan = write_image(small_lumbar_scan, tmp_path / "scan.nrrd")
    out = tmp_path / "labels.mrk.json"
    capsys.readouterr()
    from spinebrain.cli import main

    assert main(["spine-label", str(scan), "--out", str(out)]) == EXIT_OK
    assert f"Wrote {out}" in capsys.readouterr().err
    assert_refused(["spine-label", scan, "--out", out], capsys, tmp_path, "already exists", "--overwrite")
    code, _ = run_cli(["spine-label", scan, "--out", out, "--overwrite"], capsys)
    assert code == EXIT_OK and sorted(p.name for p in tmp_path.iterdir()) == ["labels.mrk.json", "scan.nrrd"]


def test_a_batch_where_every_case_fails_writes_nothing(tmp_path, capsys, monkeypatch):
    import spinebrain.commands.spine_label as command

    monkeypatch.setattr(command, "_load_models", lambda args, progress: [])
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        checkerboard = (np.arange(6 * 10 * 12).reshape(6, 10, 12) % 2).astype(np.uint8)  # a mask, not a scan
        sitk.WriteImage(volume(checkerboard), str(inputs / f"{name}.nrrd"))
    before = snapshot(tmp_path)
    code, message = run_cli(["spine-label", inputs, "--out", tmp_path / "out"], capsys)
    assert code == 2 and message.startswith("All 2 cases failed") and "nothing was written" in message
    assert snapshot(tmp_path) == before


def test_a_full_disk_while_writing_is_one_sentence_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from spinebrain.outputs import write_markups
    from spinebrain.points import LabelledPoint

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_text", disk_full)
    with pytest.raises(InputError) as error:
        write_markups([LabelledPoint("L1", (0.0, 0.0, 0.0))], tmp_path / "labels.mrk.json")
    assert "No space left on device" in str(error.value) and "labels.mrk.json" in str(error.value)
    assert list(tmp_path.iterdir()) == []
