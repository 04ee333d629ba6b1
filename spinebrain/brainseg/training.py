"""``spinebrain train brain-seg``: the tissue model, trained on images synthesised from label maps.

Training draws fresh crops every epoch from the training label maps (:mod:`.synthesis`); validation
(for the choice of the best checkpoint only) uses fixed synthetic crops from held-out maps
(default ``training_seg_17..20``), so no real scan is ever used to train or to tune. The loop is the
shared engine's (:func:`spinebrain.training.run_training`: best weights, resume checkpoint after
every epoch, ``STOP`` file, metrics log); the result is a model package (card task ``brain-tissue``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import Progress

if TYPE_CHECKING:  # the models package imports torch: 'spinebrain train --help' and the parser do not need it
    from ..models import ModelCard

METRIC = "val_mean_dice"
LABELS = {"0": "background", "1": "Cerebrospinal fluid", "2": "Grey matter", "3": "White matter"}
DEFAULT_NETWORK = {"architecture": "UNet", "kwargs": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2],
                                                      "num_res_units": 1}}


def card_network(in_channels: int, out_channels: int) -> dict:
    """The model card's network entry for the brain recipes' 3D U-Net (tissue and lesion share it)."""
    return {"architecture": DEFAULT_NETWORK["architecture"],
            "kwargs": {"spatial_dims": 3, "in_channels": in_channels, "out_channels": out_channels,
                       **DEFAULT_NETWORK["kwargs"]}}


@dataclass
class SynthRecipe:
    """What both brain recipes (tissue, lesion) are given: label maps, output, the run's size and where it runs.

    The field order is that of the options and of the card's ``training`` entry: a recipe redeclares the defaults
    it changes (which keeps their place) and adds its own fields after ``resume``. Defaults: the tissue model's.
    """

    maps: str
    out: str
    model_id: str
    validation_maps: tuple[int, ...] = (17, 18, 19, 20)
    spacing: float = 1.5
    patch: int = 48
    epochs: int = 200
    steps_per_epoch: int = 50
    batch_size: int = 2
    validation_crops: int = 12
    learning_rate: float = 2e-3
    seed: int = 0
    device: str = "auto"
    run_dir: str | None = None
    resume: bool = True

    def map_names(self) -> tuple[list[str], list[str]]:
        held = {f"training_seg_{i:02d}.nii.gz" for i in self.validation_maps}
        names = sorted(p.name for p in Path(self.maps).glob("training_seg_*.nii.gz"))
        return [n for n in names if n not in held], [n for n in names if n in held]

    def banks(self, bank_class, progress: Progress) -> tuple:
        """(training, validation) ``bank_class.from_folder`` of the maps in ``maps``, split by ``validation_maps``."""
        train_names, val_names = self.map_names()
        progress.update("load", 0.0, f"{len(train_names)} training and {len(val_names)} validation label maps")
        return (bank_class.from_folder(self.maps, self.spacing, train_names, self.seed),
                bank_class.from_folder(self.maps, self.spacing, val_names, self.seed + 1))

    def run_folder(self) -> Path:
        """Checkpoints, metrics log and STOP file: ``run_dir``, by default ``<out>/.runs/<model_id>``."""
        return Path(self.run_dir or Path(self.out) / ".runs" / self.model_id)


@dataclass
class TissueRecipe(SynthRecipe):
    model_id: str = "brain-tissue-synth"
    init_weights: str | None = None  # fine-tune from these weights (.safetensors of the same network)
    until: str | None = None  # "HH:MM" UTC: end the run after the first epoch past this time (a clock stop)
    command: str = ""

    def card(self) -> ModelCard:
        from ..models import ModelCard
        from .synthesis import CLASSES

        network = card_network(in_channels=1, out_channels=len(CLASSES))
        return ModelCard(
            id=self.model_id, task="brain-tissue", version="0.1", labels=dict(LABELS), modalities=["T1"],
            spacing=[self.spacing] * 3, patch_size=[self.patch] * 3,
            # the brain-seg pipeline z-scores within the brain / head mask before the network
            # (spinebrain.brainseg.pipeline), as the synthesis does; the card adds nothing on top
            normalisation={"method": "none"}, network=network, training_command=self.command,
            extra={"any_mr_contrast": True, "mask_normalisation": "zscore within the brain mask (head mask if none)"},
        )


def train_tissue(recipe: TissueRecipe, progress: Progress | None = None, banks=None) -> Path:
    """Train and write ``<out>/<model_id>/``. ``banks``: (training, validation) :class:`.synthesis.LabelMapBank`
    to use instead of the maps in ``recipe.maps`` (e.g. the brain generator's tissue maps)."""
    import torch
    from monai.data import DataLoader
    from monai.losses import DiceCELoss
    from monai.metrics import DiceMetric
    from monai.transforms import AsDiscreted, Compose
    from monai.utils import set_determinism

    from ..training import EngineSettings, init_distributed, run_training, shutdown
    from .synthesis import CLASSES, LabelMapBank, LabelMapSynthesiser, SynthDataset, SynthesisSettings

    progress = progress or Progress(quiet=True)
    card = recipe.card()
    context = init_distributed(recipe.device)
    try:
        set_determinism(recipe.seed)
        settings = SynthesisSettings(patch=recipe.patch)
        train_bank, val_bank = banks if banks is not None else recipe.banks(LabelMapBank, progress)
        train_names, val_names = [m.name for m in train_bank.maps], [m.name for m in val_bank.maps]
        train_set = SynthDataset(LabelMapSynthesiser(train_bank, settings), recipe.steps_per_epoch * recipe.batch_size,
                                 recipe.seed)
        val_set = SynthDataset(LabelMapSynthesiser(val_bank, settings), recipe.validation_crops, recipe.seed + 7,
                               fixed=True)
        network = initial_network(card, recipe.init_weights, progress).to(context.device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.learning_rate, weight_decay=1e-5)
        classes = len(CLASSES)
        post = Compose([AsDiscreted("pred", argmax=True, to_onehot=classes), AsDiscreted("label", to_onehot=classes)])
        run_dir = recipe.run_folder()
        outcome = run_training(
            network, optimizer, DiceCELoss(to_onehot_y=True, softmax=True),
            DataLoader(train_set, batch_size=recipe.batch_size, shuffle=False, num_workers=0),
            DataLoader(val_set, batch_size=2), DiceMetric(include_background=False, reduction="mean"),
            EngineSettings(run_dir, recipe.epochs, METRIC, resume=recipe.resume), context,
            lr_scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.epochs, eta_min=1e-4),
            val_postprocessing=post, progress=progress, extra_handlers=clock_stop(recipe.until, run_dir))
        training_data = (f"{len(train_names)} label maps ({', '.join(train_names)}), images "
                         f"synthesised on the fly: {recipe.steps_per_epoch * recipe.batch_size} crops of "
                         f"{recipe.patch}^3 at {recipe.spacing} mm per epoch")
        measured_on = (f"{recipe.validation_crops} fixed synthetic crops from held-out maps "
                       f"{', '.join(val_names)} (background excluded)")
        return save_recipe_model(recipe, card, outcome, METRIC, training_data, measured_on, progress)
    finally:
        shutdown(context)


