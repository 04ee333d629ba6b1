"""Training a 3D segmentation model from a datalist into a model package (the recipe volume tasks use).

``python -m spinebrain.training segment --datalist dl.json --out models/ --id my-model --task brain-tissue
--labels '{"0": "background", "1": "grey matter"}' --spacing 1 1 1 --patch 96 96 96 ...`` -- the same
command under ``torchrun --nproc_per_node=N`` trains with DDP. The package's card records the command,
the datalist summary and the best validation Dice; the inference block runs it as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from ..models import ModelCard, build_network, save_model_package
from ..protocol import Progress, as_progress
from .datalist import LoadCased, split_datalist, summarise
from .distributed import init_distributed, sampler_for, shutdown, wrap_network
from .engine import EngineSettings, TrainingOutcome, load_best_weights, run_training

METRIC = "val_mean_dice"


@dataclass
class SegmentationRecipe:
    datalist: str
    out: str
    model_id: str
    task: str
    labels: dict[str, str]
    spacing: list[float]
    patch_size: list[int]
    modalities: list[str] = field(default_factory=lambda: ["CT"])
    normalisation: dict = field(default_factory=lambda: {"method": "zscore"})
    network: dict = field(default_factory=lambda: {"architecture": "BasicUNet", "kwargs": {}})
    epochs: int = 50
    batch_size: int = 2
    samples_per_case: int = 2
    learning_rate: float = 1e-3
    val_interval: int = 1
    patience: int | None = None
    validation_fraction: float = 0.2
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    run_dir: str | None = None  # default <out>/.runs/<model_id>
    resume: bool = True
    command: str = ""
    init_from: str | None = None  # fine-tune: a model id or package folder with the same card settings
    amp: bool = True  # mixed precision (used on CUDA only)
    extra_training: list[dict] = field(default_factory=list)  # more training cases (e.g. synthetic ones)

    def card(self) -> ModelCard:
        """The card without weights, sha256 or metrics; checked before any training starts."""
        network = {"architecture": self.network["architecture"],
                   "kwargs": {"spatial_dims": 3, "in_channels": len(self.modalities), "out_channels": len(self.labels),
                              **self.network.get("kwargs", {})}}
        card = ModelCard(id=self.model_id, task=self.task, version="1.0", labels=dict(self.labels),
                         modalities=list(self.modalities), spacing=[float(v) for v in self.spacing],
                         patch_size=[int(v) for v in self.patch_size], normalisation=dict(self.normalisation),
                         network=network, training_command=self.command)
        from ..errors import ModelError

        try:
            card.validate("training settings")
        except ModelError as error:
            raise InputError(str(error)) from None
        return card


def _transforms(recipe: SegmentationRecipe, train: bool):
    from monai.transforms import (Compose, EnsureTyped, RandCropByPosNegLabeld, RandGaussianNoised,
                                  RandScaleIntensityd, RandShiftIntensityd, SpatialPadd)

    keys = ["image", "label"]
    steps = [LoadCased(recipe.spacing, recipe.normalisation), SpatialPadd(keys, recipe.patch_size)]
    if train:
        steps.append(RandCropByPosNegLabeld(keys, "label", recipe.patch_size, pos=1, neg=1,
                                            num_samples=recipe.samples_per_case))
        if recipe.augment:
            steps += [RandScaleIntensityd("image", 0.1, prob=0.5), RandShiftIntensityd("image", 0.1, prob=0.5),
                      RandGaussianNoised("image", prob=0.2, std=0.05)]
    steps.append(EnsureTyped(keys, track_meta=False))
    return Compose(steps)


def train_segmentation(recipe: SegmentationRecipe, progress: Progress | None = None) -> Path | None:
    """Train, then write ``<out>/<model_id>/`` from the best weights; returns its path (None on ranks > 0)."""
    from monai.data import CacheDataset, DataLoader
    from monai.inferers import SlidingWindowInferer
    from monai.losses import DiceCELoss
    from monai.metrics import DiceMetric
    from monai.transforms import AsDiscreted, Compose
    from monai.utils import set_determinism

    card = recipe.card()
    context = init_distributed(recipe.device)
    progress = as_progress(progress if context.is_main else None)  # only rank 0 reports
    try:
        set_determinism(recipe.seed)
        training, validation = split_datalist(recipe.datalist, recipe.validation_fraction, recipe.seed)
        training = training + list(recipe.extra_training)
        progress.update("load", 0.0, f"{len(training)} training and {len(validation)} validation cases")
        train_set = CacheDataset(training, _transforms(recipe, True), progress=False)
        val_set = CacheDataset(validation, _transforms(recipe, False), progress=False)
        sampler = sampler_for(train_set, context, shuffle=True, seed=recipe.seed)
        train_loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=sampler is None, sampler=sampler)
        val_loader = DataLoader(val_set, batch_size=1)
        network = build_network(card)
        if recipe.init_from:
            _start_from(network, card, recipe.init_from, progress)
        network = wrap_network(network, context)
        optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.learning_rate, weight_decay=1e-5)
        classes = len(recipe.labels)
        post = Compose([AsDiscreted("pred", argmax=True, to_onehot=classes), AsDiscreted("label", to_onehot=classes)])
        settings = EngineSettings(Path(recipe.run_dir or Path(recipe.out) / ".runs" / recipe.model_id), recipe.epochs,
                                  METRIC, val_interval=recipe.val_interval, early_stop_patience=recipe.patience,
                                  resume=recipe.resume, amp=recipe.amp)
        outcome = run_training(
            network, optimizer, DiceCELoss(to_onehot_y=True, softmax=True), train_loader, val_loader,
            DiceMetric(include_background=False, reduction="mean"), settings, context,
            lr_scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.epochs),
            val_inferer=SlidingWindowInferer(recipe.patch_size, sw_batch_size=2, overlap=0.25, mode="gaussian"),
            val_postprocessing=post, progress=progress,
        )
        if not context.is_main:
            return None
        return _write_package(recipe, card, outcome, training, validation, progress)
    finally:
        shutdown(context)


def _start_from(network, card: ModelCard, model: str, progress: Progress) -> None:
    """Fine-tuning: the start model's weights, after checking it keeps labels, channels and preprocessing."""
    from .fine_tune import check_compatible, load_into, load_start_model

    start, weights = load_start_model(model, card.task)
    check_compatible(start, card.labels, card.modalities, card.spacing, card.patch_size, card.normalisation,
                     card.network)
    load_into(network, weights, start)
    card.extra["fine_tuned_from"] = {"id": start.id, "version": start.version, "sha256": start.sha256}
    progress.log(f"Fine-tuning model {start.id!r} (its labels, channels, spacing and normalisation are kept)")


