"""The Logic every module's task runs through: export -> run -> import, with cancel and per-node undo.

No Qt, no ``slicer.app``: it runs in Slicer and on the slicer-core wheel (the tests). A module's
Logic subclasses :class:`TaskLogic` and writes two hooks:

- :meth:`TaskLogic.prepare` checks the request and exports its input nodes into a fresh work
  folder (nodes -> files or core objects); it returns a :class:`TaskJob`: either the arguments of
  a ``spinebrain`` command (long work: a background process through :mod:`runner`) or a function
  of a :class:`~spinebrain.protocol.Progress` (short work: in this process, on a worker thread);
- :meth:`TaskLogic.import_results` turns a successful run's files (or the function's return value)
  into nodes. It runs on the caller's thread, only after success.

The scene is changed by the import alone. If the import raises, the nodes it added are removed
and the existing nodes it touched get their content back, so a cancelled, failed or half-imported
run leaves the scene as it was. Every existing node the import replaces is kept in a
:class:`NodeHistory` first, so :meth:`TaskLogic.undo` puts its previous content back.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spinebrain.errors import CancelledError, InputError, SpineBrainError
from spinebrain.protocol import Progress

from .runner import ProcessRunner, RunResult, RunState, core_command, slicer_python

HISTORY_LIMIT = 20  # snapshots kept per node (a volume snapshot holds a copy of its voxels)
POLL_SECONDS = 0.05


class Runner(Protocol):
    """What :class:`TaskRun` needs of a run: :class:`~spinebrain_slicer.runner.ProcessRunner` is one."""

    def start(self) -> Runner: ...
    def poll(self, timeout: float = 0.0) -> list[dict]: ...
    def cancel(self, grace_seconds: float = 5.0) -> None: ...
    def result(self) -> RunResult: ...

    @property
    def finished(self) -> bool: ...


def core_process_runner(args: list[str]) -> Runner:
    """The default runner factory: ``spinebrain ARGS --progress-json`` under Slicer's Python (PythonSlicer)."""
    return ProcessRunner(core_command(args, slicer_python()))


class TaskError(SpineBrainError):
    """A run ended without a result; the message is the one the command line (or the core) gave."""

    def __init__(self, message: str, state: RunState = RunState.FAILED, details: str = ""):
        super().__init__(message)
        self.state, self.details = state, details


class TaskInputError(TaskError, InputError):
    """The run refused its input (exit code 2): an InputError, as the core raises in process."""


@dataclass
class TaskJob:
    """What one run does: ``args`` of a ``spinebrain`` command, or ``work(progress)`` run in this process.

    ``context`` is whatever the import needs (output node, options); ``replaces`` the existing
    nodes the import will overwrite (kept for undo and restored if the import fails).
    """

    args: list[str] | None = None
    work: Callable[[Progress], Any] | None = None
    context: dict = field(default_factory=dict)
    replaces: list = field(default_factory=list)


