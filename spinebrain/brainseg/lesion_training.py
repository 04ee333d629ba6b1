"""``spinebrain train brain-seg --target lesion``: the MS / white-matter lesion model, trained on painted label maps.

Training draws fresh multi-sequence crops every epoch from the training label maps with lesions
painted in (:mod:`.lesion_synthesis`); validation (for the choice of the best checkpoint only) uses
fixed synthetic crops from held-out maps (default ``training_seg_17..20``), so no real scan is ever
used to train or to tune. The loop is the shared engine's (:func:`spinebrain.training.run_training`);
``--until HH:MM`` (UTC) ends a run after the epoch that passes that time, as a STOP file would.
The result is a model package with card task ``brain-lesion``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import ModelCard
from ..protocol import Progress
from .lesion_synthesis import CHANNELS, REQUIRED_CHANNELS
from .training import (SynthRecipe, add_recipe_arguments, card_network, clock_stop, initial_network, run_recipe,
                       save_recipe_model)

METRIC = "val_lesion_dice"
LABELS = {"0": "background", "1": "Lesion"}


@dataclass
class LesionRecipe(SynthRecipe):
    model_id: str = "brain-lesion-synth"
    spacing: float = 1.0
    epochs: int = 80
    validation_crops: int = 16
    until: str | None = None  # HH:MM UTC
    init_weights: str | None = None  # start from these weights (.safetensors of the same network)
    workers: int = 0  # DataLoader workers (synthesis runs in them)
    minimum_lesion_mm3: float = 10.0  # written to the card; the pipeline drops smaller components
    command: str = ""

    def card(self) -> ModelCard:
        network = card_network(in_channels=len(CHANNELS), out_channels=len(LABELS))
        return ModelCard(
            id=self.model_id, task="brain-lesion", version="0.1", labels=dict(LABELS), modalities=list(CHANNELS),
            spacing=[self.spacing] * 3, patch_size=[self.patch] * 3,
            # each sequence is z-scored within the brain mask by the brain-seg pipeline, as in the synthesis
            normalisation={"method": "none"}, network=network, training_command=self.command,
            extra={"required_inputs": list(REQUIRED_CHANNELS),
                   "optional_inputs": [c for c in CHANNELS if c not in REQUIRED_CHANNELS],
                   "absent_input": "all zero", "lesion_kind": "MS / white-matter lesions",
                   "minimum_lesion_mm3": self.minimum_lesion_mm3,
                   "mask_normalisation": "zscore of each sequence within the brain mask"},
        )


def train_lesion(recipe: LesionRecipe, progress: Progress | None = None, banks=None, budget=None) -> Path:
    """Train and write ``<out>/<model_id>/``; ``banks``: (training, validation) :class:`.lesion_synthesis.LesionBank`.

    ``budget``: ``budget(optimizer, recipe)`` makes a wall-clock timer (with ``handlers()`` and ``summary(device)``,
    e.g. :class:`.lesion_gpu.TimeBudget`: cosine learning rate over the seconds, stop at the budget) that replaces
    the epoch-count schedule; passed in so that this module need not import the GPU runner."""
    from monai.data import DataLoader
    from monai.losses import DiceCELoss
    from monai.metrics import DiceMetric
    from monai.transforms import AsDiscreted, Compose
    from monai.utils import set_determinism

    from ..training import EngineSettings, init_distributed, run_training, shutdown
    from .lesion_synthesis import LesionBank, LesionDataset, LesionSettings, LesionSynthesiser

    progress = progress or Progress(quiet=True)
    card = recipe.card()
    context = init_distributed(recipe.device)
    try:
        set_determinism(recipe.seed)
        train_bank, val_bank = banks if banks is not None else recipe.banks(LesionBank, progress)
        settings = LesionSettings(patch=recipe.patch)
        train_set = LesionDataset(LesionSynthesiser(train_bank, settings, recipe.spacing),
                                  recipe.steps_per_epoch * recipe.batch_size, recipe.seed)
        val_set = LesionDataset(LesionSynthesiser(val_bank, settings, recipe.spacing), recipe.validation_crops,
                                recipe.seed + 7, fixed=True)
        network = initial_network(card, recipe.init_weights, progress).to(context.device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.learning_rate, weight_decay=1e-5)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.epochs, eta_min=1e-4)
        run_dir = recipe.run_folder()
        handlers = clock_stop(recipe.until, run_dir)
        timer = None
        if budget is not None:
            schedule = None
            timer = budget(optimizer, recipe)
            handlers = handlers + timer.handlers()
        workers = {"num_workers": recipe.workers, "persistent_workers": recipe.workers > 0,
                   "pin_memory": context.device.type == "cuda"}
        post = Compose([AsDiscreted("pred", argmax=True, to_onehot=2), AsDiscreted("label", to_onehot=2)])
        outcome = run_training(
            network, optimizer,
            # batch Dice: crops without a lesion still teach (no per-crop Dice of an empty target)
            DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True),
            DataLoader(train_set, batch_size=recipe.batch_size, shuffle=False, **workers),
            DataLoader(val_set, batch_size=2), DiceMetric(include_background=False, reduction="mean"),
            EngineSettings(run_dir, recipe.epochs, METRIC, resume=recipe.resume), context,
            lr_scheduler=schedule, val_postprocessing=post, progress=progress, extra_handlers=handlers)
        if timer is not None:
            print(timer.summary(context.device), flush=True)  # stdout: the GPU job's log shows it
        train_names, val_names = [m.name for m in train_bank.bank.maps], [m.name for m in val_bank.bank.maps]
        training_data = (f"{len(train_names)} label maps ({', '.join(train_names)}) with lesions painted in, "
                         f"FLAIR/T1/T2 synthesised on the fly: {recipe.steps_per_epoch * recipe.batch_size} crops "
                         f"of {recipe.patch}^3 at {recipe.spacing} mm per epoch")
        measured_on = (f"{recipe.validation_crops} fixed synthetic crops (each with a painted lesion) "
                       f"from held-out maps {', '.join(val_names)}")
        return save_recipe_model(recipe, card, outcome, METRIC, training_data, measured_on, progress)
    finally:
        shutdown(context)


# -- command line ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Train the MS / white-matter lesion model (FLAIR required, T1 and T2 optional) on "
                          "multi-sequence images synthesised from label maps with lesions painted in, and write a "
                          "model package to --out/<id>/. A file named STOP in the run folder ends the run early "
                          "with the best weights; run again to resume.")
    add_recipe_arguments(parser, LesionRecipe)
    parser.set_defaults(run=run)


def run(args, progress: Progress) -> None:
    run_recipe(args, progress, LesionRecipe, train_lesion)


if __name__ == "__main__":  # python -m spinebrain.brainseg.lesion_training ... (same options)
    import sys

    from ..protocol import Progress as _Progress

    _parser = argparse.ArgumentParser(prog="spinebrain train brain-seg --target lesion")
    add_arguments(_parser)
    _args = _parser.parse_args(sys.argv[1:])
    _args.command_text = "python -m spinebrain.brainseg.lesion_training " + " ".join(sys.argv[1:])
    _args.run(_args, _Progress())
