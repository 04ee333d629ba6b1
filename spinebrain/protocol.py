"""How a run reports progress and ends: the contract between the CLI and Slicer's runner.

With ``--progress-json`` the CLI prints one JSON object per line on stdout::

    {"event": "progress", "stage": "inference", "fraction": 0.42, "message": "slice 21 of 50"}
    {"event": "result", "path": "/out/labels.mrk.json", "kind": "markups", "region": "lumbar", "model": "spine-label-lumbar"}
    {"event": "log", "message": "Loaded model spine-ct 1.0"}
    {"event": "case", "name": "sub-01", "status": "failed", "message": "..."}   (batch runs)
    {"event": "error", "code": 2, "message": "The input image is 2D ..."}
    {"event": "done", "code": 0}

A ``result`` event may carry more fields about the file (e.g. the region and model that made the
points, which Slicer keeps on the node for later relabels). ``done`` is always the last event; ``error`` (with ``details``: a traceback or usage text) comes
just before it on failure. Any other stdout line is plain log text. Without the flag, progress
is a tqdm bar on stderr. Exit codes are in :mod:`spinebrain.errors`. A terminate signal (SIGTERM,
Ctrl+C, or CTRL_BREAK_EVENT on Windows) raises
:class:`~spinebrain.errors.CancelledError` inside the run, so ``finally`` blocks and
:func:`spinebrain.io.atomic_path` clean up before the process exits with the cancelled code.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import contextmanager

from .errors import CancelledError


class Progress:
    """Reports (stage, fraction, message) either as JSON lines or as a terminal progress bar."""

    def __init__(self, json_lines: bool = False, stream=None, quiet: bool = False):
        self.json_lines = json_lines
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self._bar = None
        self._stage = None
        self._last_line = None

    def emit(self, event: str, **fields) -> None:
        if self.json_lines:
            self.stream.write(json.dumps({"event": event, **fields}) + "\n")
            self.stream.flush()

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self.json_lines:
            self.emit("progress", stage=stage, fraction=round(fraction, 4), message=message)
        elif not self.quiet and not _is_terminal(sys.stderr):  # a log file: one line per new message, no bar
            line = f"[{stage}] {message}".rstrip()
            if line != self._last_line:  # every stage's messages, each once
                print(line, file=sys.stderr)
            self._last_line = line
        elif not self.quiet:
            self._update_bar(stage, fraction, message)

    def _update_bar(self, stage: str, fraction: float, message: str) -> None:
        from tqdm import tqdm

        if self._bar is None:  # one bar for the whole run; the stage and message go in its label
            self._bar = tqdm(total=1000, file=sys.stderr, leave=False, dynamic_ncols=True,
                             bar_format="{percentage:3.0f}%|{bar:20}| {desc}")
        self._stage = stage
        self._bar.n = int(fraction * 1000)
        self._bar.set_description_str(f"{stage}: {message}" if message else stage, refresh=True)

    def result(self, path, kind: str, **info) -> None:
        """Announce a written output file (after it is complete on disk); ``info``: e.g. the model that made it."""
        self.emit("result", path=str(path), kind=kind, **info)

    def log(self, message: str) -> None:
        if self.json_lines:
            self.emit("log", message=message)
        elif not self.quiet:
            self.close()
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class NullProgress(Progress):
    """A Progress that reports nothing: what core functions use when the caller gave none.

    Core code calls ``progress.update(...)`` unconditionally on the object :func:`as_progress`
    returns, instead of checking ``if progress:`` at every call.
    """

    def __init__(self):
        super().__init__(quiet=True)

    def emit(self, event: str, **fields) -> None:
        pass

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        pass

    def log(self, message: str) -> None:
        pass


class CallbackProgress(Progress):
    """A Progress that calls ``callback(stage, fraction, message)`` on each update (e.g. a Slicer widget)."""

    def __init__(self, callback):
        super().__init__(quiet=True)
        self.callback = callback

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.callback(stage, min(max(float(fraction), 0.0), 1.0), message)


def as_progress(progress=None) -> Progress:
    """None (a :class:`NullProgress`), a Progress (itself) or a callable ``(stage, fraction, message)``."""
    if progress is None:
        return NullProgress()
    if isinstance(progress, Progress):
        return progress
    if callable(progress):
        return CallbackProgress(progress)
    raise TypeError(f"progress must be None, a spinebrain.protocol.Progress or a callable, not {type(progress).__name__}")


#: SIGTERM (POSIX terminate), SIGINT (Ctrl+C) and, on Windows, SIGBREAK (the runner's CTRL_BREAK_EVENT).
CANCEL_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGBREAK") if hasattr(signal, name)
)


_OUTPUT_KINDS = ((".seg.nrrd", "segmentation"), (".mrk.json", "markups"), (".csv", "table"), (".tsv", "table"),
                 (".png", "picture"), (".json", "metadata"))


def output_kind(path) -> str:
    """The ``kind`` of a result event for an output file, from its name (anything else is a volume)."""
    name = str(path)
    return next((kind for suffix, kind in _OUTPUT_KINDS if name.endswith(suffix)), "volume")


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def cancel_on_terminate():
    """Turn a terminate signal into CancelledError for the duration of the block.

    Only the first signal raises: later ones are ignored so they cannot interrupt the clean-up
    (``finally`` blocks, :func:`spinebrain.io.atomic_path`) that the first one started. The
    runner's kill after its grace period is the backstop for a clean-up that hangs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return

    def _cancel(signum, frame):
        for sig in CANCEL_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise CancelledError(f"Cancelled by signal {signal.Signals(signum).name}.")

    previous = {sig: signal.signal(sig, _cancel) for sig in CANCEL_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
