"""What a SpineLabel training run from the Training module adds to :mod:`.training`: one epoch count
over both detectors, the stop file, the best epoch on held-out real scans, the start of a fine-tune.

* :class:`EpochTracker` numbers the epochs of the vertebra and then the anchor detector as one run
  (1 ... vertebra + anchor epochs), so the Slicer curves and "epoch x/N" read as for any other task;
  it emits one ``epoch`` event per epoch (loss, ``val_loss``, accuracy, best so far, seconds left),
  appends it to ``<run_dir>/metrics.jsonl``, and ends the current detector's training when
  ``<run_dir>/STOP`` exists.
* The detectors train through :func:`.detector.train_detector`, which reports each finished epoch
  to a callback but offers no way to end early; the tracker therefore raises :class:`StopRequested`
  from that callback (after the epoch's scores are kept) and :func:`train_until_stopped` catches
  it. A detector not yet trained when the stop comes still trains one epoch: a labelling model
  needs both detectors.
* :class:`BestSoFar` keeps a copy of the weights whenever the validation loss on the held-out real
  scans improves; those weights are the detector's result. Without held-out real scans the final
  weights are kept, as before.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np

from ..protocol import as_progress

STOP_FILE = "STOP"  # the shared engine's name (spinebrain.training.handlers.STOP_FILE)
METRICS_JSONL = "metrics.jsonl"


class StopRequested(Exception):
    """Raised from a detector's epoch callback when the stop file exists (caught by :func:`train_until_stopped`)."""


class EpochTracker:
    """Global epoch numbering, the per-epoch event and log, and the stop file of one training run."""

    def __init__(self, total_epochs: int, run_dir: str | Path | None, progress=None):
        self.total, self.done = int(total_epochs), 0
        self.run_dir = Path(run_dir) if run_dir else None
        self.progress = as_progress(progress)
        self.started = time.perf_counter()
        self.stopped = False
        self.best = {}  # detector name -> (best validation loss, global epoch)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def stop_requested(self) -> bool:
        return self.run_dir is not None and (self.run_dir / STOP_FILE).exists()

    def epoch_done(self, detector: str, detector_epoch: int, detector_epochs: int, loss: float, val_loss: float,
                   val_accuracy: float, improved: bool) -> None:
        """Report one finished epoch; raises StopRequested when the stop file exists."""
        self.done += 1
        if improved:
            self.best[detector] = (val_loss, self.done)
        seconds = time.perf_counter() - self.started
        left = seconds / self.done * max(self.total - self.done, 0)
        best_loss, best_epoch = self.best.get(detector, (None, 0))
        row = {"epoch": self.done, "epochs": self.total, "detector": detector, "detector_epoch": detector_epoch,
               "detector_epochs": detector_epochs, "loss": round(loss, 6), "val_loss": _number(val_loss),
               "validation_accuracy": _number(val_accuracy), "best_val_loss": _number(best_loss),
               "best_epoch": best_epoch, "seconds": round(seconds, 1), "seconds_left": round(left, 1)}
        self.progress.update(f"train {detector}", detector_epoch / detector_epochs,
                             f"epoch {detector_epoch}/{detector_epochs} loss {loss:.4f} validation loss "
                             f"{val_loss:.4f} accuracy {val_accuracy:.3f}")
        self.progress.emit("epoch", **row)
        if self.run_dir is not None:
            with open(self.run_dir / METRICS_JSONL, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
        if self.stop_requested:
            self.stopped = True
            raise StopRequested(detector)


class BestSoFar:
    """The weights of the epoch with the lowest validation loss (only when ``enabled``)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.loss, self.state = math.inf, None

    def offer(self, model, loss: float) -> bool:
        """Keep ``model``'s weights when ``loss`` is the lowest so far; whether it was."""
        if not self.enabled or not math.isfinite(loss) or loss >= self.loss:
            return False
        self.loss, self.state = loss, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        return True

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def train_until_stopped(train, *args, **kwargs):
    """``train(*args, **kwargs)`` (a :func:`.detector.train_detector` call); a stop request ends it early, quietly."""
    try:
        train(*args, **kwargs)
    except StopRequested:
        pass


def start_pair(model: str, region: str):
    """The :class:`~.pipeline.DetectorPair` and card of the labelling model to fine-tune, checked first."""
    from ..errors import InputError, ModelError
    from ..models.registry import load_model_package
    from .detector import PATCH_SIZE
    from .fine_tune import check_start_card
    from .pipeline import DetectorPair
    from .slices import MODEL_PIXEL_MM

    try:
        card, weights = load_model_package(model, task="spine-label")
    except ModelError as error:
        raise InputError(f"The model to fine-tune cannot be used: {error}") from None
    check_start_card(card, region, MODEL_PIXEL_MM[region], PATCH_SIZE[region], PATCH_SIZE[f"{region}-anchor"])
    pair = DetectorPair(**card.network["kwargs"])
    pair.load_state_dict(weights, strict=True)
    return pair, card


def validation_patches(cases, region: str, options, case_patches) -> tuple:
    """(vertebra patches, labels, anchor patches, labels) of held-out real scans, without augmentation."""
    from dataclasses import replace

    plain = replace(options, augment=False)
    rng = np.random.default_rng(options.seed + 7)
    parts = [case_patches(case, region, rng, plain) for case in cases]
    return tuple(np.concatenate([part[k] for part in parts]) for k in range(4))


def _number(value):
    return None if value is None or not math.isfinite(value) else round(float(value), 6)
