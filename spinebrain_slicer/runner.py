"""Run the ``spinebrain`` command line as a background process and follow its JSON-lines protocol.

Pure Python (no Qt, no slicer import), so the same code serves Slicer's modules through
:mod:`spinebrain_slicer.task_logic` (and its Qt panel, :mod:`spinebrain_slicer.qt_task`), the
Python console (:func:`run_blocking`) and the tests.

The child prints one JSON event per stdout line (see :mod:`spinebrain.protocol`). Two reader
threads move stdout events and stderr lines into a queue, so :meth:`ProcessRunner.poll` never
blocks the caller (a Qt timer calls it). Cancel asks the child to stop (it cleans up and exits
with the cancelled code) and, if it is still running after a grace period, kills its whole
process tree: the child is started in its own process group (POSIX session / Windows process
group) so its own children (data loaders, torchrun workers) go with it.
"""

from __future__ import annotations

import collections
import enum
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from spinebrain.errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK

IS_WINDOWS = sys.platform == "win32"
LOG_LINES_KEPT = 20000  # a long training run must not grow the log without bound
ORPHAN_PIPE_SECONDS = 1.0  # after the child exits, how long a process it left behind may hold our pipes


class RunState(str, enum.Enum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BAD_INPUT = "bad_input"
    CANCELLED = "cancelled"


_STATE_BY_EXIT_CODE = {
    EXIT_OK: RunState.SUCCEEDED, EXIT_BAD_INPUT: RunState.BAD_INPUT, EXIT_CANCELLED: RunState.CANCELLED,
}


@dataclass(frozen=True)
class OutputFile:
    """A file the run announced with a ``result`` event (complete on disk when announced)."""

    path: Path
    kind: str
    info: dict = field(default_factory=dict, compare=False)  # the event's other fields (e.g. the model used)


@dataclass
class RunResult:
    state: RunState
    exit_code: int | None
    outputs: list[OutputFile] = field(default_factory=list)
    error: str = ""  # the message to show the user ("" on success and on cancel)
    details: str = ""  # traceback or usage text, for the log
    log: str = ""  # stderr and plain stdout lines

    @property
    def ok(self) -> bool:
        return self.state is RunState.SUCCEEDED


def slicer_python() -> str:
    """Python to run the core with: Slicer's ``PythonSlicer`` launcher when on PATH (as in Slicer), else this one."""
    return shutil.which("PythonSlicer") or sys.executable


def core_command(args: list[str], python_executable: str | None = None) -> list[str]:
    """The command line that runs ``spinebrain`` (inside Slicer pass :func:`slicer_python`)."""
    return [python_executable or sys.executable, "-m", "spinebrain", "--progress-json", *map(str, args)]


def core_environment(base: dict | None = None) -> dict:
    """Environment for the child: unbuffered UTF-8 output, and ``spinebrain`` importable from here."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    package = importlib.util.find_spec("spinebrain")
    if package is not None and package.origin:  # the extension folder may not be on PythonSlicer's path
        root = str(Path(package.origin).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class ProcessRunner:
    """One background run of a command that speaks the JSON-lines protocol.

    ``command`` is the full argument list (see :func:`core_command`); tests pass a small script.
    Call :meth:`start`, then :meth:`poll` regularly (or :meth:`wait`), and :meth:`cancel` to stop.
    """

    def __init__(self, command: list[str], cwd: str | os.PathLike | None = None, env: dict | None = None):
        self.command = [str(part) for part in command]
        self.cwd = cwd
        self.env = core_environment() if env is None else env
        self.state = RunState.NOT_STARTED
        self.exit_code: int | None = None
        self.outputs: list[OutputFile] = []
        self.error = ""
        self.details = ""
        self._log = collections.deque(maxlen=LOG_LINES_KEPT)
        self._events: queue.Queue = queue.Queue()
        self._process: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []
        self._cancel_requested = False
        self._kill_timer: threading.Timer | None = None
        self._exited_at: float | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ProcessRunner:
        if self.state is not RunState.NOT_STARTED:
            raise RuntimeError("This runner has already been started; create a new one for another run.")
        try:
            self._process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                errors="replace", bufsize=1, **_new_process_group(),
            )
        except OSError as error:
            self.state, self.exit_code = RunState.FAILED, None
            self.error = f"Could not start {self.command[0]}: {error}."
            return self
        self.state = RunState.RUNNING
        self._readers = [
            threading.Thread(target=self._read_stdout, name="spinebrain-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="spinebrain-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self.state is RunState.RUNNING

    @property
    def finished(self) -> bool:
        return self.state not in (RunState.NOT_STARTED, RunState.RUNNING)

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Events received since the last call; updates state, outputs and error.

        Returns at once by default (for a Qt timer); ``timeout`` waits up to that long for an event.
        """
        events = []
        if timeout > 0 and self.running:
            try:
                events.append(self._events.get(timeout=timeout))
            except queue.Empty:
                pass
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        for event in events:
            self._record(event)
        if self.running and self._process.poll() is not None and self._output_drained():
            self._finish(self._process.returncode)
        return events

    def _output_drained(self) -> bool:
        """All output read; or the child exited a while ago and only an orphan keeps the pipes open."""
        if not any(reader.is_alive() for reader in self._readers):
            return self._events.empty()
        if self._exited_at is None:
            self._exited_at = time.monotonic()
        return time.monotonic() - self._exited_at > ORPHAN_PIPE_SECONDS

    def wait(self, timeout: float | None = None, on_event=None) -> RunResult:
        """Block until the run ends, passing each event to ``on_event``; ``timeout`` raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.command} still running after {timeout} s")
            for event in self.poll(timeout=0.05):
                if on_event is not None:
                    on_event(event)
        return self.result()

    def run(self, on_event=None, timeout: float | None = None) -> RunResult:
        """Start, wait and return the result; Ctrl+C in the console cancels the child first."""
        self.start()
        try:
            return self.wait(timeout, on_event)
        except BaseException:
            if self.running:
                self.cancel(grace_seconds=2.0)
                self.wait(timeout=10.0)
            raise

    def result(self) -> RunResult:
        return RunResult(self.state, self.exit_code, list(self.outputs), self.error, self.details, self.log)

    @property
    def log(self) -> str:
        return "\n".join(self._log)

    # -- cancel --------------------------------------------------------------------------------

    def cancel(self, grace_seconds: float = 5.0) -> None:
        """Ask the run to stop; kill its whole process tree if it is still running after the grace period.

        Returns at once (a timer does the kill), so a Qt button handler can call it.
        """
        if self._process is None or self._process.poll() is not None or self._cancel_requested:
            return
        self._cancel_requested = True
        if not self._request_stop():
            grace_seconds = 0.0  # no way to ask politely: kill now
        self._kill_timer = threading.Timer(grace_seconds, self._kill_if_running)
        self._kill_timer.daemon = True
        self._kill_timer.start()

    def _request_stop(self) -> bool:
        """Send the terminate request the CLI turns into CancelledError; False if it cannot be sent."""
        try:
            if IS_WINDOWS:  # raises SIGBREAK in the child; needs CREATE_NEW_PROCESS_GROUP and a console
                os.kill(self._process.pid, signal.CTRL_BREAK_EVENT)
            else:  # only the main process: it stops its own workers while cleaning up
                self._process.send_signal(signal.SIGTERM)
            return True
        except OSError:
            return False

    def _kill_if_running(self) -> None:
        if self._process.poll() is None:  # not yet reaped, so the process group id is still ours
            kill_process_tree(self._process.pid)

    # -- reader threads and bookkeeping --------------------------------------------------------

    def _read_stdout(self) -> None:
        for line in self._process.stdout:
            self._events.put(_parse_line(line.rstrip("\r\n")))
        self._process.stdout.close()

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            self._events.put({"event": "log", "message": line.rstrip("\r\n"), "stream": "stderr"})
        self._process.stderr.close()

    def _record(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "log":
            self._log.append(str(event.get("message", "")))
        elif kind == "result" and event.get("path"):
            info = {k: v for k, v in event.items() if k not in ("event", "path", "kind")}
            self.outputs.append(OutputFile(Path(event["path"]), str(event.get("kind", "")), info))
        elif kind == "error":
            self.error = str(event.get("message", ""))
            self.details = str(event.get("details", ""))

    def _finish(self, returncode: int) -> None:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self.exit_code = returncode
        if self._cancel_requested and returncode not in (EXIT_OK, EXIT_BAD_INPUT):
            self.state = RunState.CANCELLED  # exited on the request, or killed after the grace period
        else:
            self.state = _STATE_BY_EXIT_CODE.get(returncode, RunState.FAILED)
        if self.state is RunState.CANCELLED:
            self.error = ""
        elif self.state is not RunState.SUCCEEDED and not self.error:
            last = [line for line in self._log if line.strip()][-1:]
            self.error = f"The process ended with code {returncode}" + (f": {last[0]}" if last else ".")


def run_blocking(args: list[str], on_event=None, python_executable: str | None = None,
                 timeout: float | None = None) -> RunResult:
    """Run ``spinebrain ARGS`` to the end (Python console, tests); ``on_event`` sees each event."""
    return ProcessRunner(core_command(args, python_executable)).run(on_event, timeout)


def kill_process_tree(pid: int) -> None:
    """Kill ``pid`` and every process it started, on Linux, macOS and Windows."""
    if IS_WINDOWS:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False)
        return
    descendants = _descendants(pid)  # those that left the group (setsid) are found with psutil only
    try:
        os.killpg(pid, signal.SIGKILL)  # the child leads its own session, so its group id is its pid
    except (ProcessLookupError, PermissionError):
        pass
    for process in descendants:
        try:
            process.kill()
        except Exception:  # noqa: BLE001 -- already gone
            pass


def _descendants(pid: int) -> list:
    try:
        import psutil  # optional: used when Slicer's Python happens to have it
    except ImportError:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _new_process_group() -> dict:
    if IS_WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _parse_line(line: str) -> dict:
    """A protocol event, or a ``log`` event for any other stdout text."""
    if line.startswith("{"):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            return event
    return {"event": "log", "message": line, "stream": "stdout"}
