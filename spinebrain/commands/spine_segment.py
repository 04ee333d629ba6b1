"""``spinebrain spine-segment``: segment each vertebral body of MR scans as its own instance.

``--mode 2d`` (the slice-wise MR vertebral-body mode, seed 001) is available; the iterative 3D
mode is not yet, and asking for it is refused as bad input. One input with ``--out X.seg.nrrd``
writes exactly that file, ``X.csv`` beside it (and ``X.png`` with ``--png``); otherwise ``--out``
is a folder with one sub-folder per case and ``summary.csv`` (see :mod:`spinebrain.batch`).
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..batch import add_batch_arguments, run_cases
from ..errors import InputError
from ..protocol import output_kind

SEG_SUFFIX = ".seg.nrrd"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "spine-segment", help="segment vertebral bodies of MR scans as instances; writes .seg.nrrd + .csv",
        description="Segment every vertebral body of a spine MR scan slice by slice with a 2D network "
        "(sagittal slices), split the bodies into instances and name them from SpineLabel points when given "
        "(else Vertebra 1..n from the top). Writes a Slicer segmentation (.seg.nrrd), a per-vertebra table "
        "(.csv: name, volume, centroid, complete along the spine) and optionally an overview picture. "
        + RESEARCH_NOTICE,
    )
    add_batch_arguments(parser)
    parser.add_argument("--mode", default="2d", choices=("2d", "3d"),
                        help="2d: slice-wise MR vertebral bodies (available); 3d: iterative CT instances (not yet)")
    parser.add_argument("--labels", metavar="LABELS.mrk.json", help="SpineLabel points that name the bodies")
    parser.add_argument("--model", help="model package id or folder (default: the installed 2D MR model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--png", action="store_true", help="also write an overview picture (sagittal)")
    parser.set_defaults(run=run)


def run(args, progress) -> None:
    from ..outputs import read_markups
    from ..spinesegment.pipeline2d import load_model_2d

    if args.mode == "3d":
        raise InputError("The 3D iterative vertebra mode is not available yet; use --mode 2d (MR vertebral "
                         "bodies) for now.")
    single_file = args.out.lower().endswith(SEG_SUFFIX)
    if single_file and len(args.inputs) != 1:
        raise InputError("--out names one .seg.nrrd file, so give exactly one scan; give a folder as --out for "
                         "several scans.")
    points = read_markups(args.labels) if args.labels else None
    if points is not None and not single_file and len(args.inputs) != 1:
        raise InputError("--labels belong to one scan; run one scan at a time with --labels.")
    progress.update("load", 0.0, "loading the 2D MR vertebral-body model")
    model = load_model_2d(args.model, device=args.device)
    progress.log(f"Model: {model.card.id} ({model.card.network['architecture']})")
    if single_file:
        _segment_one(args.inputs[0], args.series, Path(args.out), model, points, args.png, progress)
        return
    run_cases(args, progress, lambda case, folder: _segment_one(
        case.path, case.series_uid, folder / f"{case.name}{SEG_SUFFIX}", model, points, args.png, progress))


def _segment_one(path, series_uid, seg_path: Path, model, points, png: bool, progress) -> dict:
    from ..io import load_volume
    from ..spinesegment.pipeline2d import segment_bodies, write_results

    image = load_volume(path, series_uid)
    if points:
        _check_points_inside(image, points)
    result = segment_bodies(image, model, points, progress=progress)
    if not result.vertebrae:
        progress.log(f"{Path(path).name}: no vertebral body found")
    png_path = seg_path.with_name(seg_path.name[: -len(SEG_SUFFIX)] + ".png") if png else None
    written = write_results(image, result, seg_path, png_path)
    for written_path in written:
        progress.result(written_path, kind=output_kind(written_path))
    return {"vertebrae": len(result.vertebrae), "names": " ".join(v.name for v in result.vertebrae),
            "complete": sum(v.complete for v in result.vertebrae), "outputs": written}


def _check_points_inside(image, points) -> None:
    """Labels of another scan would name bodies at random: refuse when no point lies in the scan."""
    import numpy as np

    from ..geometry import ras_to_index

    size = np.array(image.GetSize())
    inside = [p for p in points if np.all((ras_to_index(image, p.ras) > -0.5) & (ras_to_index(image, p.ras) < size - 0.5))]
    if not inside:
        raise InputError("None of the --labels points lies inside the scan; give the SpineLabel points made for "
                         "this scan.")
