"""Drive a :class:`~spinebrain_slicer.runner.ProcessRunner` from Slicer's event loop (runs in Slicer only).

A QTimer polls the runner so the GUI stays responsive; all logic lives in :mod:`runner`.
"""

from __future__ import annotations

import qt

from .runner import ProcessRunner, RunResult, core_command, slicer_python

POLL_INTERVAL_MS = 100


class QtProcessRunner:
    """Start a run and report it through callbacks, called on the GUI thread.

    ``on_progress(stage, fraction, message)``, ``on_log(text)``, ``on_event(event)`` (every event)
    and ``on_finished(result: RunResult)`` are all optional.
    """

    def __init__(self, runner: ProcessRunner, on_progress=None, on_log=None, on_event=None, on_finished=None):
        self.runner = runner
        self.on_progress, self.on_log, self.on_event, self.on_finished = on_progress, on_log, on_event, on_finished
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)

    @classmethod
    def for_core(cls, args: list[str], python_executable: str | None = None, **callbacks) -> QtProcessRunner:
        """Runner for ``spinebrain ARGS`` under Slicer's Python (PythonSlicer)."""
        return cls(ProcessRunner(core_command(args, python_executable or slicer_python())), **callbacks)

    def start(self) -> QtProcessRunner:
        self.runner.start()
        self._timer.start()
        self._poll()  # reports a failure to start at once
        return self

    def cancel(self, grace_seconds: float = 5.0) -> None:
        self.runner.cancel(grace_seconds)

    @property
    def running(self) -> bool:
        return self.runner.running

    def _poll(self) -> None:
        for event in self.runner.poll():
            self._dispatch(event)
        if self.runner.finished:
            self._timer.stop()
            if self.on_finished:
                self.on_finished(self.runner.result())

    def _dispatch(self, event: dict) -> None:
        if self.on_event:
            self.on_event(event)
        if event.get("event") == "progress" and self.on_progress:
            self.on_progress(event.get("stage", ""), float(event.get("fraction", 0.0)), event.get("message", ""))
        elif event.get("event") == "log" and self.on_log:
            self.on_log(str(event.get("message", "")))


__all__ = ["QtProcessRunner", "RunResult"]
