"""The 2D MR training run on the shared engine (:func:`spinebrain.training.run_training`).

This module supplies only what is particular to the slice-wise task: the cached slice datasets
(:mod:`.training2d`), a loss and a validation Dice that skip the voxels outside the labelled span of
each scan (see :class:`SpanMaskedDiceCE`), an optional start from earlier weights, and a wall-clock
stop. Resume, best weights (``best.safetensors``), early stopping, the metrics log, the stop file
and progress are the shared engine's. ``history.json`` (options, network, per-epoch figures) is
written beside them for the model card (:mod:`.package2d`).

On a GPU (the run is shaped by seconds, see :mod:`.runtime2d`; data from :mod:`.cache2d`; package
and figures afterwards with :mod:`.postrun2d`)::

    python -m spinebrain.spinesegment.engine2d --cache .gpu/dataB/seg2d --out RUN/scratch/run --export RUN \
        --device cuda --workers 4 --batch-size 32 --seconds 450 --reserve 30 --epoch-seconds 40 \
        --lr-schedule time --lr 6e-4 --crop 128 --init Resources/Models/spine-segment-mr-2d \
        --validation-step 2 --epochs 1000 --samples-per-epoch 1000000 --patience 1000
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch
from monai import transforms as mt
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.utils import set_determinism

from ..models.network import network_class
from ..device import select_device
from ..errors import InputError
from ..training import DistributedContext, EngineSettings, run_training, wrap_network
from ..training.clock import process_start_time
from ..training.handlers import METRICS_JSONL
from .networks import network_spec
from .runtime2d import EpochClock, Export, Throughput, TimeCosineLR, clear_clock_stop
from .training2d import (RandomSliceDataset, TrainOptions, augmentations, load_case, log, split_cases,
                         validation_items)

_STARTED = process_start_time()  # --seconds counts the interpreter's start and the imports too
VAL_METRIC = "val_dice"
#: Training patients kept out of the gradient for early stopping and for choosing the inference
#: settings (one or two per MR set; never a 'validation' case of splits.json, which stays untouched
#: for the reported figures).
EARLY_STOP_CASES = ("A10_vb3_lumbar_mr/vb3_27", "A10_vb3_lumbar_mr/vb3_29", "A11_vb2_t2_lumbar/vb2_20",
                    "A12_vb1_thoracolumbar_pathology/vb1_16")
#: Logit given to ignored voxels: sigmoid ~ 1e-13, so they add nothing to the Dice or the BCE.
IGNORED_LOGIT = -30.0


class SpanMaskedDiceCE(torch.nn.Module):
    """MONAI Dice + BCE on channel 0 of the target, skipping voxels where channel 1 (ignore) is set.

    Why: A10 labels L1-L5 only, A11 T11-L5, A12 T10-S1, yet every scan shows more vertebrae. A body
    outside a scan's labelled span is unlabelled, not background; without the mask the network is
    taught that S1 (or T12) is a body in one set and background in another. Ignored voxels get a very
    negative logit and a zero target, which removes them from both terms (and from the gradient).
    """

    def __init__(self):
        super().__init__()
        self.loss = DiceCELoss(sigmoid=True, batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ignore = target[:, 1:2] > 0.5
        return self.loss(logits.masked_fill(ignore, IGNORED_LOGIT), target[:, :1].masked_fill(ignore, 0.0))


def _mask_validation_item(item: dict) -> dict:
    """Validation post-processing: thresholded prediction and body label, both zero where ignored."""
    keep = 1.0 - item["label"][1:2]
    item["pred"] = (torch.sigmoid(item["pred"]) > 0.5).float() * keep
    item["label"] = item["label"][:1] * keep
    return item


def train(options: TrainOptions) -> Path:
    """Run (or resume) a training; returns the run folder (``best.safetensors``, ``history.json``)."""
    started = time.time()
    torch.set_num_threads(options.threads)
    # Slices without a body are drawn on purpose (negatives); MONAI warns about each of them.
    warnings.filterwarnings("ignore", message="Num foregrounds 0")
    set_determinism(options.seed)
    context = DistributedContext(device=select_device(options.device))
    if context.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed training crop: let cuDNN pick its fastest kernels
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_clock_stop(out_dir)
    train_cases, val_cases = _cached_cases(options)
    log(f"{len(train_cases)} training cases, {len(val_cases)} for early stopping, device {context.device}, "
        f"{options.workers} workers, batch {options.batch_size}")

    spec = network_spec(options.architecture, 2 * options.context + 1)
    network = network_class(spec["architecture"])(**spec["kwargs"])
    if options.init_weights:
        _load_initial_weights(network, options.init_weights)
    network = wrap_network(network, context)
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    handlers, scheduler = _schedule(options, optimizer, started)
    clock = EpochClock(out_dir, options.stop_at, options.epoch_seconds)
    throughput = Throughput(options.batch_size, optimizer)
    handlers += clock.handlers() + throughput.handlers()
    export = Export(out_dir, Path(options.export_dir)) if options.export_dir else None
    if export is not None:
        handlers += export.handlers()
    train_loader = _train_loader(train_cases, options, context)
    val_pad = mt.DivisiblePadd(("image", "label"), k=16)
    val_loader = DataLoader(Dataset(validation_items(val_cases, options), val_pad), batch_size=1)
    settings = EngineSettings(out_dir, options.max_epochs, VAL_METRIC, early_stop_patience=options.patience)
    _write_history(out_dir, options, spec, None)
    outcome = run_training(network, optimizer, SpanMaskedDiceCE(), train_loader, val_loader,
                           DiceMetric(include_background=True, reduction="mean"), settings, context,
                           lr_scheduler=scheduler, val_postprocessing=_mask_validation_item, extra_handlers=handlers)
    if clock.stopping:
        outcome.stopped = "stopped by the wall-clock limit"
    _write_history(out_dir, options, spec, outcome, throughput.summary(context.device))
    if export is not None:
        export.copy()
    log(f"{outcome.stopped} after epoch {outcome.epochs_run}; best {VAL_METRIC} {outcome.best_metric} "
        f"at epoch {outcome.best_epoch}; {time.time() - started:.0f} s in all")
    return out_dir


def _schedule(options: TrainOptions, optimizer, started: float):
    """(extra handlers, epoch scheduler): cosine over the epochs, or over the time until ``stop_at``."""
    if options.lr_schedule == "time":
        if options.stop_at is None:
            raise InputError("A time-based learning-rate schedule needs a time limit (--seconds, --minutes or --until).")
        return TimeCosineLR(optimizer, options.learning_rate, started, options.stop_at).handlers(), None
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, options.max_epochs,
                                                           eta_min=options.learning_rate * 0.03)
    return [], scheduler


def _train_loader(cases, options: TrainOptions, context: DistributedContext) -> DataLoader:
    """Random augmented slices; with workers, each one single-threaded and kept across epochs."""
    dataset = RandomSliceDataset(cases, options, augmentations(options))
    if options.workers <= 0:
        return DataLoader(dataset, batch_size=options.batch_size, num_workers=0)
    return DataLoader(dataset, batch_size=options.batch_size, num_workers=options.workers,
                      worker_init_fn=_init_worker, persistent_workers=True, prefetch_factor=4,
                      pin_memory=context.device.type == "cuda")


def _init_worker(worker_id: int) -> None:
    """MONAI's per-worker transform seeds, and one torch thread per worker (the workers share the CPUs)."""
    from monai.data.utils import worker_init_fn

    torch.set_num_threads(1)
    worker_init_fn(worker_id)


