"""Wall-clock handlers of the 2D MR training run, for a run that has seconds, not epochs, to spend.

On a GPU the number of samples a run gets through in its time is not known beforehand (it
depends on how fast the CPU workers augment), so the run is shaped by the clock instead:

* :class:`EpochClock` ends an epoch after ``epoch_seconds`` (ignite's ``terminate_epoch``): the
  validation, the best weights and the resume checkpoint then follow at that pace, so a kill
  loses at most that much; at the run's stop time it ends the epoch too and then the run (the
  resume checkpoint is still written), so the last stretch of training is validated and saved.
* :class:`TimeCosineLR` sets the learning rate from the elapsed fraction of the run's time: a
  short linear warm-up, then a cosine down to 3 % at the stop time, whatever the throughput.
* :class:`Export` copies the small results (best weights, history, metrics log) to a second
  folder after every epoch, so the run folder with its large resume checkpoint can stay out of
  what is sent back, and a kill still leaves the last best weights there.
* :class:`Throughput` prints progress lines (epoch, iteration, loss, samples/s, learning rate)
  every ``every_seconds`` and the totals at the end (samples, samples/s, peak GPU memory).

The ignite engine and the shared handlers are unchanged; these attach as ``extra_handlers``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
from ignite.engine import Events

from ..training.clock import clock_cosine
from ..training.handlers import STOP_FILE
from .training2d import log

#: Content of a stop file written by the wall-clock limit (removed again when the run is resumed;
#: a stop file a person wrote is left alone).
CLOCK_STOP = "stopped by the wall-clock limit\n"


class EpochClock:
    """End epochs by time; at ``stop_at`` end the epoch and write the stop file after its validation."""

    def __init__(self, out_dir: Path, stop_at: float | None, epoch_seconds: float | None):
        self.stop_file = Path(out_dir) / STOP_FILE
        self.stop_at, self.epoch_seconds = stop_at, epoch_seconds
        self.epoch_started = time.time()
        self.stopping = False

    def handlers(self) -> list:
        return [(Events.EPOCH_STARTED, self._epoch_started), (Events.ITERATION_COMPLETED, self._iteration),
                (Events.EPOCH_COMPLETED, self._epoch_completed)]

    def _epoch_started(self, _engine) -> None:
        self.epoch_started = time.time()

    def _iteration(self, engine) -> None:
        now = time.time()
        if self.stop_at is not None and now > self.stop_at and not self.stopping:
            log("time limit reached: validating and saving this epoch, then stopping")
            self.stopping = True
            engine.terminate_epoch()
        elif self.epoch_seconds is not None and now - self.epoch_started > self.epoch_seconds:
            engine.terminate_epoch()

    def _epoch_completed(self, engine) -> None:
        # after this epoch's validation, best weights and report (attached before); the stop file
        # keeps a resumed run from starting again past its time, and ending here rather than at the
        # engine's next stop check spares waiting for one more batch
        if self.stopping:
            if not self.stop_file.exists():
                self.stop_file.write_text(CLOCK_STOP, encoding="utf-8")
            engine.terminate()


def clear_clock_stop(out_dir: Path) -> None:
    stop_file = Path(out_dir) / STOP_FILE
    if stop_file.is_file() and stop_file.read_text(encoding="utf-8") == CLOCK_STOP:
        stop_file.unlink()


class TimeCosineLR:
    """Learning rate by elapsed time: linear warm-up over ``warmup`` of the run, cosine to ``floor`` x peak."""

    def __init__(self, optimizer, peak: float, started: float, stop_at: float, warmup: float = 0.05,
                 floor: float = 0.03):
        self.optimizer, self.peak, self.started, self.stop_at = optimizer, peak, started, stop_at
        self.warmup, self.floor = warmup, floor

    def handlers(self) -> list:
        return [(Events.ITERATION_STARTED, self._set)]

    def rate(self, now: float) -> float:
        fraction = (now - self.started) / max(self.stop_at - self.started, 1e-6)
        return self.peak * clock_cosine(fraction, self.warmup, warmup_from=0.1, floor=self.floor)

    def _set(self, _engine) -> None:
        rate = self.rate(time.time())
        for group in self.optimizer.param_groups:
            group["lr"] = rate


class Throughput:
    """Progress lines every ``every_seconds`` and the run's totals (:meth:`summary`)."""

    def __init__(self, batch_size: int, optimizer, every_seconds: float = 10.0):
        self.batch_size, self.optimizer, self.every = batch_size, optimizer, every_seconds
        self.samples = 0
        self.started = self.last = time.time()

    def handlers(self) -> list:
        return [(Events.ITERATION_COMPLETED, self._iteration), (Events.EPOCH_COMPLETED, self._epoch)]

    def _iteration(self, engine) -> None:
        self.samples += self.batch_size
        now = time.time()
        if now - self.last >= self.every:
            self.last = now
            loss = engine.state.output["loss"].item()
            log(f"epoch {engine.state.epoch} iteration {engine.state.iteration} loss {loss:.4f} "
                f"{self.samples / (now - self.started):.0f} samples/s lr {self.optimizer.param_groups[0]['lr']:.2e}")

    def _epoch(self, engine) -> None:
        log(f"epoch {engine.state.epoch} done: {self.samples} samples, {self.rate():.0f} samples/s")

    def rate(self) -> float:
        return self.samples / max(time.time() - self.started, 1e-6)

    def summary(self, device: torch.device) -> dict:
        figures = {"samples": self.samples, "train_seconds": round(time.time() - self.started, 1),
                   "samples_per_second": round(self.rate(), 1)}
        if device.type == "cuda":
            figures["max_memory_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        log("totals: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        return figures


#: What the post-run step needs (:mod:`.package2d`): about 4.5 MB for the bundled network size.
EXPORTED = ("best.safetensors", "history.json", "metrics.jsonl", "metrics.csv")


class Export:
    """Copy :data:`EXPORTED` from the run folder to ``folder`` after each epoch (and at the end)."""

    def __init__(self, run_dir: Path, folder: Path):
        self.run_dir, self.folder = Path(run_dir), Path(folder)

    def handlers(self) -> list:
        return [(Events.EPOCH_COMPLETED, lambda _engine: self.copy())]

    def copy(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in EXPORTED:
            source = self.run_dir / name
            if source.is_file():
                temporary = self.folder / f".{name}.tmp"
                shutil.copyfile(source, temporary)
                temporary.replace(self.folder / name)  # a kill mid-copy leaves the previous file whole
