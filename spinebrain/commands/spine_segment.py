"""``spinebrain spine-segment``: segment each vertebral body of MR scans as its own instance.

``--mode 2d`` (the slice-wise MR vertebral-body mode, seed 001) is available; the iterative 3D
mode is not yet, and asking for it is refused as bad input. One input with ``--out X.seg.nrrd``
writes exactly that file, ``X.csv`` beside it (and ``X.png`` with ``--png``); otherwise ``--out``
is a folder with one sub-folder per case and ``summary.csv`` (see :mod:`spinebrain.batch`).
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..batch import add_batch_arguments, prepare_cases, run_cases
from ..errors import InputError
from ..protocol import output_kind

SEG_SUFFIX = ".seg.nrrd"


def add_arguments(parser) -> None:
    """Fill ``spinebrain spine-segment``'s parser (the task registry creates it, see :mod:`spinebrain.tasks`)."""
    parser.description = (
        "Segment every vertebral body of a spine MR scan slice by slice with a 2D network "
        "(sagittal slices), split the bodies into instances and name them from SpineLabel points when given "
        "(else Vertebra 1..n from the top). Writes a Slicer segmentation (.seg.nrrd), a per-vertebra table "
        "(.csv: name, volume, centroid, complete along the spine) and optionally an overview picture. "
        + RESEARCH_NOTICE)
    add_batch_arguments(parser)
    parser.add_argument("--mode", default="2d", choices=("2d", "3d"),
                        help="2d: slice-wise MR vertebral bodies; 3d: iterative whole-vertebra instances on CT with "
                             "completeness (seed 002)")
    parser.add_argument("--direction", default="down", choices=("down", "up"),
                        help="3d mode: traverse the spine top-down or bottom-up (default down)")
    parser.add_argument("--labels", metavar="LABELS.mrk.json", help="SpineLabel points that name the bodies")
    parser.add_argument("--model", help="model package id or folder (default: the installed 2D MR model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--png", action="store_true", help="also write an overview picture (sagittal)")
    parser.set_defaults(run=run)


def run(args, progress) -> None:
    from ..outputs import check_output_file, read_markups, staged_outputs

    out = Path(args.out)
    single_file = args.out.lower().endswith(SEG_SUFFIX)
    if single_file and len(args.inputs) != 1:
        raise InputError("--out names one .seg.nrrd file, so give exactly one scan; give a folder as --out for "
                         "several scans.")
    points = read_markups(args.labels) if args.labels else None
    if points is not None and not single_file and len(args.inputs) != 1:
        raise InputError("--labels belong to one scan; run one scan at a time with --labels.")
    if not single_file:
        cases = prepare_cases(args)  # inputs and --out checked before the model loads
        model = _load_model(args, progress)
        segment = _segment_one if args.mode == "2d" else _segment_one_3d(args.direction)
        run_cases(args, progress, lambda case, folder: segment(
            _load_scan(case.path, case.series_uid, points), folder / f"{case.name}{SEG_SUFFIX}", model, points,
            args.png, progress), cases)
        return
    companions = [_companion(out, suffix) for suffix in (".csv", ".schema.csv") + ((".png",) if args.png else ())]
    check_output_file(out, args.overwrite, companions=companions)
    image = _load_scan(args.inputs[0], args.series, points)  # bad input fails here, before the model loads
    if args.mode == "3d":
        from ..spinesegment.cli3d import run_single
        from ..spinesegment.pipeline3d import check_ct

        check_ct(image)  # an MR scan is refused before the CT model loads
        return run_single(args, image, points, out, progress)
    model = _load_model(args, progress)
    with staged_outputs(out.parent, args.overwrite) as stage:
        fields = _segment_one(image, stage.path(out.name), model, points, args.png, progress)
    for path in (stage.final(p) for p in fields["outputs"]):
        progress.result(path, kind=output_kind(path))


def _segment_one_3d(direction: str):
    from ..spinesegment.cli3d import segment_one

    return lambda image, seg_path, model, points, png, progress: segment_one(image, seg_path, model, points, png,
                                                                             progress, direction)


def _load_model(args, progress):
    if args.mode == "3d":
        from ..spinesegment.cli3d import load_model

        return load_model(args, progress)
    from ..spinesegment.pipeline2d import load_model_2d

    progress.update("load", 0.0, "loading the 2D MR vertebral-body model")
    model = load_model_2d(args.model, device=args.device)
    progress.log(f"Model: {model.card.id} ({model.card.network['architecture']})")
    return model


