"""Engine handlers MONAI does not have: progress events, the metrics log, stop requests, resume state.

Hand-written, each for a reason: MONAI's StatsHandler logs text, not the project's JSON-lines
protocol; MONAI's CheckpointSaver writes non-atomically (``atomic=False``), so a kill during the
write leaves a torn file that a resume would then fail on, and its key-metric tracking starts again
from nothing after a resume; a stop request must end every DDP process at the same iteration.
Loading a resume checkpoint is MONAI's :class:`~monai.handlers.CheckpointLoader` (``weights_only``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..protocol import Progress
from .distributed import DistributedContext, agree_any, mean_over_processes, unwrap

RESUME_FILE = "resume.pt"
BEST_FILE = "best.safetensors"
STOP_FILE = "STOP"
METRICS_CSV, METRICS_JSONL = "metrics.csv", "metrics.jsonl"


def _atomic(path: Path, write) -> None:
    """``write(temporary_path)`` then rename over ``path``: readers see the old file or the new, never half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class RunState:
    """What a resumed run needs beyond weights, optimiser and engine: the best score so far, the
    early-stop counter, and why the run ended. Saved in the resume checkpoint (plain numbers only)."""

    def __init__(self, early_stop=None):
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.early_stop = early_stop  # monai.handlers.EarlyStopHandler or None
        self.stopped = "completed"

    def state_dict(self) -> dict:
        state = {"best_metric": self.best_metric, "best_epoch": self.best_epoch}
        if self.early_stop is not None and self.early_stop._handler is not None:
            state["early_stop"] = dict(self.early_stop._handler.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.best_metric, self.best_epoch = state["best_metric"], int(state["best_epoch"])
        if "early_stop" in state and self.early_stop is not None and self.early_stop._handler is not None:
            self.early_stop._handler.load_state_dict(state["early_stop"])


class BestWeights:
    """On the evaluator: keep the network's weights (safetensors) whenever the key metric improves."""

    def __init__(self, network, trainer: Engine, run_state: RunState, metric_name: str, higher_is_better: bool,
                 folder: Path, context: DistributedContext):
        self.network, self.trainer, self.run_state, self.context = network, trainer, run_state, context
        self.metric_name, self.path = metric_name, Path(folder) / BEST_FILE
        self.sign = 1.0 if higher_is_better else -1.0

    def attach(self, evaluator: Engine) -> None:
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, evaluator: Engine) -> None:
        value = float(evaluator.state.metrics[self.metric_name])
        best = self.run_state.best_metric
        if not math.isfinite(value) or (best is not None and self.sign * value <= self.sign * best):
            return
        self.run_state.best_metric, self.run_state.best_epoch = value, self.trainer.state.epoch
        if self.context.is_main:
            from safetensors.torch import save_file

            tensors = {k: v.detach().cpu().contiguous().clone() for k, v in unwrap(self.network).state_dict().items()}
            _atomic(self.path, lambda temporary: save_file(tensors, str(temporary)))


class ResumeCheckpoint:
    """On the trainer, after validation: network, optimiser, scheduler, engine and run state, atomically."""

    def __init__(self, objects: dict, folder: Path, context: DistributedContext):
        self.objects, self.path, self.context = objects, Path(folder) / RESUME_FILE, context

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, trainer: Engine) -> None:
        if not self.context.is_main:
            return
        state = {name: unwrap(obj).state_dict() for name, obj in self.objects.items() if obj is not None}
        _atomic(self.path, lambda temporary: torch.save(state, temporary))


class StopRequest:
    """Ends training after the current iteration once the stop file exists (checked by rank 0, agreed by all).

    Unlike a cancel (terminate signal: nothing is written), a stop keeps what was learnt: the caller
    writes the package from the best weights so far.
    """

    def __init__(self, path: Path, run_state: RunState, context: DistributedContext):
        self.path, self.run_state, self.context = Path(path), run_state, context

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, trainer: Engine) -> None:
        if agree_any(self.context.is_main and self.path.exists(), self.context):
            self.run_state.stopped = "stop requested"
            trainer.terminate()


class EpochReporter:
    """Mean training loss per epoch, JSON-lines progress with time left, and the metrics log (CSV + JSON lines)."""

    def __init__(self, evaluator: Engine | None, metric_name: str, run_state: RunState, folder: Path,
                 progress: Progress, context: DistributedContext, optimizer=None):
        self.evaluator, self.metric_name, self.run_state = evaluator, metric_name, run_state
        self.folder, self.progress, self.context, self.optimizer = Path(folder), progress, context, optimizer
        self.losses: list[float] = []
        self.epoch_seconds: list[float] = []
        self._epoch_start = self._last_update = 0.0

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def epoch_started(self, trainer: Engine) -> None:
        self.losses, self._epoch_start = [], time.perf_counter()

    def iteration_completed(self, trainer: Engine) -> None:
        self.losses.append(trainer.state.output["loss"].item())
        now = time.perf_counter()
        if now - self._last_update >= 1.0:  # at most one event a second between epoch reports
            self._last_update = now
            state = trainer.state
            within = (state.iteration - 1) % state.epoch_length + 1
            fraction = (state.epoch - 1 + within / state.epoch_length) / state.max_epochs
            self.progress.update("train", fraction, f"epoch {state.epoch}/{state.max_epochs}, "
                                                    f"iteration {within}/{state.epoch_length}")

    def epoch_completed(self, trainer: Engine) -> None:
        state = trainer.state
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)
        loss = mean_over_processes(sum(self.losses) / max(len(self.losses), 1), self.context)
        metric = self._metric_of_this_epoch(state.epoch)
        left = (sum(self.epoch_seconds) / len(self.epoch_seconds)) * (state.max_epochs - state.epoch)
        row = {"epoch": state.epoch, "epochs": state.max_epochs, "loss": round(loss, 6),
               self.metric_name: None if metric is None else round(metric, 6),
               "best_" + self.metric_name: self.run_state.best_metric, "best_epoch": self.run_state.best_epoch,
               "learning_rate": self._learning_rate(), "seconds": round(self.epoch_seconds[-1], 3),
               "seconds_left": round(left, 1)}
        if not self.context.is_main:
            return
        self._write_log(row)
        shown = f", {self.metric_name} {metric:.4f}" if metric is not None else ""
        self.progress.update("train", state.epoch / state.max_epochs,
                             f"epoch {state.epoch}/{state.max_epochs}, loss {loss:.4f}{shown}, about {left:.0f} s left")
        self.progress.emit("epoch", **row)

    def _metric_of_this_epoch(self, epoch: int) -> float | None:
        if self.evaluator is None or getattr(self.evaluator.state, "validated_epoch", None) != epoch:
            return None
        value = self.evaluator.state.metrics.get(self.metric_name)
        return None if value is None else float(value)

    def _learning_rate(self) -> float | None:
        return None if self.optimizer is None else float(self.optimizer.param_groups[0]["lr"])

    def _write_log(self, row: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / METRICS_JSONL, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        path = self.folder / METRICS_CSV
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
