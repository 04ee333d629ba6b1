"""A cancel (terminate signal, Ctrl+C) or a failure in the middle of a run leaves the folder as it was.

The demo used to leave nine files behind when cancelled; now every run writes into a temporary folder
beside ``--out`` and moves its files in only when it succeeds. Checked in-process (the signal sent to
the test's own process while the run is inside its work) and once in a real subprocess, the way
Slicer's runner cancels. Progress in plain logs prints every stage's messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from bad_input_support import ct_like, run_cli, snapshot, volume

from spinebrain.errors import EXIT_CANCELLED
from spinebrain.io import write_image
from spinebrain.protocol import Progress


def _cancel_now(signum=signal.SIGTERM):
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the handler raises CancelledError long before this ends
    raise AssertionError("the cancel signal was not handled")


def _assert_left_as_it_was(tmp_path, before):
    assert snapshot(tmp_path) == before, sorted(set(snapshot(tmp_path)) ^ set(before))


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "KeyboardInterrupt"])
def test_cancelled_demo_leaves_nothing(tmp_path, capsys, monkeypatch, how):
    import spinebrain.commands.demo as demo

    def cancel(*args, **kwargs):
        if how == "KeyboardInterrupt":
            raise KeyboardInterrupt
        _cancel_now(getattr(signal, how))

    monkeypatch.setattr(demo, "_label", cancel)  # after the 1 mm scan is written
    scan = write_image(volume(ct_like()), tmp_path / "scan.nrrd")
    before = snapshot(tmp_path)
    code, message = run_cli(["demo", "--input", scan, "--out", tmp_path / "demo_output"], capsys)
    assert code == EXIT_CANCELLED, message
    _assert_left_as_it_was(tmp_path, before)


def test_cancelled_phantom_leaves_nothing(tmp_path, capsys, monkeypatch):
    import spinebrain.synth.cases as cases
    import spinebrain.synth.spine as spine

    def write_then_cancel(case, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("scan.nrrd", "labels.seg.nrrd"):
            (out_dir / name).write_bytes(b"partial")
        _cancel_now()

    monkeypatch.setattr(spine, "generate_spine", lambda *args, **kwargs: object())
    monkeypatch.setattr(cases, "write_spine_case", write_then_cancel)
    before = snapshot(tmp_path)
    code, _ = run_cli(["phantom", "spine", "--out", tmp_path / "phantom"], capsys)
    assert code == EXIT_CANCELLED
    _assert_left_as_it_was(tmp_path, before)


def test_cancelled_batch_keeps_not_even_the_finished_cases(tmp_path, capsys, monkeypatch):
    import spinebrain.commands.spine_label as command

    def label_one(image, path, markups_path, *args):
        if "b" in markups_path.name:
            _cancel_now()
        markups_path.parent.mkdir(parents=True, exist_ok=True)
        markups_path.write_text("{}")
        return {"outputs": [markups_path]}

    monkeypatch.setattr(command, "_load_models", lambda args, progress: [])
    monkeypatch.setattr(command, "_label_one", label_one)
    for name in ("a", "b", "c"):
        write_image(volume(ct_like()), tmp_path / "in" / f"{name}.nrrd")
    before = snapshot(tmp_path)
    code, _ = run_cli(["spine-label", tmp_path / "in", "--out", tmp_path / "out"], capsys)
    assert code == EXIT_CANCELLED
    _assert_left_as_it_was(tmp_path, before)


def test_a_failure_after_some_files_are_written_leaves_nothing(tmp_path, capsys, monkeypatch):
    import spinebrain.commands.demo as demo

    def write_then_fail(image, result, markups_path, *args, **kwargs):
        markups_path.write_text("{}")
        raise RuntimeError("the disk broke")

    monkeypatch.setattr(demo, "write_labels", write_then_fail)  # the 1 mm scan and one result are already written
    monkeypatch.setattr(demo, "_label", lambda image, region, progress: _fake_result())
    scan = write_image(volume(ct_like()), tmp_path / "scan.nrrd")
    before = snapshot(tmp_path)
    code, message = run_cli(["demo", "--input", scan, "--out", tmp_path / "demo_output"], capsys)
    assert code == 1 and "the disk broke" in message
    _assert_left_as_it_was(tmp_path, before)


def _fake_result():
    from spinebrain.spinelabel.graph import LabellingResult
    from spinebrain.spinelabel.pipeline import SpineLabelResult

    return SpineLabelResult([], [], LabellingResult([], 0.0, False, 0.0), [], "lumbar", 0.0)


def test_terminating_a_real_demo_process_leaves_nothing(tmp_path):
    """The generated demo (reference files, 1 mm scan, labels...) terminated half-way, as Slicer's runner does."""
    out = tmp_path / "demo_output"
    process = subprocess.Popen([sys.executable, "-m", "spinebrain", "--progress-json", "demo", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:  # wait until the run is well inside its work: files already staged
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "progress" and event.get("stage") in ("resample", "label"):
                break
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_CANCELLED
    assert json.loads(rest.strip().splitlines()[-1]) == {"event": "done", "code": EXIT_CANCELLED}
    assert list(tmp_path.iterdir()) == []  # neither results nor a temporary folder


def test_plain_log_progress_prints_every_message_once(capsys):
    progress = Progress()  # stderr is not a terminal under pytest: one line per message, no bar
    for stage, fraction, message in [("label", 0.1, "slab"), ("label", 0.5, "anchor detector"),
                                     ("label", 0.5, "anchor detector"), ("write", 0.9, "labels.mrk.json")]:
        progress.update(stage, fraction, message)
    assert capsys.readouterr().err.splitlines() == ["[label] slab", "[label] anchor detector",
                                                    "[write] labels.mrk.json"]