def initial_network(card: ModelCard, init_weights: str | None, progress: Progress):
    """The card's network, with the weights in ``init_weights`` (.safetensors of the same network) when given."""
    from ..models import build_network

    network = build_network(card)
    if init_weights:
        from safetensors.torch import load_file

        network.load_state_dict(load_file(init_weights), strict=True)
        progress.log(f"Starting from the weights in {init_weights}")
    return network


def save_recipe_model(recipe: SynthRecipe, card: ModelCard, outcome, metric: str, training_data: str,
                      measured_on: str, progress: Progress) -> Path:
    """Describe the run on the card (data, best ``metric`` and where it was measured, the recipe) and write the
    package with the best weights to ``<out>/<model_id>/``."""
    from ..models import save_model_package
    from ..training import load_best_weights

    card.training_data = training_data
    card.metrics = {metric: outcome.best_metric, "best_epoch": outcome.best_epoch, "epochs_run": outcome.epochs_run,
                    "stopped": outcome.stopped, "measured_on": measured_on}
    card.extra["training"] = {k: v for k, v in asdict(recipe).items() if k not in ("maps", "out", "run_dir", "command")}
    path = save_model_package(recipe.out, load_best_weights(outcome), card, overwrite=True)
    progress.result(path, kind="model")
    progress.log(f"Model package written to {path} (best {metric} {outcome.best_metric} at epoch "
                 f"{outcome.best_epoch}; {outcome.stopped} after epoch {outcome.epochs_run})")
    return path


