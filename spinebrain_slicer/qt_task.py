"""Apply / Cancel for a module's task in Slicer: states, a timer draining the run's events, progress and log.

Runs in Slicer only (Qt); checked statically in CI. All the work is in
:class:`~spinebrain_slicer.task_logic.TaskRun`: this file only moves its events onto the widgets.
The run's reader threads fill a queue; a QTimer on the GUI thread drains it through
``TaskRun.poll`` -- no ``processEvents`` loop, so Slicer stays responsive while a run goes on.

States: idle --Apply--> running --Cancel--> cancelling --(run ends)--> idle; running --(run ends)--> idle.
"""

from __future__ import annotations

import enum

import qt

POLL_INTERVAL_MS = 100
CANCEL_GRACE_SECONDS = 5.0


class PanelState(str, enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"


class TaskRunPanel:
    """Drives one module's Apply button, Cancel button, progress bar, status label and log pane.

    ``on_finished(run)`` is called once per run on the GUI thread, after the scene was updated
    (success) or left alone (failure, cancel). ``can_apply()`` says whether Apply may be enabled
    while idle (inputs chosen).
    """

    def __init__(self, apply_button, cancel_button, progress_bar, status_label, log_pane,
                 on_finished=None, can_apply=None):
        self.apply_button, self.cancel_button = apply_button, cancel_button
        self.progress_bar, self.status_label, self.log_pane = progress_bar, status_label, log_pane
        self.on_finished = on_finished
        self.can_apply = can_apply or (lambda: True)
        self.run = None
        self.state = PanelState.IDLE
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)
        self.cancel_button.connect("clicked()", self.cancel)
        self._show_state()

    def start(self, start_run) -> bool:
        """Start a run: ``start_run(on_progress=..., on_log=...)`` returns a TaskRun (bad input raises at once)."""
        if self.state is not PanelState.IDLE:
            return False
        self.progress_bar.value = 0
        self.log_pane.clear()
        self.run = start_run(on_progress=self._progress, on_log=self.log)
        self.state = PanelState.RUNNING
        self.status_label.text = "Running..."
        self._show_state()
        self._timer.start()
        return True

    def cancel(self) -> None:
        if self.state is PanelState.RUNNING:
            self.state = PanelState.CANCELLING
            self.status_label.text = "Cancelling..."
            self._show_state()
            self.run.cancel(CANCEL_GRACE_SECONDS)

    def stop(self) -> None:
        """Cancel any run and stop the timer (the module is closing or the scene is cleared)."""
        self.cancel()
        if self.run is not None and not self.run.finished:
            try:
                self.run.wait()  # the cancel ends it; nothing is imported
            except Exception:  # noqa: BLE001 -- CancelledError (or the run's own error): nothing to show now
                pass
        self._timer.stop()
        self.state = PanelState.IDLE

    def refresh(self) -> None:
        """Re-evaluate the buttons (call when the inputs change)."""
        self._show_state()

    def log(self, text: str) -> None:
        self.log_pane.appendPlainText(text)

    def _progress(self, stage: str, fraction: float, message: str) -> None:
        self.progress_bar.value = int(round(100 * fraction))
        if self.state is PanelState.RUNNING:
            self.status_label.text = f"{stage}: {message}" if message else stage

    def _poll(self) -> None:
        self.run.poll()
        if not self.run.finished:
            return
        self._timer.stop()
        self.state = PanelState.IDLE
        self.status_label.text = {"succeeded": "Done.", "cancelled": "Cancelled; nothing was changed."}.get(
            self.run.state.value, self.run.error)
        self._show_state()
        if self.on_finished:
            self.on_finished(self.run)

    def _show_state(self) -> None:
        idle = self.state is PanelState.IDLE
        self.apply_button.enabled = idle and bool(self.can_apply())
        self.cancel_button.enabled = self.state is PanelState.RUNNING
        self.cancel_button.visible = not idle
        self.progress_bar.visible = not idle or self.progress_bar.value > 0
