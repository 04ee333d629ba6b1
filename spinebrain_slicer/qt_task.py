"""Apply / Cancel for a module's task in Slicer: the widgets of :class:`~spinebrain_slicer.task_panel.TaskRunControls`.

Runs in Slicer only (Qt); checked statically in CI. The state machine (idle, running, cancelling),
the progress and the status line are in :mod:`spinebrain_slicer.task_panel` (tested headless); the
work is in :class:`~spinebrain_slicer.task_logic.TaskRun`. This file copies the controls' view onto
the widgets and drains the run's events with a QTimer on the GUI thread -- no ``processEvents``
loop, so Slicer stays responsive while a run goes on.
"""

from __future__ import annotations

import qt

from .task_panel import PanelState, TaskRunControls

POLL_INTERVAL_MS = 100

__all__ = ["PanelState", "TaskRunPanel"]


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
        self.controls = TaskRunControls(can_apply, on_log=self.log, on_finished=self._finished)
        self._status_shown = None  # the label is written only when the controls' status changes: the
        # module's own messages (after a run, after an edit) stay until the next run says something new
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)
        self.cancel_button.connect("clicked()", self.cancel)
        self._show_state()

    @property
    def run(self):
        return self.controls.run

    @property
    def state(self) -> PanelState:
        return self.controls.state

    def start(self, start_run) -> bool:
        """Start a run: ``start_run(on_progress=..., on_log=...)`` returns a TaskRun (bad input raises at once)."""
        if self.controls.state is not PanelState.IDLE:
            return False
        self.log_pane.clear()
        self.controls.start(start_run)
        self._show_state()
        self._timer.start()
        return True

    def cancel(self) -> None:
        self.controls.cancel()
        self._show_state()

    def stop(self) -> None:
        """Cancel any run and stop the timer (the module is closing or the scene is cleared)."""
        self.controls.stop()
        self._timer.stop()
        self._show_state()

    def refresh(self) -> None:
        """Re-evaluate the buttons (call when the inputs change)."""
        self._show_state()

    def log(self, text: str) -> None:
        self.log_pane.appendPlainText(text)

    def _poll(self) -> None:
        if not self.controls.poll():  # a run that ends calls _finished instead
            self._show_state()
        if self.controls.state is PanelState.IDLE:
            self._timer.stop()

    def _finished(self, run) -> None:
        self._timer.stop()
        self._show_state()
        if self.on_finished:
            self.on_finished(run)

    def _show_state(self) -> None:
        view = self.controls.view()
        self.apply_button.enabled = view.apply_enabled
        self.cancel_button.enabled = view.cancel_enabled
        self.cancel_button.visible = view.cancel_visible
        self.progress_bar.value = view.progress_percent
        self.progress_bar.visible = view.progress_visible
        if view.status != self._status_shown:
            self.status_label.text = self._status_shown = view.status
