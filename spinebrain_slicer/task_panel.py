"""The Apply / Cancel state machine of a module's task, without Qt (tested headless on slicer-core).

States: idle --start--> running --cancel--> cancelling --(run ends)--> idle; running --(run ends)--> idle.
:class:`TaskRunControls` keeps the state, the progress and the status line of one module's runs and
says what the widgets show (:class:`PanelView`); :class:`~spinebrain_slicer.qt_task.TaskRunPanel`
only copies that view onto the buttons, progress bar and label, and calls :meth:`TaskRunControls.poll`
from a QTimer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

CANCEL_GRACE_SECONDS = 5.0
RUNNING_STATUS = "Running..."
CANCELLING_STATUS = "Cancelling..."
#: The status line after a run, by its end state; any other end shows the run's own error message.
FINISHED_STATUS = {"succeeded": "Done.", "cancelled": "Cancelled; nothing was changed."}


class PanelState(str, enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"


@dataclass(frozen=True)
class PanelView:
    """What the widgets show."""

    apply_enabled: bool
    cancel_enabled: bool
    cancel_visible: bool
    progress_visible: bool
    progress_percent: int
    status: str


class TaskRunControls:
    """One module's runs: at most one at a time, cancel while running, the status when it ends.

    ``can_apply()`` says whether Apply may be enabled while idle (inputs chosen); ``on_log(text)``
    receives the run's log lines; ``on_finished(run)`` is called once per run, on the polling
    thread, after the scene was updated (success) or left alone (failure, cancel).
    """

    def __init__(self, can_apply: Callable[[], bool] | None = None, on_log: Callable[[str], None] | None = None,
                 on_finished=None):
        self.can_apply = can_apply or (lambda: True)
        self.on_log, self.on_finished = on_log, on_finished
        self.state = PanelState.IDLE
        self.run = None
        self.progress_percent = 0
        self.status = ""

    def start(self, start_run) -> bool:
        """Start a run: ``start_run(on_progress=..., on_log=...)`` returns a TaskRun.

        False (nothing started) while a run is going on. Bad input raises from ``start_run`` at
        once; the controls then stay idle with the earlier status.
        """
        if self.state is not PanelState.IDLE:
            return False
        run = start_run(on_progress=self._progress, on_log=self._log)
        self.run, self.state = run, PanelState.RUNNING
        self.progress_percent, self.status = 0, RUNNING_STATUS
        return True

    def cancel(self, grace_seconds: float = CANCEL_GRACE_SECONDS) -> bool:
        """Ask the running run to stop; False when there is none (idle, or already cancelling)."""
        if self.state is not PanelState.RUNNING:
            return False
        self.state, self.status = PanelState.CANCELLING, CANCELLING_STATUS
        self.run.cancel(grace_seconds)
        return True

    def poll(self) -> bool:
        """Handle the run's new events; True when the run ended in this call (then the controls are idle)."""
        if self.state is PanelState.IDLE:
            return False
        self.run.poll()
        if not self.run.finished:
            return False
        self.state = PanelState.IDLE
        self.status = FINISHED_STATUS.get(self.run.state.value, self.run.error)
        if self.on_finished:
            self.on_finished(self.run)
        return True

    def stop(self) -> None:
        """Cancel any run and wait for its end (the module closes, the scene is cleared); nothing is imported."""
        self.cancel()
        if self.run is not None and not self.run.finished:
            try:
                self.run.wait()
            except Exception:  # noqa: BLE001 -- CancelledError (or the run's own error): nothing to show now
                pass
        if self.state is not PanelState.IDLE:
            self.status = FINISHED_STATUS.get(self.run.state.value, self.run.error)
        self.state = PanelState.IDLE

    def view(self) -> PanelView:
        idle = self.state is PanelState.IDLE
        return PanelView(apply_enabled=idle and bool(self.can_apply()),
                         cancel_enabled=self.state is PanelState.RUNNING, cancel_visible=not idle,
                         progress_visible=not idle or self.progress_percent > 0,
                         progress_percent=self.progress_percent, status=self.status)

    def _progress(self, stage: str, fraction: float, message: str) -> None:
        self.progress_percent = int(round(100 * min(max(float(fraction), 0.0), 1.0)))
        if self.state is PanelState.RUNNING:
            self.status = f"{stage}: {message}" if message else stage

    def _log(self, text: str) -> None:
        if self.on_log:
            self.on_log(text)
