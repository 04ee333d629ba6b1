"""``spinebrain train datalist``: train (or fine-tune) a segmentation model on the cases of a datalist.

What the Training module in Slicer runs after exporting the cases of the scene, and what a user runs
on a folder of their own cases. The datalist is MONAI-style (see :mod:`.datalist`); the exporter also
writes the Medical Segmentation Decathlon's ``labels`` (value -> name) and ``modality`` (channel ->
sequence) keys, which give the model's label set and input channels when no option does.

Which model-card tasks can be trained this way is the task registry's word
(:attr:`spinebrain.tasks.Task.datalist_card_tasks`); their default grid, patch and network are in
:data:`TASK_DEFAULTS`. With ``--init-from MODEL`` the run fine-tunes that model: its labels,
channels, spacing, patch, normalisation and network are kept, and a request that differs is refused
(:mod:`.fine_tune`). ``--synthetic-ratio R`` adds R generated cases per training case
(:mod:`.synthetic_mix`). ``spine-segment-2d`` (3D volumes + body masks -> the slice-wise 2D MR model)
goes to :mod:`.from_datalist_2d`. The same command runs under ``torchrun`` (DDP; 3D tasks). The loop is the shared
engine's (:func:`~.segmentation.train_segmentation`): best weights, resume, ``STOP`` file, metrics log.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from ..protocol import Progress

#: Per card task: the grid, patch and network a model trained from scratch gets (small enough for a CPU).
TASK_DEFAULTS = {
    "spine-segment": {"spacing": [1.0, 1.0, 1.0], "patch_size": [64, 64, 64], "modalities": ["CT"]},
    "brain-tissue": {"spacing": [1.5, 1.5, 1.5], "patch_size": [48, 48, 48], "modalities": ["T1"]},
    "brain-lesion": {"spacing": [1.0, 1.0, 1.0], "patch_size": [64, 64, 64], "modalities": ["FLAIR"]},
}
DEFAULT_NETWORK = {"architecture": "UNet", "kwargs": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2],
                                                      "num_res_units": 1}}
NORMALISATION = {"method": "zscore"}


def datalist_card_tasks() -> tuple[str, ...]:
    """The card tasks the registry lets ``spinebrain train datalist`` make."""
    from ..tasks import available_tasks

    return tuple(card_task for task in available_tasks() for card_task in task.datalist_card_tasks)


def datalist_metadata(path: str | Path) -> tuple[dict | None, list | None]:
    """The datalist's ``labels`` ({value: name}) and ``modality`` (channel order) keys, None where absent."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, None  # read_datalist says what is wrong with the file itself
    labels = document.get("labels") if isinstance(document.get("labels"), dict) else None
    modality = document.get("modality")
    if isinstance(modality, dict):
        modality = [modality[key] for key in sorted(modality, key=int)]
    return ({str(k): str(v) for k, v in labels.items()} if labels else None), (list(modality) if modality else None)


def build_recipe(args: argparse.Namespace):
    """The :class:`~.segmentation.SegmentationRecipe` of a ``train datalist`` command; InputError on a bad request."""
    from .segmentation import SegmentationRecipe

    if args.task not in datalist_card_tasks():
        raise InputError(f"Models of task {args.task!r} cannot be trained from a datalist; choose one of "
                         f"{', '.join(datalist_card_tasks())}.")
    listed_labels, listed_modalities = datalist_metadata(args.datalist)
    labels = args.labels or listed_labels
    modalities = args.modalities or listed_modalities
    if args.init_from:
        settings = _fine_tune_settings(args, labels, modalities)
    else:
        if not labels:
            raise InputError(f"The datalist {args.datalist} names no labels; add a 'labels' entry "
                             '({"0": "background", "1": ...}) or give --labels.')
        defaults = TASK_DEFAULTS[args.task]
        settings = {"labels": labels, "modalities": modalities or defaults["modalities"],
                    "spacing": args.spacing or defaults["spacing"], "patch_size": args.patch or defaults["patch_size"],
                    "normalisation": NORMALISATION,
                    "network": {"architecture": args.network or DEFAULT_NETWORK["architecture"],
                                "kwargs": args.network_kwargs if args.network_kwargs is not None
                                else DEFAULT_NETWORK["kwargs"]}}
    if args.synthetic_ratio < 0:
        raise InputError("--synthetic-ratio is a number of generated cases per training case, 0 or more.")
    from ..commands import command_line

    return SegmentationRecipe(
        datalist=args.datalist, out=args.out, model_id=args.model_id, task=args.task, epochs=args.epochs,
        batch_size=args.batch_size, samples_per_case=args.samples_per_case, learning_rate=args.learning_rate,
        val_interval=args.val_interval, patience=args.patience, validation_fraction=args.validation_fraction,
        augment=args.augment, seed=args.seed, device=args.device, run_dir=args.run_dir, resume=args.resume,
        init_from=args.init_from, amp=args.amp, command=command_line(), **settings)


def _fine_tune_settings(args, labels, modalities) -> dict:
    """The start model's settings (fine-tuning keeps them); InputError when the request asks for others."""
    from .fine_tune import check_compatible, load_start_model

    start, _ = load_start_model(args.init_from, args.task)
    network = None if args.network is None and args.network_kwargs is None else {
        "architecture": args.network or start.network["architecture"], "kwargs": args.network_kwargs or {}}
    check_compatible(start, labels, modalities, args.spacing, args.patch, network=network)
    kwargs = {k: v for k, v in start.network.get("kwargs", {}).items()
              if k not in ("spatial_dims", "in_channels", "out_channels")}
    return {"labels": dict(start.labels), "modalities": list(modalities or start.modalities),
            "spacing": list(start.spacing), "patch_size": list(start.patch_size),
            "normalisation": dict(start.normalisation),
            "network": {"architecture": start.network["architecture"], "kwargs": kwargs}}


def run(args, progress: Progress) -> None:
    import torch

    from .segmentation import train_segmentation

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.task == "spine-segment-2d":  # slice-wise training of the 2D MR body model (its own adapter)
        from .from_datalist_2d import run as train_2d

        train_2d(args, progress)
        return
    recipe = build_recipe(args)
    if args.synthetic_ratio > 0:
        from .datalist import split_datalist
        from .synthetic_mix import synthetic_cases

        training, _ = split_datalist(recipe.datalist, recipe.validation_fraction, recipe.seed)
        count = int(round(args.synthetic_ratio * len(training)))
        folder = Path(recipe.run_dir or Path(recipe.out) / ".runs" / recipe.model_id) / "synthetic"
        recipe.extra_training = synthetic_cases(recipe.task, recipe.labels, recipe.modalities, count, folder,
                                                recipe.seed, progress)
    train_segmentation(recipe, progress)
