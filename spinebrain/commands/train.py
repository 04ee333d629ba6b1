"""``spinebrain train TASK``: train a model and write it as a model package.

One sub-subcommand per task of :mod:`spinebrain.tasks` that declares a ``train`` entry (an
``add_arguments(parser)`` function such as :func:`add_spine_label_arguments`).
"""

from __future__ import annotations

from .. import RESEARCH_NOTICE
from . import command_line  # the model cards' command line (the trainers import it from here too)
from .task import add_task_subcommands


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model and write a model package",
        description="Train a model and write it as a model package (model_card.json + weights) that the "
        "pipelines and the Slicer modules can use. " + RESEARCH_NOTICE,
    )
    tasks = add_task_subcommands(parser, "train", "train a {title} model")
    from .train_datalist import add_arguments as add_datalist_arguments

    add_datalist_arguments(tasks.add_parser(
        "datalist", help="train or fine-tune a segmentation model on the cases of a datalist (the Training module's)"))


def add_spine_label_arguments(parser) -> None:
    """``spinebrain train spine-label``: the vertebra and anchor detectors and shape model of one region."""
    parser.description = (
        "Generate synthetic spines (CT, T1, T2 and random contrast; region views plus some whole and short views), "
        "train the vertebra and anchor (C2 / S1) detectors from body-centre points, fit the shape model, measure "
        "the pipeline on held-out synthetic cases and write the package to --out/<id>/.")
    parser.add_argument("--region", required=True, choices=("lumbar", "cervical"), help="spine region")
    parser.add_argument("--cases", type=int, default=150, help="synthetic training cases (default 150)")
    parser.add_argument("--validation-cases", type=int, default=30, help="held-out synthetic cases (default 30)")
    parser.add_argument("--out", required=True, help="folder to write the model package into")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the vertebra detector (anchor: +2)")
    parser.add_argument("--anchor-epochs", type=int, help="epochs of the anchor detector (default: --epochs + 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--real-data", metavar="DIR", help="also train on real scans: image + <stem>.mrk.json pairs")
    parser.add_argument("--real-validation", metavar="DIR", help="held-out real scans (same layout as --real-data): "
                        "per-epoch validation loss, each detector's best epoch, metrics in the card")
    parser.add_argument("--run-dir", metavar="DIR", help="a file named STOP here ends training after the epoch, "
                        "keeping the best weights (the package is still written); metrics.jsonl is written here")
    parser.add_argument("--init-from", metavar="MODEL", help="fine-tune this spine-label model (id or package "
                        "folder): same detectors, region, pixel size and patch sizes; the shape model is refitted")
    parser.add_argument("--id", dest="model_id", help="model id (default spine-label-<region>)")
    parser.add_argument("--patches-per-slice", type=int, default=240,
                        help="most training patches per sagittal slice and detector (default 240)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--detector", choices=("paper", "heatmap"), default="paper",
                        help="paper: the two patch CNNs (default); heatmap: the 2D U-Net trained on the real MR of "
                        "--real-mr plus generated scans (lumbar only; recipe spinebrain.spinelabel.heatmap_recipe)")
    parser.add_argument("--real-mr", metavar="DIR", help="with --detector heatmap: the data folder with splits.json "
                        "and A10-A12 (default ../shared/data)", default="../shared/data")
    parser.add_argument("--minutes", type=float, default=60.0, help="with --detector heatmap: training time")
    parser.set_defaults(run=run_spine_label)


def run_spine_label(args, progress) -> None:
    from ..device import select_device
    from ..models.package import refuse_existing_package

    default_id = "spine-label-lumbar-heatmap" if args.detector == "heatmap" else f"spine-label-{args.region}"
    refuse_existing_package(args.out, args.model_id or default_id)  # before any training, not after it

    if args.detector == "heatmap":
        if args.init_from or args.real_validation or args.run_dir:
            from ..errors import InputError

            raise InputError("--init-from, --real-validation and --run-dir train the paper detectors; drop them "
                             "for --detector heatmap (its recipe is spinebrain.spinelabel.heatmap_recipe).")
        return _run_heatmap(args, progress, str(select_device(args.device)))
    from ..spinelabel.training import TrainingOptions, train_spine_label

    options = TrainingOptions(
        region=args.region, cases=args.cases, validation_cases=args.validation_cases, epochs=args.epochs,
        seed=args.seed, device=str(select_device(args.device)), real_data=args.real_data,
        command=command_line(), model_id=args.model_id, threads=args.threads,
        patches_per_slice=args.patches_per_slice, anchor_epochs=args.anchor_epochs,
        real_validation=args.real_validation, run_dir=args.run_dir, init_from=args.init_from,
    )
    path = train_spine_label(options, args.out, progress)
    progress.result(path, kind="model")
    progress.log(f"Model package written to {path}")


def _run_heatmap(args, progress, device: str) -> None:
    import time
    from pathlib import Path

    from ..errors import InputError
    from ..spinelabel.heatmap_recipe import export_run, train_heatmap

    if args.region != "lumbar":
        raise InputError("The heatmap detector is trained for the lumbar region only; use --region lumbar.")
    run_dir = Path(args.out) / f".{args.model_id or 'spine-label-lumbar-heatmap'}-run"  # checkpoints: resumable
    train_heatmap(args.real_mr, str(run_dir), time.time() + 60.0 * args.minutes, epochs=max(args.epochs, 1),
                  generated=args.cases, seed=args.seed, device=device)
    path = export_run(str(run_dir), args.out, None, {}, command_line(),
                      model_id=args.model_id or "spine-label-lumbar-heatmap")
    progress.result(path, kind="model")
    progress.log(f"Model package written to {path} (measure it with benchmarks/eval_spine_label_real_mr.py)")


