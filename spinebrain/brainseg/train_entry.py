"""``spinebrain train brain-seg``: the tissue model (default) or, with ``--target lesion``, the MS lesion model.

The tissue options are :mod:`.training`'s; ``--target lesion`` hands the same options to
:mod:`.lesion_training`, where an option left at the tissue default takes the lesion recipe's default
instead (model id ``brain-lesion-synth``, 1 mm spacing, 80 epochs, 16 validation crops).
"""

from __future__ import annotations

import argparse

from ..protocol import Progress

TARGETS = ("tissue", "lesion")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .training import add_arguments as tissue_arguments

    tissue_arguments(parser)
    parser.description += (" With --target lesion: the MS / white-matter lesion model (FLAIR required, T1 and T2 "
                           "optional) on the same label maps with lesions painted in.")
    parser.add_argument("--target", choices=TARGETS, default="tissue",
                        help="tissue (GM / WM / CSF, default) or lesion (MS / white-matter lesions)")
    parser.set_defaults(run=run)


def run(args, progress: Progress) -> None:
    if args.target == "tissue":
        from .training import run as run_tissue

        return run_tissue(args, progress)
    return run_lesion(args, progress)


def run_lesion(args, progress: Progress) -> None:
    import torch

    from ..commands.train import command_line
    from .lesion_training import LesionRecipe, train_lesion
    from .training import add_arguments as tissue_arguments

    if args.threads:
        torch.set_num_threads(args.threads)
    tissue_defaults = argparse.ArgumentParser()
    tissue_arguments(tissue_defaults)
    options = {}
    for name in LesionRecipe.__dataclass_fields__:
        if name == "command" or not hasattr(args, name):
            continue
        value = getattr(args, name)
        if name in ("maps", "out") or value != tissue_defaults.get_default(name):
            options[name] = tuple(value) if name == "validation_maps" else value
    train_lesion(LesionRecipe(**options, command=command_line()), progress)
