"""The CLI protocol: exit codes, JSON-lines events, cancel on terminate, progress output."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from spinebrain import __version__, cli
from spinebrain.errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, CancelledError
from spinebrain.protocol import Progress, cancel_on_terminate

# A command module registered only for these tests: each --outcome ends the run one way.
FAKE_COMMANDS = """
from spinebrain.errors import CancelledError, InputError

def register(subparsers):
    parser = subparsers.add_parser("outcome")
    parser.add_argument("kind", choices=["ok", "input", "internal", "cancel"])
    parser.set_defaults(run=run)

def run(args, progress):
    progress.update("step", 0.5, "half way")
    if args.kind == "input":
        raise InputError("The image is 2D; give a 3D volume.")
    if args.kind == "internal":
        raise ZeroDivisionError("division by zero")
    if args.kind == "cancel":
        raise CancelledError("Cancelled by signal SIGTERM.")
    progress.result("/tmp/out.seg.nrrd", "segmentation")
"""


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    (tmp_path / "fake_commands.py").write_text(textwrap.dedent(FAKE_COMMANDS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["fake_commands"])
    return cli.main


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("kind, code", [
    ("ok", EXIT_OK), ("input", EXIT_BAD_INPUT), ("internal", EXIT_FAILED), ("cancel", EXIT_CANCELLED),
])
def test_main_maps_outcomes_to_exit_codes_and_events(fake_cli, capsys, kind, code):
    assert fake_cli(["--progress-json", "outcome", kind]) == code
    events = _events(capsys.readouterr().out)
    assert events[0] == {"event": "progress", "stage": "step", "fraction": 0.5, "message": "half way"}
    assert events[-1] == {"event": "done", "code": code}
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == (0 if code == EXIT_OK else 1)
    if errors:
        assert errors[0]["code"] == code
    if kind == "input":
        assert errors[0]["message"] == "The image is 2D; give a 3D volume."
    if kind == "internal":
        assert errors[0]["message"] == "Internal error: division by zero"
        assert "Traceback" in errors[0]["details"] and "ZeroDivisionError" in errors[0]["details"]
    if kind == "ok":
        assert {"event": "result", "path": "/tmp/out.seg.nrrd", "kind": "segmentation"} in events


def test_main_without_json_prints_message_on_stderr_only(fake_cli, capsys):
    assert fake_cli(["--quiet", "outcome", "input"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "spinebrain: The image is 2D; give a 3D volume." in captured.err


def test_usage_errors_are_bad_input_with_an_error_event(fake_cli, capsys):
    assert fake_cli(["--progress-json", "outcome", "sideways"]) == EXIT_BAD_INPUT
    events = _events(capsys.readouterr().out)
    assert [e["event"] for e in events] == ["error", "done"]
    assert "invalid choice: 'sideways'" in events[0]["message"] and events[1]["code"] == EXIT_BAD_INPUT


def test_usage_errors_without_json_look_like_argparse(fake_cli, capsys):
    assert fake_cli(["outcome"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: spinebrain outcome") and "error: the following arguments" in captured.err


def test_progress_json_lines_clamp_fraction_and_stringify_paths():
    stream = io.StringIO()
    progress = Progress(json_lines=True, stream=stream)
    progress.update("inference", 1.7, "over the top")
    progress.update("inference", -0.2)
    progress.result(os.path.join("out", "labels.mrk.json"), "markups")
    progress.log("hello")
    events = _events(stream.getvalue())
    assert [e.get("fraction") for e in events[:2]] == [1.0, 0.0]
    assert events[2] == {"event": "result", "path": os.path.join("out", "labels.mrk.json"), "kind": "markups"}
    assert events[3] == {"event": "log", "message": "hello"}


def test_progress_without_json_writes_nothing_to_its_stream(capsys):
    stream = io.StringIO()
    progress = Progress(json_lines=False, stream=stream, quiet=True)
    progress.update("inference", 0.5)
    progress.emit("case", name="a")
    progress.close()
    assert stream.getvalue() == "" and capsys.readouterr().err == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_terminate_raises_cancelled_once_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    cleaned_up = False
    with pytest.raises(CancelledError, match="SIGTERM"):
        with cancel_on_terminate():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # interrupted by the handler
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second request must not break the clean-up
                time.sleep(0.05)
                cleaned_up = True
    assert cleaned_up
    assert signal.getsignal(signal.SIGTERM) is before


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spinebrain", *args], capture_output=True, text=True, timeout=120)


def test_real_cli_version():
    completed = _run_cli("--version")
    assert completed.returncode == EXIT_OK and completed.stdout.strip() == f"spinebrain {__version__}"


def test_real_cli_bad_input_is_exit_2_with_parseable_events(tmp_path):
    missing = tmp_path / "missing.nii.gz"
    completed = _run_cli("--progress-json", "demo", "--input", str(missing), "--out", str(tmp_path / "out"))
    assert completed.returncode == EXIT_BAD_INPUT
    events = _events(completed.stdout)  # every stdout line is a JSON event
    error = [e for e in events if e["event"] == "error"]
    assert len(error) == 1 and str(missing) in error[0]["message"]
    assert events[-1] == {"event": "done", "code": EXIT_BAD_INPUT}
    assert not (tmp_path / "out" / "scan_1mm.nrrd").exists()


def test_as_progress_gives_an_object_to_call_unconditionally(capsys):
    from spinebrain.protocol import CallbackProgress, NullProgress, as_progress

    silent = as_progress(None)
    assert isinstance(silent, NullProgress)
    silent.update("stage", 0.5, "message")
    silent.log("nothing")
    silent.emit("event", value=1)
    silent.result("/x.mrk.json", kind="markups")
    silent.close()
    assert capsys.readouterr() == ("", "")
    progress = Progress(json_lines=True)
    assert as_progress(progress) is progress
    seen = []
    forwarding = as_progress(lambda *update: seen.append(update))
    assert isinstance(forwarding, CallbackProgress)
    forwarding.update("stage", 1.5, "clamped")
    assert seen == [("stage", 1.0, "clamped")]
    with pytest.raises(TypeError, match="progress must be None"):
        as_progress(42)


def test_a_cancel_wrapped_by_a_library_still_exits_cancelled(capsys):
    """MONAI wraps an error raised inside a transform in a RuntimeError; the cancel must still read as a cancel."""
    from spinebrain.cli import execute
    from spinebrain.errors import EXIT_CANCELLED, CancelledError
    from spinebrain.protocol import Progress

    def run(args, progress):
        try:
            raise CancelledError("Cancelled.")
        except CancelledError as error:
            raise RuntimeError("applying transform <RandCropByPosNegLabeld>") from error

    assert execute(run, None, Progress(json_lines=True)) == EXIT_CANCELLED
    assert '"code": 3' in capsys.readouterr().out