def clock_stop(until: str | None, run_dir: Path) -> list:
    """An epoch handler that writes the run's STOP file once the UTC clock passes ``until`` ("HH:MM", the
    next one), so an unattended run ends by itself with its best weights (the engine's stop-file handler
    runs right after)."""
    if not until:
        return []
    from ignite.engine import Events

    from ..training.clock import next_utc
    from ..training.handlers import STOP_FILE

    stop_at = next_utc(until)

    def _stop_when_late(trainer) -> None:
        if time.time() >= stop_at:
            (run_dir / STOP_FILE).write_text(f"clock stop at {until} UTC\n")

    return [(Events.EPOCH_COMPLETED, _stop_when_late)]


# -- command line (registered in spinebrain.tasks as brain-seg's train entry) ------------------------
def add_recipe_arguments(parser: argparse.ArgumentParser, recipe) -> None:
    """The options of a synthesis-trained brain recipe (tissue or lesion); defaults from the recipe's fields."""
    defaults = {name: field.default for name, field in recipe.__dataclass_fields__.items()}
    add = parser.add_argument
    add("--maps", required=True, help="folder of label maps with labels.json (the B7_synthseg_label_maps layout)")
    add("--out", required=True, help="folder to write the model package into")
    add("--id", dest="model_id", default=defaults["model_id"], help=f"model id (default {defaults['model_id']})")
    validation = list(defaults["validation_maps"])
    add("--validation-maps", type=int, nargs="+", default=validation,
        help=f"numbers of the maps held out for validation (default {' '.join(map(str, validation))})")
    add("--spacing", type=float, default=defaults["spacing"],
        help=f"model voxel size in mm (default {defaults['spacing']})")
    add("--patch", type=int, default=defaults["patch"], help=f"crop edge in voxels (default {defaults['patch']})")
    add("--epochs", type=int, default=defaults["epochs"])
    add("--steps-per-epoch", type=int, default=defaults["steps_per_epoch"])
    add("--batch-size", type=int, default=defaults["batch_size"])
    add("--validation-crops", type=int, default=defaults["validation_crops"])
    add("--lr", type=float, default=defaults["learning_rate"], dest="learning_rate")
    add("--seed", type=int, default=defaults["seed"])
    add("--device", default=defaults["device"], help="auto, cpu, cuda, cuda:N")
    add("--run-dir", help="checkpoints, metrics log and STOP file (default <out>/.runs/<id>)")
    add("--no-resume", dest="resume", action="store_false", help="start afresh even if a checkpoint exists")
    add("--init-weights", help="start from these weights (.safetensors of the same network), e.g. a run's "
        "best.safetensors, instead of a random initialisation")
    add("--until", help="UTC time HH:MM after which the run ends at the next epoch end (best weights kept)")
    add("--threads", type=int, help="CPU threads for torch")


def run_recipe(args, progress: Progress, recipe, train) -> Path:
    """Build ``recipe`` from the parsed options and ``train`` it (the command line of both brain recipes)."""
    import torch

    from ..commands.train import command_line

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {k: v for k, v in vars(args).items() if k in recipe.__dataclass_fields__}
    options["validation_maps"] = tuple(options["validation_maps"])
    command = getattr(args, "command_text", None) or command_line()  # set when run as python -m ...
    return train(recipe(**options, command=command), progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Train the brain tissue model (background / CSF / GM / WM) on images synthesised from "
                          "label maps in the SynthSeg manner (random contrast, deformation, bias, noise, resolution), "
                          "and write a model package to --out/<id>/. Put a file named STOP in the run folder to end "
                          "the run early with the best weights; run again to resume.")
    add_recipe_arguments(parser, TissueRecipe)
    parser.set_defaults(run=run)


def run(args, progress: Progress) -> None:
    run_recipe(args, progress, TissueRecipe, train_tissue)
