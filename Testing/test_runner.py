"""The background-process runner: events, states, cancel with clean-up, kill of the whole process tree.

The child scripts are real Python processes using the real protocol (spinebrain.cli.execute,
Progress, atomic_path), exactly as a ``spinebrain`` subcommand runs.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spinebrain import __version__
from spinebrain_slicer.runner import (
    OutputFile, ProcessRunner, RunState, core_command, kill_process_tree, run_blocking,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="process-group signals are POSIX")

# Writes its output through atomic_path step by step, like a long inference writing its result.
WORKER = """
import argparse, sys, time
from pathlib import Path
from spinebrain.cli import execute
from spinebrain.io import atomic_path
from spinebrain.protocol import Progress

def work(args, progress):
    print("plain text on stdout", flush=True)
    print("a warning on stderr", file=sys.stderr, flush=True)
    with atomic_path(args.out) as temporary:
        for step in range(args.steps):
            temporary.write_text(f"step {step}")
            progress.update("work", step / args.steps, f"step {step}")
            time.sleep(0.02)
    progress.result(args.out, "text")

args = argparse.Namespace(out=Path(sys.argv[1]), steps=int(sys.argv[2]))
sys.exit(execute(work, args, Progress(json_lines=True)))
"""

# Ignores the terminate request and starts a child that would outlive it.
STUBBORN = """
import json, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(json.dumps({"event": "progress", "stage": "started", "fraction": 0.0, "child": child.pid}), flush=True)
time.sleep(60)
"""


def _script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "child_script.py"
    path.write_text(textwrap.dedent(text))
    return path


def _wait_for_event(runner: ProcessRunner, kind: str, timeout: float = 20.0) -> dict:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += runner.poll(timeout=0.05)
        matches = [e for e in seen if e.get("event") == kind]
        if matches:
            return matches[0]
    raise AssertionError(f"no {kind!r} event within {timeout} s; got {seen}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")  # a killed orphan may linger as a zombie until reaped
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_successful_run_reports_progress_results_and_log(tmp_path):
    out = tmp_path / "out" / "result.txt"
    events = []
    result = ProcessRunner([sys.executable, _script(tmp_path, WORKER), out, 3]).run(events.append, timeout=60)
    assert result.state is RunState.SUCCEEDED and result.ok and result.exit_code == 0
    assert result.outputs == [OutputFile(out, "text")]
    assert out.read_text() == "step 2"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and len(fractions) == 3
    assert events[-1] == {"event": "done", "code": 0}
    assert "plain text on stdout" in result.log and "a warning on stderr" in result.log
    assert result.error == ""


@posix_only
@pytest.mark.parametrize("existing", [None, "the previous result"])
def test_cancel_cleans_up_and_exits_with_cancelled_code(tmp_path, existing):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result.txt"
    if existing is not None:
        out.write_text(existing)
    runner = ProcessRunner([sys.executable, _script(tmp_path, WORKER), out, 1000]).start()
    _wait_for_event(runner, "progress")
    events = []
    runner.cancel(grace_seconds=10)
    result = runner.wait(timeout=30, on_event=events.append)
    assert result.state is RunState.CANCELLED
    assert result.exit_code == 3  # the child cleaned up and exited itself: it was not killed
    assert {"event": "done", "code": 3} in events
    assert result.outputs == [] and result.error == ""
    assert sorted(p.name for p in out_dir.iterdir()) == ([] if existing is None else ["result.txt"])
    if existing is not None:
        assert out.read_text() == existing


@posix_only
def test_cancel_kills_the_whole_tree_after_the_grace_period(tmp_path):
    runner = ProcessRunner([sys.executable, _script(tmp_path, STUBBORN)]).start()
    child = _wait_for_event(runner, "progress")["child"]
    assert _alive(child)
    started = time.monotonic()
    runner.cancel(grace_seconds=0.3)
    result = runner.wait(timeout=20)
    assert time.monotonic() - started >= 0.3
    assert result.state is RunState.CANCELLED
    assert result.exit_code == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the grandchild survived the kill of its parent's process tree"


@posix_only
def test_kill_process_tree_of_a_finished_process_is_harmless(tmp_path):
    runner = ProcessRunner([sys.executable, "-c", "pass"])
    assert runner.run(timeout=30).ok
    kill_process_tree(runner.pid)  # group gone: nothing to do, no error


def test_an_orphan_holding_the_pipes_does_not_keep_the_run_going(tmp_path):
    script = _script(tmp_path, """
        import json, subprocess, sys
        orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # inherits stdout
        print(json.dumps({"event": "log", "message": "left", "orphan": orphan.pid}), flush=True)
    """)
    events = []
    started = time.monotonic()
    result = ProcessRunner([sys.executable, script]).run(events.append, timeout=20)
    try:
        assert result.ok and time.monotonic() - started < 10
        assert "left" in result.log
    finally:
        os.kill(events[0]["orphan"], signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)


def test_crash_without_protocol_is_failed_with_the_last_log_line(tmp_path):
    script = _script(tmp_path, "raise RuntimeError('disk on fire')")
    result = ProcessRunner([sys.executable, script]).run(timeout=30)
    assert result.state is RunState.FAILED and result.exit_code == 1
    assert "disk on fire" in result.error and "Traceback" in result.log


def test_internal_error_event_is_what_the_user_sees(tmp_path):
    script = _script(tmp_path, """
        import argparse, sys
        from spinebrain.cli import execute
        from spinebrain.protocol import Progress
        def work(args, progress):
            raise KeyError("missing weights")
        sys.exit(execute(work, argparse.Namespace(), Progress(json_lines=True)))
    """)
    result = ProcessRunner([sys.executable, script]).run(timeout=30)
    assert result.state is RunState.FAILED and result.exit_code == 1
    assert result.error == "Internal error: 'missing weights'"
    assert "KeyError" in result.details


def test_a_missing_program_is_a_failed_run_not_an_exception(tmp_path):
    result = ProcessRunner([str(tmp_path / "no-such-python")]).run(timeout=10)
    assert result.state is RunState.FAILED and result.exit_code is None
    assert "Could not start" in result.error


def test_poll_does_not_block_while_the_child_is_quiet(tmp_path):
    script = _script(tmp_path, "import time; time.sleep(1.0); print('late')")
    runner = ProcessRunner([sys.executable, script]).start()
    started = time.monotonic()
    assert runner.poll() == []
    assert time.monotonic() - started < 0.2 and runner.running
    result = runner.wait(timeout=30)
    assert result.ok and "late" in result.log


def test_a_runner_runs_once(tmp_path):
    runner = ProcessRunner([sys.executable, "-c", "pass"])
    runner.run(timeout=30)
    with pytest.raises(RuntimeError, match="already been started"):
        runner.start()


def test_core_command_runs_the_package_with_progress_json():
    command = core_command(["segment", Path("a.nii.gz")], python_executable="/opt/Slicer/bin/PythonSlicer")
    assert command == ["/opt/Slicer/bin/PythonSlicer", "-m", "spinebrain", "--progress-json", "segment", "a.nii.gz"]


def test_run_blocking_real_cli_version():
    result = run_blocking(["--version"], timeout=60)
    assert result.ok and f"spinebrain {__version__}" in result.log


def test_run_blocking_real_cli_bad_input_shows_the_message():
    events = []
    result = run_blocking(["no-such-command"], on_event=events.append, timeout=60)
    assert result.state is RunState.BAD_INPUT and result.exit_code == 2
    assert "invalid choice: 'no-such-command'" in result.error
    assert [e["event"] for e in events] == ["error", "done"]
    assert json.loads(json.dumps(events))  # every event is plain JSON


def test_runner_needs_no_qt_and_the_qt_panel_only_uses_the_runs_public_api():
    probe = ("import sys, spinebrain_slicer.runner, spinebrain_slicer.task_logic, spinebrain_slicer.task_panel; "
             "print(sorted(m for m in ('qt', 'slicer', 'ctk') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"
    from spinebrain_slicer.task_logic import TaskRun

    folder = Path(__file__).resolve().parents[1] / "spinebrain_slicer"
    used = set()
    for panel in (folder / "qt_task.py", folder / "task_panel.py"):  # the Qt panel and its state machine
        tree = ast.parse(panel.read_text())  # qt_task imports qt, so it is checked without importing it
        used |= {
            node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "run"
        }
    public = set(dir(TaskRun)) | {"state", "error", "output", "result"}  # the last four are set in __init__
    assert used and all(name in public and not name.startswith("_") for name in used), used
