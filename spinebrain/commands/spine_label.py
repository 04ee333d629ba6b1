"""``spinebrain spine-label``: detect and name the vertebrae of scans; write Slicer point lists (.mrk.json).

One input with ``--out FILE.mrk.json`` writes exactly that file (and ``FILE.png`` with ``--png``).
Otherwise ``--out`` is a folder: each case gets ``OUT/<case>/<case>.mrk.json`` (+ ``.png``) and
the batch writes ``OUT/summary.csv`` (see :mod:`spinebrain.batch`). Models are loaded once.
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..batch import add_batch_arguments, run_cases
from ..errors import InputError
from ..protocol import output_kind
from ..tasks import SPINE_LABEL

MARKUPS_SUFFIX = SPINE_LABEL.output_suffix


def add_arguments(parser) -> None:
    """Fill ``spinebrain spine-label``'s parser (the task registry creates it, see :mod:`spinebrain.tasks`)."""
    parser.description = (
        "Detect the vertebrae of each scan with two CNN detectors on sagittal slices and name them "
        "with a graphical shape model (Forsberg 2017). Writes one Slicer point list (.mrk.json) per scan, each "
        "point at the centre of a vertebral body with its confidence. " + RESEARCH_NOTICE)
    add_batch_arguments(parser)
    parser.add_argument("--region", default="auto", choices=("auto", *SPINE_LABEL.regions),
                        help="spine region; auto runs every installed region model and keeps the one the evidence favours "
                        "(anchor, vertebra spacing that fits the region, levels named, certainty)")
    parser.add_argument("--model", help="model package id or folder (default: the installed one for the region)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--png", action="store_true", help="also write an overview picture (mid-sagittal slice)")
    parser.add_argument("--detection-only", action="store_true",
                        help="write the detected vertebrae without names (for scans showing too little spine)")
    parser.add_argument("--fixed", metavar="POINTS.mrk.json",
                        help="named points to hold fixed (every point in the file); the rest are named around them")
    parser.set_defaults(run=run)


def run(args, progress) -> None:
    from ..outputs import read_markups
    from ..spinelabel.pipeline import load_spine_label_models

    single_file = args.out.lower().endswith(MARKUPS_SUFFIX)
    if single_file and (len(args.inputs) != 1 or Path(args.inputs[0]).is_dir() and not _is_dicom(args.inputs[0])):
        raise InputError("--out names one .mrk.json file, so give exactly one scan; give a folder as --out for "
                         "several scans.")
    fixed = read_markups(args.fixed) if args.fixed else []
    if fixed and not single_file and len(args.inputs) != 1:
        raise InputError("--fixed points belong to one scan; run one scan at a time with --fixed.")
    progress.update("load", 0.0, "loading the SpineLabel model(s)")
    models = load_spine_label_models(args.region, args.model, device=args.device)
    _log_model_problems(progress)
    progress.log("Model(s): " + ", ".join(f"{m.card.id} ({m.region})" for m in models))
    if single_file:
        _label_one(args.inputs[0], args.series, Path(args.out), models, fixed, args, progress)
        return
    run_cases(args, progress, lambda case, folder: _label_one(
        case.path, case.series_uid, folder / f"{case.name}{MARKUPS_SUFFIX}", models, fixed, args, progress))


def _log_model_problems(progress) -> None:
    """Say which model packages were skipped and why (a malformed user card is not passed over silently)."""
    from ..models import ModelRegistry

    registry = ModelRegistry()
    registry.list_models()
    for line in registry.problem_lines():
        progress.log(f"Warning: {line}")


def _is_dicom(path) -> bool:
    from ..io import list_dicom_series

    return bool(list_dicom_series(path))


def _label_one(path, series_uid, markups_path: Path, models, fixed, args, progress) -> dict:
    """Label one scan and write its point list (and picture); returns the batch summary fields."""
    from ..io import load_volume
    from ..spinelabel.pipeline import label_spine_best

    image = load_volume(path, series_uid)
    result = label_spine_best(image, models, fixed, progress=progress, detection_only=args.detection_only)
    if len(models) > 1:
        progress.log(f"{Path(path).name}: region auto {result.choice}")
    for warning in result.warnings:
        progress.log(f"{Path(path).name}: {warning}")
    png = markups_path.with_name(markups_path.name[: -len(MARKUPS_SUFFIX)] + ".png") if args.png else None
    written = write_labels(image, result, markups_path, png)
    for path in written:  # the region and model go with the points: Slicer relabels with that model
        progress.result(path, kind=output_kind(path), region=result.region, model=result.setup.model_id)
    return {
        "region": result.region, "vertebrae": len(result.points),
        "labels": " ".join(p.label for p in result.points), "anchored": bool(result.labelling.anchored),
        "certainty": round(float(result.labelling.certainty), 4), "warnings": " ".join(result.warnings),
        "outputs": written,
    }


def write_labels(image, result, markups_path: Path, png_path: Path | None = None, label_image=None,
                 names=None) -> list[Path]:
    """Write a labelling as a Slicer point list and, given ``png_path``, its overview picture (mid-sagittal)."""
    from ..outputs import write_markups
    from ..pictures import save_overview_png

    written = [write_markups(result.points, markups_path, name="Vertebrae")]
    if png_path is not None:
        state = "anchored" if result.labelling.anchored else "not anchored"
        title = f"SpineLabel ({result.region}): {len(result.points)} vertebrae, {state}"
        written.append(save_overview_png(image, png_path, points=result.points, label_image=label_image,
                                         names=names, plane="sagittal", title=title))
    return written