def _write_package(recipe, card: ModelCard, outcome: TrainingOutcome, training, validation, progress) -> Path:
    card.training_data = summarise(recipe.datalist, training, validation)
    card.metrics = {METRIC: outcome.best_metric, "best_epoch": outcome.best_epoch, "epochs_run": outcome.epochs_run,
                    "stopped": outcome.stopped, "resumed_from_epoch": outcome.resumed_from_epoch,
                    "measured_on": f"{len(validation)} validation cases of {Path(recipe.datalist).name} "
                                   "(sliding window on the model grid, background excluded)"}
    card.extra["cases"] = {"training": [case_name(c) for c in training], "validation": [case_name(c) for c in validation]}
    card.extra["training"] = {key: value for key, value in asdict(recipe).items()
                              if key not in ("datalist", "out", "run_dir", "command", "labels", "spacing", "patch_size",
                                             "modalities", "normalisation", "network", "model_id", "task", "extra_training")}
    path = save_model_package(recipe.out, load_best_weights(outcome), card, overwrite=True)
    progress.result(path, kind="model")
    progress.log(f"Model package written to {path} (best {METRIC} {outcome.best_metric} at epoch "
                 f"{outcome.best_epoch}; {outcome.stopped} after epoch {outcome.epochs_run})")
    return path


def case_name(case: dict) -> str:
    """A datalist entry's ``name``, else its (first) image file's name."""
    image = case["image"][0] if isinstance(case["image"], (list, tuple)) else case["image"]
    return str(case.get("name") or Path(str(image)).name)


# -- command line ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a segmentation training command (the task registry reuses them)."""
    add = parser.add_argument
    add("--datalist", required=True, help="MONAI-style datalist JSON ('training' [and 'validation'] lists)")
    add("--out", required=True, help="folder to write the model package into (<out>/<id>/)")
    add("--id", dest="model_id", required=True, help="model id (names the package folder)")
    add("--task", required=True, help="the model card's task, e.g. spine-segment, brain-tissue, brain-lesion")
    add("--labels", type=json.loads, required=True, help='JSON: {"0": "background", "1": "name", ...}')
    add("--modalities", nargs="+", default=["CT"], help="input channels in datalist order (default CT)")
    add("--spacing", type=float, nargs=3, required=True, help="model voxel spacing in mm (i j k)")
    add("--patch", type=int, nargs=3, required=True, dest="patch_size", help="training/inference patch (i j k)")
    add("--normalisation", type=json.loads, default={"method": "zscore"}, help="JSON normalisation spec")
    add("--network", default="BasicUNet", help="a monai.networks.nets class (default BasicUNet)")
    add("--network-kwargs", type=json.loads, default={}, help="JSON constructor arguments beyond in/out channels")
    add("--epochs", type=int, default=50)
    add("--batch-size", type=int, default=2)
    add("--samples-per-case", type=int, default=2, help="random patches per case and iteration")
    add("--lr", type=float, default=1e-3, dest="learning_rate")
    add("--val-interval", type=int, default=1, help="validate every N epochs")
    add("--patience", type=int, help="stop after N validations without improvement (default: never)")
    add("--validation-fraction", type=float, default=0.2, help="share held out when the datalist has no validation")
    add("--no-augment", dest="augment", action="store_false")
    add("--seed", type=int, default=0)
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N (under torchrun: one GPU per process)")
    add("--run-dir", help="checkpoints, metrics log and STOP file (default <out>/.runs/<id>)")
    add("--no-resume", dest="resume", action="store_false", help="start afresh even if a resume checkpoint exists")
    add("--threads", type=int, help="CPU threads for torch")
    add("--init-from", metavar="MODEL", help="fine-tune this model (id or package folder) instead of random weights; "
        "labels, channels, spacing, patch, normalisation and network must be the model's")
    add("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")


def run(args, progress: Progress) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {key: value for key, value in vars(args).items()
               if key in SegmentationRecipe.__dataclass_fields__ and key not in ("network", "command")}
    command = "python -m spinebrain.training " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    recipe = SegmentationRecipe(**options, network={"architecture": args.network, "kwargs": args.network_kwargs},
                                command=getattr(args, "command_line", None) or command)
    train_segmentation(recipe, progress)


def main(argv: list[str] | None = None) -> int:
    from ..cli import execute

    parser = argparse.ArgumentParser(prog="python -m spinebrain.training", description=__doc__.splitlines()[0])
    parser.add_argument("--progress-json", action="store_true", help="JSON-lines progress on stdout (rank 0)")
    commands = parser.add_subparsers(dest="command", required=True)
    add_arguments(commands.add_parser("segment", help="train a 3D segmentation model from a datalist"))
    args = parser.parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    return execute(run, args, Progress(json_lines=args.progress_json and main_process, quiet=not main_process))
