"""The training loop, on MONAI's SupervisedTrainer / SupervisedEvaluator and handlers.

:func:`run_training` wires: validation every ``val_interval`` epochs with any MONAI metric (or ignite
metric), the best weights kept whenever it improves, early stopping (``EarlyStopHandler``), the
learning-rate schedule (``LrScheduleHandler``), the metrics log and JSON-lines progress
(:mod:`.handlers`), a resume checkpoint after every epoch and its loading (``CheckpointLoader``,
``weights_only``), a stop file, AMP on CUDA only and DDP (:mod:`.distributed`). Every process of a
DDP run validates the whole validation set, so all of them see the same metric and stop together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from ignite.engine import Events
from ignite.metrics import Metric as IgniteMetric
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import default_prepare_batch
from monai.handlers import CheckpointLoader, EarlyStopHandler, IgniteMetricHandler, LrScheduleHandler, ValidationHandler
from monai.handlers.utils import from_engine
from monai.inferers import SimpleInferer

from ..errors import InputError
from ..protocol import Progress, as_progress
from .distributed import DistributedContext, unwrap
from .handlers import (BEST_FILE, METRICS_CSV, RESUME_FILE, STOP_FILE, BestWeights, EpochReporter, ResumeCheckpoint,
                       RunState, StopRequest)


@dataclass
class EngineSettings:
    """Where a run keeps its files and when it validates and stops.

    ``run_dir`` holds ``resume.pt``, ``best.safetensors``, ``metrics.csv`` / ``metrics.jsonl`` and is
    where a ``STOP`` file requests the end. With ``resume`` a run continues from ``resume.pt`` if it is there.
    """

    run_dir: Path
    max_epochs: int
    metric_name: str = "val_metric"
    higher_is_better: bool = True
    val_interval: int = 1
    early_stop_patience: int | None = None  # in validations; None: never stop early
    early_stop_min_delta: float = 0.0
    resume: bool = True
    stop_file: Path | None = None  # default run_dir / "STOP"
    amp: bool = True  # used on CUDA only
    schedule_per_epoch: bool = True  # False: the LR scheduler steps after every iteration

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        if self.max_epochs < 1 or self.val_interval < 1:
            raise InputError("Train for at least 1 epoch and validate at least every epoch (--epochs, --val-interval).")
        if self.early_stop_patience is not None and self.early_stop_patience < 1:
            raise InputError("The early-stopping patience must be at least 1 validation.")


@dataclass
class TrainingOutcome:
    best_metric: float | None
    best_epoch: int
    epochs_run: int
    resumed_from_epoch: int
    stopped: str  # "completed", "early stopping" or "stop requested"
    best_weights: Path
    metrics_log: Path


def as_ignite_metric(metric) -> IgniteMetric:
    """An ignite metric as is; a MONAI metric (DiceMetric, ...) wrapped to read ``pred`` and ``label``."""
    if isinstance(metric, IgniteMetric):
        return metric
    return IgniteMetricHandler(metric_fn=metric, output_transform=from_engine(["pred", "label"]))


def run_training(network: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_function, train_loader,
                 val_loader, metric, settings: EngineSettings, context: DistributedContext | None = None, *,
                 lr_scheduler=None, val_inferer=None, val_postprocessing=None, prepare_batch=default_prepare_batch,
                 progress: Progress | None = None, extra_handlers=()) -> TrainingOutcome:
    """Train ``network`` (already wrapped for DDP when distributed) and keep its best weights in ``run_dir``.

    Without ``val_loader`` nothing is validated and the final weights are kept. ``extra_handlers``:
    ``(ignite event, function(trainer))`` pairs, run after the epoch report (a task's own per-epoch scores).
    Batches are dicts with ``image`` and ``label`` (MONAI's default ``prepare_batch``). Seeds are the
    caller's (``monai.utils.set_determinism`` before building the network and the loaders).
    """
    context = context or DistributedContext()
    progress = as_progress(progress)
    amp = settings.amp and context.device.type == "cuda"
    run_dir = settings.run_dir
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    evaluator = None if val_loader is None else SupervisedEvaluator(
        device=context.device, val_data_loader=val_loader, network=network, inferer=val_inferer or SimpleInferer(),
        postprocessing=val_postprocessing, key_val_metric={settings.metric_name: as_ignite_metric(metric)},
        prepare_batch=prepare_batch, amp=amp,
    )
    trainer = SupervisedTrainer(
        device=context.device, max_epochs=settings.max_epochs, train_data_loader=train_loader, network=network,
        optimizer=optimizer, loss_function=loss_function, inferer=SimpleInferer(), prepare_batch=prepare_batch,
        amp=amp, decollate=False,  # no per-item postprocessing in training: keep the batch output whole
    )
    early_stop = _early_stop(settings, trainer, evaluator is not None)
    run_state = RunState(early_stop)
    resumed_from = _attach_resume(trainer, network, optimizer, lr_scheduler, run_state, settings, context)
    if evaluator is not None:
        _attach_validation(evaluator, trainer, network, run_state, early_stop, settings, context)
        ValidationHandler(validator=evaluator, interval=settings.val_interval, epoch_level=True).attach(trainer)
    # order matters (one event, handlers in attachment order): validate, report, step the schedule, checkpoint
    EpochReporter(evaluator, settings.metric_name, run_state, run_dir, progress, context, optimizer).attach(trainer)
    for event, handler in extra_handlers:
        trainer.add_event_handler(event, handler)
    if lr_scheduler is not None:
        LrScheduleHandler(lr_scheduler, print_lr=False, epoch_level=settings.schedule_per_epoch).attach(trainer)
    objects = {"network": network, "optimizer": optimizer, "trainer": trainer, "lr_scheduler": lr_scheduler,
               "run_state": run_state}
    ResumeCheckpoint(objects, run_dir, context).attach(trainer)
    StopRequest(settings.stop_file or run_dir / STOP_FILE, run_state, context).attach(trainer)
    trainer.run()
    if run_state.stopped == "completed" and trainer.state.epoch < settings.max_epochs:
        run_state.stopped = "early stopping"
    _keep_final_if_never_better(network, run_dir, context, progress, evaluator is not None)
    return TrainingOutcome(run_state.best_metric, run_state.best_epoch, trainer.state.epoch, resumed_from,
                           run_state.stopped, run_dir / BEST_FILE, run_dir / METRICS_CSV)


def _early_stop(settings: EngineSettings, trainer, validating: bool) -> EarlyStopHandler | None:
    if settings.early_stop_patience is None or not validating:
        return None
    sign = 1.0 if settings.higher_is_better else -1.0
    return EarlyStopHandler(patience=settings.early_stop_patience, trainer=trainer, epoch_level=True,
                            min_delta=settings.early_stop_min_delta,
                            score_function=lambda engine: sign * float(engine.state.metrics[settings.metric_name]))


def _attach_resume(trainer, network, optimizer, lr_scheduler, run_state, settings, context) -> int:
    """Load ``resume.pt`` (MONAI CheckpointLoader, weights_only) when resuming; the epoch it continues after."""
    path = settings.run_dir / RESUME_FILE
    if not (settings.resume and path.is_file()):
        return 0
    load = {"network": unwrap(network), "optimizer": optimizer, "trainer": trainer, "run_state": run_state}
    if lr_scheduler is not None:
        load["lr_scheduler"] = lr_scheduler
    CheckpointLoader(str(path), load, map_location=context.device).attach(trainer)
    return checkpoint_epoch(path)


def checkpoint_epoch(path: Path) -> int:
    """The last completed epoch saved in a resume checkpoint (ignite keeps the iteration count)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["trainer"]
    return int(state["epoch"]) if "epoch" in state else int(state["iteration"]) // int(state["epoch_length"])


def _attach_validation(evaluator, trainer, network, run_state, early_stop, settings, context) -> None:
    @evaluator.on(Events.EPOCH_COMPLETED)
    def _mark(engine):  # lets the epoch report tell a fresh metric from last validation's
        engine.state.validated_epoch = trainer.state.epoch

    BestWeights(network, trainer, run_state, settings.metric_name, settings.higher_is_better, settings.run_dir,
                context).attach(evaluator)
    if early_stop is not None:
        early_stop.attach(evaluator)


def _keep_final_if_never_better(network, run_dir: Path, context: DistributedContext, progress: Progress,
                                validated: bool) -> None:
    """No validation, or no finite score ever (e.g. no foreground in any validation case): keep the final weights."""
    if not context.is_main or (run_dir / BEST_FILE).is_file():
        return
    from safetensors.torch import save_file

    if validated:
        progress.log("No validation gave a finite score; the final weights are kept.")
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in unwrap(network).state_dict().items()},
              str(run_dir / BEST_FILE))


def load_best_weights(outcome: TrainingOutcome) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(outcome.best_weights))