class InProcessRunner:
    """A :class:`Runner` for short work: ``work(progress)`` on a worker thread, same events as a process.

    The work sees a Progress whose updates become ``progress`` events; after :meth:`cancel`
    its next update raises CancelledError (the work stops at its next progress report).
    """

    def __init__(self, work: Callable[[Progress], Any]):
        self.work = work
        self.state = RunState.NOT_STARTED
        self.value = None
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._error, self._details, self._log = "", "", []

    def start(self) -> InProcessRunner:
        self.state = RunState.RUNNING
        self._thread = threading.Thread(target=self._run, name="spinebrain-task", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.value = self.work(_EventProgress(self._put, self._cancel))
            state = RunState.SUCCEEDED
        except CancelledError:
            state = RunState.CANCELLED
        except InputError as error:
            state, self._error = RunState.BAD_INPUT, str(error)
        except Exception as error:  # noqa: BLE001 -- reported like the CLI's internal error
            logging.exception("SlicerSpineBrain: in-process task failed")
            state, self._error, self._details = RunState.FAILED, f"Internal error: {error}", traceback.format_exc()
        self._put({"event": "done", "state": state.value})

    def _put(self, event: dict) -> None:
        with self._lock:
            self._events.append(event)

    def poll(self, timeout: float = 0.0) -> list[dict]:
        if timeout > 0 and self._thread is not None and not self._events:
            self._thread.join(timeout)
        with self._lock:
            events, self._events = self._events, []
        for event in events:
            if event["event"] == "done":
                self.state = RunState(event["state"])
            elif event["event"] == "log":
                self._log.append(event["message"])
        return events

    def cancel(self, grace_seconds: float = 5.0) -> None:
        self._cancel.set()

    @property
    def finished(self) -> bool:
        return self.state not in (RunState.NOT_STARTED, RunState.RUNNING)

    def result(self) -> RunResult:
        return RunResult(self.state, None, [], self._error, self._details, "\n".join(self._log))


class _EventProgress(Progress):
    """The core's Progress for in-process work: updates become events; a cancel request stops the work."""

    def __init__(self, put: Callable[[dict], None], cancelled: threading.Event):
        super().__init__(quiet=True)
        self._put, self._cancelled = put, cancelled

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        if self._cancelled.is_set():
            raise CancelledError("Cancelled on request.")
        self._put({"event": "progress", "stage": stage, "fraction": min(max(float(fraction), 0.0), 1.0),
                   "message": message})

    def log(self, message: str) -> None:
        self._put({"event": "log", "message": message})


def poll_until_finished(run, timeout: float | None, stop_now: Callable[[], None], what: str) -> None:
    """Poll ``run`` until it has finished (console, tests); a timeout or Ctrl+C stops it first, then re-raises."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not run.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{what} was still running after {timeout} s and was cancelled.")
            run.poll(POLL_SECONDS)
    except BaseException:  # a timeout, Ctrl+C in the console: stop the run, keep nothing
        stop_now()
        raise


def poll_runner(runner, timeout: float, dispatch: Callable[[dict], None],
                finish: Callable[[RunResult], None]) -> list[dict]:
    """The events that arrived from a background ``runner``, each passed to ``dispatch``; once the runner has
    ended, ``finish(its result)``. Returns the events (for a run's ``poll``)."""
    events = runner.poll(timeout)
    for event in events:
        dispatch(event)
    if runner.finished:
        finish(runner.result())
    return events


def raise_unless_succeeded(state: RunState, error: str, cancelled_message: str, details: str = "") -> None:
    """After a finished run: CancelledError, TaskInputError (bad input) or TaskError unless it succeeded."""
    if state is RunState.CANCELLED:
        raise CancelledError(cancelled_message)
    if state is not RunState.SUCCEEDED:
        raise (TaskInputError if state is RunState.BAD_INPUT else TaskError)(error, state, details)


class TaskRun:
    """One run of a task. Drive it with :meth:`poll` (a Qt timer) or :meth:`wait` (console, tests).

    Callbacks (called on the thread that polls): ``on_progress(stage, fraction, message)``,
    ``on_log(text)`` and ``on_event(event)`` for every event.
    """

    def __init__(self, logic: TaskLogic, job: TaskJob, runner: Runner, workdir: Path,
                 on_progress=None, on_log=None, on_event=None):
        self.logic, self.job, self.runner, self.workdir = logic, job, runner, workdir
        self.on_progress, self.on_log, self.on_event = on_progress, on_log, on_event
        self.state = RunState.RUNNING
        self.error = ""
        self.output = None  # what the import returned (e.g. the output node)
        self.result: RunResult | None = None

    @property
    def finished(self) -> bool:
        return self.state is not RunState.RUNNING

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Handle the events that arrived; on the run's end import the results (success only)."""
        if self.finished:
            return []
        return poll_runner(self.runner, timeout, self._dispatch, self._finish)

    def wait(self, timeout: float | None = None):
        """Block until the end: the import's output; else TaskError (TaskInputError: bad input) or CancelledError."""
        poll_until_finished(self, timeout, self._stop_now, "The task")
        raise_unless_succeeded(self.state, self.error, "The run was cancelled; nothing was changed.",
                               self.result.details if self.result else "")
        return self.output

    def cancel(self, grace_seconds: float = 5.0) -> None:
        """Ask the run to stop; the scene is left as it was (nothing is imported)."""
        if not self.finished:
            self.runner.cancel(grace_seconds)

    def _stop_now(self, seconds: float = 10.0) -> None:
        self.cancel(grace_seconds=0.0)
        deadline = time.monotonic() + seconds
        while not self.finished and time.monotonic() < deadline:
            self.poll(POLL_SECONDS)

    def _dispatch(self, event: dict) -> None:
        if self.on_event:
            self.on_event(event)
        kind = event.get("event")
        if kind == "progress" and self.on_progress:
            self.on_progress(str(event.get("stage", "")), float(event.get("fraction", 0.0)),
                             str(event.get("message", "")))
        elif kind == "log" and self.on_log:
            self.on_log(str(event.get("message", "")))

    def _finish(self, result: RunResult) -> None:
        self.result = result
        try:
            if result.ok:
                self.output = self.logic._import_guarded(self.job, result, getattr(self.runner, "value", None))
            self.state, self.error = result.state, result.error
        except SpineBrainError as error:
            self.state, self.error = RunState.BAD_INPUT, str(error)
        except Exception as error:  # noqa: BLE001 -- an import bug must not leave the run "running"
            logging.exception("SlicerSpineBrain: importing the results failed")
            self.state, self.error = RunState.FAILED, f"Importing the results failed: {error}"
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.error and self.on_log:
            self.on_log(self.error)


class NodeHistory:
    """Per-node undo: earlier contents of nodes, as detached copies (``CopyContent``), newest last."""

    def __init__(self, limit: int = HISTORY_LIMIT):
        self.limit = limit
        self._snapshots: dict[str, list] = {}

    @staticmethod
    def snapshot(node):
        copy = node.CreateNodeInstance()  # not added to any scene
        copy.CopyContent(node)
        return copy

    def push(self, node, snapshot=None) -> None:
        stack = self._snapshots.setdefault(node.GetID(), [])
        stack.append(snapshot if snapshot is not None else self.snapshot(node))
        del stack[: -self.limit]

    def can_undo(self, node) -> bool:
        return node is not None and bool(self._snapshots.get(node.GetID()))

    def undo(self, node) -> bool:
        """Give ``node`` its previous content back; False when there is none."""
        if not self.can_undo(node):
            return False
        node.CopyContent(self._snapshots[node.GetID()].pop())
        return True

    def forget(self, node) -> None:
        self._snapshots.pop(node.GetID(), None)


class TaskLogic:
    """Base of a module's Logic: see the module docstring. ``runner_factory(args)`` is injectable for tests."""

    def __init__(self, scene, runner_factory: Callable[[list[str]], Runner] | None = None):
        self.scene = scene
        self.runner_factory = runner_factory or core_process_runner
        self.history = NodeHistory()

    # -- hooks ---------------------------------------------------------------------------------

    def prepare(self, request: dict, workdir: Path) -> TaskJob:  # pragma: no cover - abstract
        raise NotImplementedError

    def import_results(self, job: TaskJob, result: RunResult, value=None):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- running -------------------------------------------------------------------------------

    def start(self, request: dict, on_progress=None, on_log=None, on_event=None) -> TaskRun:
        """Export the inputs and start the run; poll or wait on the returned :class:`TaskRun`.

        Bad input (from :meth:`prepare`) raises at once, before anything runs or changes.
        """
        workdir = Path(tempfile.mkdtemp(prefix="spinebrain-task-"))
        try:
            job = self.prepare(request, workdir)
            runner = InProcessRunner(job.work) if job.work is not None else self.runner_factory(job.args)
            runner.start()
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return TaskRun(self, job, runner, workdir, on_progress, on_log, on_event)

    def run_blocking(self, request: dict, on_progress=None, on_log=None, timeout: float | None = None):
        """Run to the end (Python console, tests): the import's output, or TaskError / CancelledError."""
        return self.start(request, on_progress, on_log).wait(timeout)

    # -- undo ----------------------------------------------------------------------------------

    def can_undo(self, node) -> bool:
        return self.history.can_undo(node)

    def undo(self, node) -> bool:
        """Put back the node's content from before the last run or edit; False if there is none."""
        return self.history.undo(node)

    @contextmanager
    def replacing(self, nodes):
        """Change existing ``nodes`` and add new ones as one step: all of it, or (on an exception) none of it.

        On success the previous content of each node goes to the undo history.
        """
        nodes = [n for n in nodes if n is not None]
        before = [self.history.snapshot(n) for n in nodes]
        known = {self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())}
        try:
            yield
        except BaseException:
            for node, snapshot in zip(nodes, before):
                node.CopyContent(snapshot)
            self._remove_added(known)
            raise
        for node, snapshot in zip(nodes, before):
            self.history.push(node, snapshot)

    def _remove_added(self, known: set[str]) -> None:
        added = [self.scene.GetNthNode(i) for i in range(self.scene.GetNumberOfNodes())]
        for node in added:
            if node.GetID() not in known and self.scene.IsNodePresent(node):
                self.scene.RemoveNode(node)

    def _import_guarded(self, job: TaskJob, result: RunResult, value):
        with self.replacing(job.replaces):
            return self.import_results(job, result, value)
