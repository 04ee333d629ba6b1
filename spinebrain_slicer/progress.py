"""Progress of in-process work for a Slicer widget: the core's Progress, forwarded to a callback."""

from __future__ import annotations

from spinebrain.protocol import Progress


class CallbackProgress(Progress):
    """A :class:`spinebrain.protocol.Progress` that calls ``callback(stage, fraction, message)`` on each update."""

    def __init__(self, callback):
        super().__init__(quiet=True)
        self.callback = callback

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.callback(stage, min(max(float(fraction), 0.0), 1.0), message)


def as_progress(progress) -> Progress | None:
    """None, a Progress, or a callable ``(stage, fraction, message)`` -> a Progress (or None)."""
    if progress is None or isinstance(progress, Progress):
        return progress
    return CallbackProgress(progress)
