"""``spinebrain train datalist --task spine-segment-2d``: the 2D MR vertebral-body model from a datalist.

The scene's cases (3D volumes and body masks, every non-zero value a body) become the slice-wise
training of :mod:`spinebrain.spinesegment`: each case is read and normalised by the 2D package's own
:func:`~spinebrain.spinesegment.training2d.load_case` (the volume brought to the working frame and
spacing, the mask on the same grid), training samples are its random slices with their neighbours as
channels, cropped and augmented by :func:`~spinebrain.spinesegment.training2d.augmentations` in
:class:`~spinebrain.spinesegment.training2d.RandomSliceDataset`, and the network is the card's
(:func:`~spinebrain.spinesegment.networks.network_spec`). What this adapter adds, because the 2D
package trains from ``splits.json`` folders only: the datalist's cases laid out as the case folders
``load_case`` reads (links, not copies), a validation on whole slices of the datalist's validation
cases, and the loop on the shared engine (best weights, ``STOP`` file, epoch events, metrics log).
The loss is MONAI's Dice + cross-entropy on the body channel (the 2D package's ignore channel, where
it has one, is empty here: a scene case's mask counts everywhere). With ``--init-from`` a
``spine-segment-2d`` model is fine-tuned: its network, plane, neighbour slices, spacing, crop and
normalisation are kept. The card is the 2D pipeline's (:mod:`spinebrain.spinesegment.pipeline2d`).
One process only (no DDP); no generated cases (no generator draws MR bodies as the scans look).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..protocol import Progress, as_progress

TASK_2D = "spine-segment-2d"
LABELS = {"0": "background", "1": "vertebral body"}
METRIC = "val_dice"
DEFAULTS = {"architecture": "unet", "plane": "sagittal", "context": 1, "spacing_mm": 1.0, "crop": 160, "n4": False}


def run(args, progress: Progress) -> Path:
    """Train (or fine-tune) a 2D body model on the datalist of ``args`` and write its package."""
    from monai.utils import set_determinism

    progress = as_progress(progress)
    if args.synthetic_ratio > 0:
        raise InputError("No generator draws MR vertebral bodies for the 2D model; set the synthetic ratio to 0.")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Num foregrounds 0")  # body-free slices are drawn on purpose
    setup = _setup(args)
    set_determinism(args.seed)
    run_dir = Path(args.run_dir or Path(args.out) / ".runs" / args.model_id)
    from .datalist import split_datalist

    training, validation = split_datalist(args.datalist, args.validation_fraction, args.seed)
    options = _options(args, setup, run_dir)
    progress.update("load", 0.0, f"reading {len(training)} training and {len(validation)} validation cases")
    train_cases = [_load(case, run_dir, options) for case in training]
    val_cases = [_load(case, run_dir, options) for case in validation]
    outcome, network = _train(setup, options, train_cases, val_cases, run_dir, args, progress)
    return _write_package(args, setup, outcome, network, training, validation, progress)


def _setup(args) -> dict:
    """Network and preprocessing: the fine-tuned model's (checked), else the 2D defaults with --patch's crop."""
    from ..spinesegment.networks import network_spec

    if args.init_from:
        from .fine_tune import check_compatible, load_start_model

        start, weights = load_start_model(args.init_from, TASK_2D)
        check_compatible(start, None, None, [args.spacing[0]] * 3 if args.spacing else None,
                         [args.patch[0], args.patch[1], start.patch_size[2]] if args.patch else None)
        context = int(start.extra.get("context", DEFAULTS["context"]))
        return {"network": start.network, "plane": start.extra.get("plane", DEFAULTS["plane"]), "context": context,
                "spacing_mm": float(start.spacing[0]), "crop": int(start.patch_size[0]),
                "n4": bool(start.normalisation.get("n4", False)), "weights": weights, "start": start,
                "inference": start.extra.get("inference", {}), "modality": list(start.modalities)}
    spacing = float(args.spacing[0]) if args.spacing else DEFAULTS["spacing_mm"]
    crop = int(args.patch[0]) if args.patch else DEFAULTS["crop"]
    spec = network_spec(args.network or DEFAULTS["architecture"], 2 * DEFAULTS["context"] + 1)
    if args.network_kwargs:
        spec["kwargs"].update(args.network_kwargs)
    return {"network": spec, "plane": DEFAULTS["plane"], "context": DEFAULTS["context"], "spacing_mm": spacing,
            "crop": crop, "n4": DEFAULTS["n4"], "weights": None, "start": None, "inference": {},
            "modality": list(args.modalities or ["MR"])}


def _options(args, setup: dict, run_dir: Path):
    """The 2D package's TrainOptions for this run (its data_root is unused: cases come from the datalist)."""
    from ..spinesegment.training2d import TrainOptions

    options = TrainOptions(data_root="", out_dir=str(run_dir), plane=setup["plane"], context=setup["context"],
                           spacing_mm=setup["spacing_mm"], n4=setup["n4"], crop=setup["crop"],
                           batch_size=args.batch_size, samples_per_epoch=max(args.batch_size, args.samples_per_epoch),
                           max_epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed)
    for name, value in (("span_mask", False), ("balance_sets", False)):  # where the 2D package has them
        if hasattr(options, name):
            setattr(options, name, value)
    return options