def _load_scan(path, series_uid, points):
    """Read and check one scan (and that the --labels points lie on it) before the model runs on it."""
    from ..io import load_volume
    from ..validate import check_plausible, check_points_in_image

    image = load_volume(path, series_uid)
    check_plausible(image, name=f"input image {Path(path).name}")
    if points:
        check_points_in_image(points, image, what="--labels point")
    return image


def _companion(seg_path: Path, suffix: str) -> Path:
    return seg_path.with_name(seg_path.name[: -len(SEG_SUFFIX)] + suffix)


def _segment_one(image, seg_path: Path, model, points, png: bool, progress) -> dict:
    from ..spinesegment.pipeline2d import segment_bodies, write_results

    result = segment_bodies(image, model, points, progress=progress)
    if not result.vertebrae:
        progress.log(f"{seg_path.name}: no vertebral body found")
    written = write_results(image, result, seg_path, _companion(seg_path, ".png") if png else None)
    return {"vertebrae": len(result.vertebrae), "names": " ".join(v.name for v in result.vertebrae),
            "complete": sum(v.complete for v in result.vertebrae), "outputs": written}


def add_train_arguments(parser) -> None:
    """``spinebrain train spine-segment``: the 2D MR model on the real scans of splits.json (``--mode 3d``: the
    3D CT instance model on generated CT and CT synthesised from the VerSe label map in --data)."""
    parser.add_argument("--mode", default="2d", choices=("2d", "3d"))
    parser.add_argument("--data", help="folder with splits.json and the A10-A12 MR sets (2d, required) or the "
                                       "shared data folder with the A8 VerSe label map (3d, optional)")
    parser.add_argument("--cache", help="3d: folder of prepared cases (default RUN/cache)")
    parser.add_argument("--synthetic", default="0:60", help="3d: generated CT seeds FIRST:LAST (default 0:60)")
    parser.add_argument("--validation-cases", type=int, default=6, help="3d: generated cases for the best checkpoint")
    parser.add_argument("--spacing", type=float, default=4.0, help="3d: model grid (mm, default 4)")
    parser.add_argument("--patch", type=int, default=32, help="3d: patch side (voxels, default 32)")
    parser.add_argument("--filters", type=int, default=12, help="3d: filters per level (default 12; paper 64)")
    parser.add_argument("--levels", type=int, default=3, help="3d: pooling levels (default 3)")
    parser.add_argument("--samples", type=int, default=40, help="3d: patches per epoch (default 40)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, history, best weights); resumes")
    parser.add_argument("--architecture", default="unet", choices=("unet", "fpn", "resunet"))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--minutes", type=float, help="stop after this many minutes")
    parser.set_defaults(run=_train)


def _train(args, progress) -> None:
    import time

    if args.mode == "3d":
        from ..spinesegment.cli3d import train as train_3d

        return train_3d(args, progress)
    if not args.data:
        raise InputError("Give --data: the folder with splits.json and the A10-A12 MR sets.")
    from ..spinesegment.engine2d import EARLY_STOP_CASES, train
    from ..spinesegment.training2d import TrainOptions

    train(TrainOptions(data_root=args.data, out_dir=args.out, architecture=args.architecture, max_epochs=args.epochs,
                       crop=args.crop, validation_cases=list(EARLY_STOP_CASES),
                       stop_at=None if args.minutes is None else time.time() + 60 * args.minutes))


def add_evaluate_arguments(parser) -> None:
    """``spinebrain evaluate spine-segment``: per-body Dice etc. on a splits.json part of the real MR scans."""
    parser.add_argument("--mode", default="2d", choices=("2d", "3d"))
    parser.add_argument("--data", help="folder with splits.json and the A10-A12 MR sets (2d, required); 3d: the "
                                       "shared data folder (real CT crops A3, A5, A6)")
    parser.add_argument("--model", help="model package id or folder (default: the installed model of the mode)")
    parser.add_argument("--part", default="validation", choices=("validation", "train"))
    parser.add_argument("--synthetic", help="3d: generated CT seeds FIRST:LAST to evaluate on (e.g. 9000:9010)")
    parser.set_defaults(run=_evaluate)


def _evaluate(args, progress) -> None:
    if args.mode == "3d":
        from ..spinesegment.cli3d import evaluate

        return evaluate(args, progress)
    if not args.data:
        raise InputError("Give --data: the folder with splits.json and the A10-A12 MR sets.")
    from ..spinesegment.evaluation2d import evaluate
    from ..spinesegment.pipeline2d import load_model_2d
    from ..spinesegment.training2d import split_cases

    evaluate(load_model_2d(args.model, device="cpu"), split_cases(args.data, args.part), [{}], log=progress.log)
