"""The MONAI engines of the 2D MR training, and the run that drives them (resumable, time-limited).

:func:`build_engines` is the one place the trainer, evaluator and handlers are put together (the
shared training engine may take it over later). :func:`train` loads and caches the cases, resumes
from the last epoch checkpoint in ``out_dir`` when there is one, and stops at early stopping,
``max_epochs`` or the wall-clock ``stop_at``, keeping the best validation checkpoint.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch
from monai import transforms as mt
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import (CheckpointLoader, CheckpointSaver, EarlyStopHandler, LrScheduleHandler, MeanDice,
                            from_engine, stopping_fn_from_metric)
from ignite.engine import Events
from monai.losses import DiceCELoss

from ..models.network import network_class
from .networks import network_spec
from .training2d import (RandomSliceDataset, TrainOptions, augmentations, load_case, log, split_cases,
                         validation_items)

VAL_METRIC = "val_dice"
#: Training patients kept out of the gradient for early stopping (one or two per MR set; never a
#: 'validation' case of splits.json, which stays untouched for the reported figures).
EARLY_STOP_CASES = ("A10_vb3_lumbar_mr/vb3_27", "A10_vb3_lumbar_mr/vb3_29", "A11_vb2_t2_lumbar/vb2_20",
                    "A12_vb1_thoracolumbar_pathology/vb1_16")


def build_engines(network, optimizer, train_loader, val_loader, options: TrainOptions, out_dir: Path, device):
    """SupervisedTrainer + SupervisedEvaluator with checkpoint, best-model, LR and early-stop handlers."""
    post = mt.Compose([mt.Activationsd("pred", sigmoid=True), mt.AsDiscreted("pred", threshold=0.5)])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.3, patience=4)
    evaluator = SupervisedEvaluator(
        device=device, val_data_loader=val_loader, network=network, postprocessing=post,
        key_val_metric={VAL_METRIC: MeanDice(include_background=True, output_transform=from_engine(["pred", "label"]))},
    )
    trainer = SupervisedTrainer(
        device=device, max_epochs=options.max_epochs, train_data_loader=train_loader, network=network,
        optimizer=optimizer, loss_function=DiceCELoss(sigmoid=True, batch=True),
    )
    state = {"network": network, "optimizer": optimizer, "trainer": trainer, "scheduler": scheduler}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(engine.state.epoch))
    CheckpointSaver(str(out_dir), state, save_interval=1, n_saved=1, epoch_level=True).attach(trainer)
    LrScheduleHandler(scheduler, step_transform=lambda engine: engine.state.metrics[VAL_METRIC]).attach(evaluator)
    EarlyStopHandler(options.patience, stopping_fn_from_metric(VAL_METRIC), trainer=trainer).attach(evaluator)
    return trainer, evaluator, state


def train(options: TrainOptions) -> Path:
    """Run (or resume) a training; returns the folder with ``best_network.pt`` and ``history.json``."""
    torch.set_num_threads(options.threads)
    # Slices without a body are drawn on purpose (negatives); MONAI warns about each of them.
    warnings.filterwarnings("ignore", message="Num foregrounds 0")
    torch.manual_seed(options.seed)
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_cases, val_cases = _cached_cases(options)
    log(f"{len(train_cases)} training cases, {len(val_cases)} for early stopping")

    spec = network_spec(options.architecture, 2 * options.context + 1)
    network = network_class(spec["architecture"])(**spec["kwargs"])
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    train_loader = DataLoader(RandomSliceDataset(train_cases, options, augmentations(options)),
                              batch_size=options.batch_size, num_workers=0)
    val_pad = mt.DivisiblePadd(("image", "label"), k=16)
    val_loader = DataLoader(Dataset(validation_items(val_cases, options.context), val_pad), batch_size=1)
    device = torch.device("cpu")
    trainer, evaluator, state = build_engines(network, optimizer, train_loader, val_loader, options, out_dir, device)
    _resume(out_dir, state, trainer)
    _attach_logging(trainer, evaluator, out_dir, options, spec)
    trainer.run()
    return out_dir


def _cached_cases(options: TrainOptions):
    cases = split_cases(options.data_root, "train")
    held = set(options.validation_cases)
    fit = [c for c in cases if c[0] not in held][: options.limit_cases]
    stop = [c for c in cases if c[0] in held][: options.limit_cases]
    started = time.time()
    loaded_fit = [load_case(name, folder, options) for name, folder in fit]
    loaded_stop = [load_case(name, folder, options) for name, folder in stop]
    log(f"cached {len(loaded_fit) + len(loaded_stop)} cases in {time.time() - started:.0f} s")
    return loaded_fit, loaded_stop


def _resume(out_dir: Path, state: dict, trainer) -> None:
    checkpoints = sorted(out_dir.glob("checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.split("=")[1]))
    if checkpoints:
        log(f"resuming from {checkpoints[-1].name}")
        CheckpointLoader(str(checkpoints[-1]), state, map_location="cpu").attach(trainer)


def _attach_logging(trainer, evaluator, out_dir: Path, options: TrainOptions, spec: dict) -> None:
    history_path = out_dir / "history.json"
    history = json.loads(history_path.read_text(encoding="utf-8")) if history_path.exists() else {"epochs": []}
    history.update({"network": spec, "options": {k: v for k, v in vars(options).items() if k != "stop_at"}})

    def epoch_done(engine):
        # The best weights are kept here rather than by a key-metric CheckpointSaver: that saver
        # forgets its best score when a run is resumed, and would overwrite the best with a worse one.
        dice = evaluator.state.metrics.get(VAL_METRIC)
        if dice is not None and dice > history.get("best_val_dice", -1.0):
            torch.save(engine.network.state_dict(), out_dir / "best_network.pt")
            history["best_val_dice"], history["best_epoch"] = float(dice), engine.state.epoch
        lr = engine.optimizer.param_groups[0]["lr"] if hasattr(engine, "optimizer") else None
        entry = {"epoch": engine.state.epoch, "loss": float(engine.state.output[0]["loss"]) if isinstance(
            engine.state.output, list) else None, "val_dice": dice, "lr": lr, "time": time.time()}
        history["epochs"].append(entry)
        history_path.write_text(json.dumps(history, indent=1), encoding="utf-8")
        log(f"epoch {entry['epoch']}: loss {entry['loss']}, val Dice {dice:.4f} (best {history['best_val_dice']:.4f} "
            f"at {history['best_epoch']}), lr {lr:.2g}")

    def time_limit(engine):
        if options.stop_at is not None and time.time() > options.stop_at:
            log("time limit reached: stopping")
            engine.terminate()

    trainer.add_event_handler(Events.EPOCH_COMPLETED, epoch_done)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, time_limit)


def main(argv: list[str] | None = None) -> None:
    """``python -m spinebrain.spinesegment.engine2d --data DATA --out DIR [...]``: train on splits.json."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", required=True, help="folder with splits.json and the A10-A12 MR sets")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, history, best weights)")
    parser.add_argument("--architecture", default="unet")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--samples-per-epoch", type=int, default=800)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    parser.add_argument("--limit-cases", type=int, default=None)
    parser.add_argument("--validation-cases", nargs="*", default=list(EARLY_STOP_CASES))
    args = parser.parse_args(argv)
    train(TrainOptions(data_root=args.data, out_dir=args.out, architecture=args.architecture,
                       max_epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, crop=args.crop,
                       learning_rate=args.lr, limit_cases=args.limit_cases,
                       validation_cases=list(args.validation_cases),
                       stop_at=None if args.minutes is None else time.time() + 60 * args.minutes))


if __name__ == "__main__":
    main()