def _cached_cases(options: TrainOptions):
    held = set(options.validation_cases)
    if options.cache_dir:
        from .cache2d import cached_names, read_cache

        names = cached_names(options.cache_dir)
        fit_names = [n for n in names if n not in held][: options.limit_cases]
        stop_names = [n for n in names if n in held][: options.limit_cases]
        started = time.time()
        cases = read_cache(options.cache_dir, options, fit_names + stop_names)
        log(f"read {len(cases)} cached cases from {options.cache_dir} in {time.time() - started:.1f} s")
        return cases[: len(fit_names)], cases[len(fit_names):]
    cases = split_cases(options.data_root, "train")
    fit = [c for c in cases if c[0] not in held][: options.limit_cases]
    stop = [c for c in cases if c[0] in held][: options.limit_cases]
    started = time.time()
    loaded_fit = [load_case(name, folder, options) for name, folder in fit]
    loaded_stop = [load_case(name, folder, options) for name, folder in stop]
    log(f"cached {len(loaded_fit) + len(loaded_stop)} cases in {time.time() - started:.0f} s")
    return loaded_fit, loaded_stop


def _load_initial_weights(network: torch.nn.Module, path: str) -> None:
    """Start from earlier weights (a model package folder or a safetensors file) of the same network."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    network.load_state_dict(load_file(str(path)), strict=True)
    log(f"starting from the weights in {path}")


def _write_history(out_dir: Path, options: TrainOptions, spec: dict, outcome, throughput: dict | None = None) -> None:
    """Options, network and per-epoch figures of the run (read by :func:`.package2d.card_for_run`)."""
    path = out_dir / "history.json"
    history = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    history.update({"network": spec, "options": {k: v for k, v in vars(options).items() if k != "stop_at"}})
    log_path = out_dir / METRICS_JSONL
    if log_path.exists():
        history["epochs"] = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line]
    if outcome is not None:
        history.update({"best_val_dice": outcome.best_metric, "best_epoch": outcome.best_epoch,
                        "stopped": outcome.stopped})
    if throughput is not None:
        history["throughput"] = throughput
    path.write_text(json.dumps(history, indent=1), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """``python -m spinebrain.spinesegment.engine2d --data DATA --out DIR [...]``: train on splits.json."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", help="folder with splits.json and the A10-A12 MR sets")
    parser.add_argument("--cache", help="read the training cases from this cache2d folder instead of --data")
    parser.add_argument("--out", required=True, help="run folder (resume checkpoint, metrics, best weights)")
    parser.add_argument("--architecture", default="unet")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--samples-per-epoch", type=int, default=800)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--validation-step", type=int, default=2, help="validate every n-th body slice")
    parser.add_argument("--patience", type=int, default=12, help="early stopping, in epochs")
    parser.add_argument("--init", help="start from these weights (model package folder or .safetensors)")
    parser.add_argument("--no-span-mask", action="store_true", help="count every voxel in the loss")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    parser.add_argument("--seconds", type=float, default=None,
                        help="whole run (data loading, final validation and save included) within this many seconds")
    parser.add_argument("--reserve", type=float, default=25.0,
                        help="with --seconds: seconds kept for the last validation, saving and exit")
    parser.add_argument("--export", help="also keep the best weights, history and metrics here (copied every epoch)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epoch-seconds", type=float, default=None,
                        help="end each epoch (validation, best weights, resume checkpoint) after this many seconds")
    parser.add_argument("--lr-schedule", choices=("epochs", "time"), default="epochs",
                        help="cosine over the epochs, or warm-up + cosine over the run's time (needs a time limit)")
    parser.add_argument("--until", help="stop at this UTC time of day, HH:MM")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-cases", type=int, default=None)
    parser.add_argument("--validation-cases", nargs="*", default=list(EARLY_STOP_CASES))
    args = parser.parse_args(argv)
    if not (args.data or args.cache):
        parser.error("give --data (NIfTI folder with splits.json) or --cache (a cache2d folder)")
    stop_at = stop_time(args.minutes, args.until)
    if args.seconds is not None:
        stop_at = min(filter(None, [stop_at, _STARTED + args.seconds - args.reserve]))
    train(TrainOptions(data_root=args.data or "", out_dir=args.out, cache_dir=args.cache, device=args.device,
                       workers=args.workers, batch_size=args.batch_size, export_dir=args.export, epoch_seconds=args.epoch_seconds,
                       lr_schedule=args.lr_schedule, architecture=args.architecture,
                       max_epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, crop=args.crop,
                       learning_rate=args.lr, patience=args.patience, limit_cases=args.limit_cases,
                       init_weights=args.init, validation_step=args.validation_step, span_mask=not args.no_span_mask, threads=args.threads,
                       validation_cases=list(args.validation_cases), stop_at=stop_at))


def stop_time(minutes: float | None = None, until: str | None = None) -> float | None:
    """Unix time to stop at: after ``minutes``, or at the next ``HH:MM`` UTC (whichever comes first)."""
    from ..training.clock import next_utc

    candidates = [] if minutes is None else [time.time() + 60 * minutes]
    if until:
        candidates.append(next_utc(until))
    return min(candidates) if candidates else None


if __name__ == "__main__":
    main()