def _load(case: dict, run_dir: Path, options):
    """One datalist case through the 2D package's ``load_case`` (a case folder of links to the files)."""
    from ..spinesegment.training2d import load_case
    from .segmentation import case_name

    name = case_name(case)
    image = case["image"][0] if isinstance(case["image"], (list, tuple)) else case["image"]
    folder = run_dir / "cases2d" / name
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in ((image, "image.nii.gz"), (case["label"], "vertebrae.nii.gz")):
        _link(Path(source), folder / target)
    loaded = load_case(name, folder, options)
    if not loaded.mask.any():
        raise InputError(f"{name}: the body mask is empty on the model grid; paint the bodies or leave the case out.")
    return loaded


def _link(source: Path, target: Path) -> None:
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # no symbolic links (e.g. Windows without the right): a copy does the same
        shutil.copyfile(source, target)


def _train(setup, options, train_cases, val_cases, run_dir: Path, args, progress):
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceCELoss
    from monai.metrics import DiceMetric
    from monai.transforms import DivisiblePadd

    from ..models.network import network_class
    from ..spinesegment.training2d import RandomSliceDataset, augmentations
    from .engine import EngineSettings, run_training

    network = network_class(setup["network"]["architecture"])(**setup["network"]["kwargs"])
    if setup["weights"] is not None:
        from .fine_tune import load_into

        load_into(network, setup["weights"], setup["start"])
        progress.log(f"Fine-tuning model {setup['start'].id!r} (its network and preprocessing are kept)")
    optimizer = torch.optim.Adam(network.parameters(), lr=args.learning_rate)
    train_loader = DataLoader(RandomSliceDataset(train_cases, options, augmentations(options)),
                              batch_size=args.batch_size, num_workers=0)
    val_loader = DataLoader(Dataset(_validation_slices(val_cases, setup["context"]),
                                    DivisiblePadd(("image", "label"), k=16)), batch_size=1)
    settings = EngineSettings(run_dir, args.epochs, METRIC, val_interval=args.val_interval,
                              early_stop_patience=args.patience, resume=args.resume, amp=args.amp)
    body_loss = DiceCELoss(sigmoid=True, batch=True)
    outcome = run_training(
        network, optimizer, lambda logits, target: body_loss(logits, target[:, :1]), train_loader, val_loader,
        DiceMetric(include_background=True, reduction="mean"), settings,
        lr_scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs), progress=progress,
        val_postprocessing=_threshold)
    return outcome, network


def _validation_slices(cases, context: int) -> list[dict]:
    """Every second slice showing a body, and two without, of each validation case (whole slices)."""
    from ..spinesegment.slices2d import stack

    items = []
    for case in cases:
        empty = np.setdiff1d(np.arange(case.image.shape[0]), case.body_slices)
        for index in list(case.body_slices[::2]) + list(empty[:: max(1, len(empty) // 2)][:2]):
            items.append({"image": stack(case.image, int(index), context).astype(np.float32),
                          "label": case.mask[int(index)][None].astype(np.float32)})
    return items


def _threshold(item: dict) -> dict:
    item["pred"] = (torch.sigmoid(item["pred"]) > 0.5).float()
    return item


def _write_package(args, setup, outcome, network, training, validation, progress) -> Path:
    from .. import RESEARCH_NOTICE, __version__
    from ..commands import command_line
    from ..models import ModelCard, save_model_package
    from ..spinesegment.pipeline2d import DEFAULT_INFERENCE
    from .datalist import summarise
    from .engine import load_best_weights
    from .segmentation import case_name

    crop, context = setup["crop"], setup["context"]
    card = ModelCard(
        id=args.model_id, task=TASK_2D, version="1.0", labels=dict(LABELS), modalities=setup["modality"],
        spacing=[setup["spacing_mm"]] * 3, patch_size=[crop, crop, 2 * context + 1],
        normalisation={"method": "zscore-minmax", "clip_percentiles": [0.5, 99.5], "n4": setup["n4"]},
        network=setup["network"], training_data=summarise(args.datalist, training, validation),
        training_command=command_line(), software_version=__version__, research_notice=RESEARCH_NOTICE,
        metrics={METRIC: outcome.best_metric, "best_epoch": outcome.best_epoch, "epochs_run": outcome.epochs_run,
                 "stopped": outcome.stopped, "measured_on": f"{len(validation)} validation cases of "
                 f"{Path(args.datalist).name} (whole slices, every second one with a body, threshold 0.5)"},
        extra={"plane": setup["plane"], "context": context, "inference": {**DEFAULT_INFERENCE, **setup["inference"]},
               "cases": {"training": [case_name(c) for c in training], "validation": [case_name(c) for c in validation]}},
    )
    if setup["start"] is not None:
        card.extra["fine_tuned_from"] = {"id": setup["start"].id, "version": setup["start"].version}
    path = save_model_package(args.out, load_best_weights(outcome), card, overwrite=True)
    progress.result(path, kind="model")
    progress.log(f"Model package written to {path} (best {METRIC} {outcome.best_metric} at epoch "
                 f"{outcome.best_epoch}; {outcome.stopped} after epoch {outcome.epochs_run})")
    return path
