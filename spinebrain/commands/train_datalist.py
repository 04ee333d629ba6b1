"""``spinebrain train datalist``: its options (light: no torch or MONAI import for ``--help``).

The work is in :mod:`spinebrain.training.from_datalist` (recipe, fine-tuning, synthetic mix, training).
"""

from __future__ import annotations

import argparse
import json

from ..tasks import available_tasks

DEFAULT_ARCHITECTURE = "UNet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train a segmentation model on the cases of a MONAI-style datalist (what the Training module exports) "
        "and write a model package to --out/<id>/; --init-from fine-tunes an installed model. Put a file named "
        "STOP in the run folder to end early with the best weights so far; run again to resume.")
    add = parser.add_argument
    add("--task", required=True, help="the model card's task: " + ", ".join(
        card_task for task in available_tasks() for card_task in task.datalist_card_tasks))
    add("--datalist", required=True, help="datalist JSON: 'training' [and 'validation'] lists of image/label paths")
    add("--out", required=True, help="folder to write the model package into (<out>/<id>/)")
    add("--id", dest="model_id", required=True, help="model id (names the package folder)")
    add("--init-from", metavar="MODEL", help="fine-tune this model (id or package folder): its labels, channels, "
        "spacing, patch, normalisation and network are kept")
    add("--labels", type=json.loads, help='JSON {"0": "background", "1": "name"} (default: the datalist\'s labels)')
    add("--modalities", nargs="+", help="input channels in datalist order (default: the datalist's modality)")
    add("--spacing", type=float, nargs=3, help="model voxel spacing in mm (default: the task's)")
    add("--patch", type=int, nargs=3, help="training and inference patch in voxels (default: the task's)")
    add("--network", help=f"a monai.networks.nets class (default {DEFAULT_ARCHITECTURE})")
    add("--network-kwargs", type=json.loads, help="JSON constructor arguments beyond in/out channels")
    add("--epochs", type=int, default=50)
    add("--batch-size", type=int, default=2)
    add("--samples-per-case", type=int, default=2, help="random patches per case and iteration")
    add("--samples-per-epoch", type=int, default=200, help="spine-segment-2d: random slices per epoch")
    add("--lr", type=float, default=1e-3, dest="learning_rate")
    add("--val-interval", type=int, default=1, help="validate every N epochs")
    add("--patience", type=int, help="stop after N validations without improvement (default: never)")
    add("--validation-fraction", type=float, default=0.2, help="share held out when the datalist has no validation")
    add("--synthetic-ratio", type=float, default=0.0, help="generated cases mixed in per training case (default 0)")
    add("--no-augment", dest="augment", action="store_false")
    add("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    add("--seed", type=int, default=0)
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N (under torchrun: one GPU per process)")
    add("--run-dir", help="checkpoints, metrics log and STOP file (default <out>/.runs/<id>)")
    add("--no-resume", dest="resume", action="store_false", help="start afresh even if a resume checkpoint exists")
    add("--threads", type=int, help="CPU threads for torch")
    parser.set_defaults(run=run)


def run(args, progress) -> None:
    from ..models.package import refuse_existing_package
    from ..training.from_datalist import run as train

    refuse_existing_package(args.out, args.model_id)  # before any training, not after it
    train(args, progress)
