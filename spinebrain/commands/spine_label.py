"""``spinebrain spine-label``: detect and name the vertebrae of scans; write Slicer point lists (.mrk.json).

One input with ``--out FILE.mrk.json`` writes exactly that file (and ``FILE.png`` with ``--png``).
Otherwise ``--out`` is a folder: each case gets ``OUT/<case>/<case>.mrk.json`` (+ ``.png``) and
the batch writes ``OUT/summary.csv`` (see :mod:`spinebrain.batch`). Models are loaded once.
The scan (and the ``--fixed`` points) are checked before any model loads; results are staged
beside ``--out`` and moved in only on success, never over an existing file without ``--overwrite``.
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..batch import add_batch_arguments, prepare_cases, run_cases
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
    from ..outputs import check_output_file, read_markups, staged_outputs

    out = Path(args.out)
    single_file = args.out.lower().endswith(MARKUPS_SUFFIX)
    if single_file and (len(args.inputs) != 1 or _is_folder_of_scans(args.inputs[0])):
        raise InputError("--out names one .mrk.json file, so give exactly one scan; give a folder as --out for "
                         "several scans.")
    if single_file:
        check_output_file(out, args.overwrite, companions=[_png_path(out)] if args.png else [])
    fixed = read_markups(args.fixed) if args.fixed else []
    _check_fixed_names(fixed, args.fixed)
    if fixed and not single_file and len(args.inputs) != 1:
        raise InputError("--fixed points belong to one scan; run one scan at a time with --fixed.")
    if not single_file:
        cases = prepare_cases(args)  # inputs and --out checked before any model loads
        models = _load_models(args, progress)
        run_cases(args, progress, lambda case, folder: _label_one(
            _load_scan(case.path, case.series_uid, fixed), case.path, folder / f"{case.name}{MARKUPS_SUFFIX}",
            models, fixed, args, progress), cases)
        return
    image = _load_scan(args.inputs[0], args.series, fixed)  # bad input fails here, before any model loads
    models = _load_models(args, progress)
    with staged_outputs(out.parent, args.overwrite) as stage:
        fields = _label_one(image, args.inputs[0], stage.path(out.name), models, fixed, args, progress)
    written = [stage.final(path) for path in fields["outputs"]]
    for path in written:  # the region and model go with the points: Slicer relabels with that model
        progress.result(path, kind=output_kind(path), region=fields["region"], model=fields["model"])
    progress.log("Wrote " + " and ".join(str(p) for p in written))


def _load_models(args, progress):
    load_spine_label_models = SPINE_LABEL.entry("load_models")  # the registry's entry, as the Slicer Logic uses it
    progress.update("load", 0.0, "loading the SpineLabel model(s)")
    models = load_spine_label_models(args.region, args.model, device=args.device)
    _log_model_problems(progress)
    progress.log("Model(s): " + ", ".join(f"{m.card.id} ({m.region})" for m in models))
    return models


def _log_model_problems(progress) -> None:
    """Say which model packages were skipped and why (a malformed user card is not passed over silently)."""
    from ..models import ModelRegistry

    registry = ModelRegistry()
    registry.list_models()
    for line in registry.problem_lines():
        progress.log(f"Warning: {line}")


def _load_scan(path, series_uid, fixed):
    """Read and check one scan (and that the fixed points lie on it) before any model runs on it."""
    from ..io import load_volume
    from ..validate import check_plausible, check_points_in_image

    image = load_volume(path, series_uid)
    check_plausible(image, name=f"input image {Path(path).name}")
    check_points_in_image(fixed, image, what="--fixed point")
    return image


def _check_fixed_names(fixed, path) -> None:
    from ..anatomy import VERTEBRA_LABELS

    if path and not fixed:
        raise InputError(f"--fixed {path} holds no placed point; place at least one named point in Slicer and "
                         "save again.")
    labels = [p.label for p in fixed]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise InputError(f"--fixed {path} names {twice[0]} twice; keep one point per vertebra and save again.")
    unknown = [label for label in labels if label not in VERTEBRA_LABELS]
    if unknown:
        raise InputError(f"--fixed point {unknown[0]!r} is not a vertebra name; name the points C1...C7, T1...T12, "
                         "L1...L5 or S1 (T13, L6 for transitional vertebrae).")


def _is_folder_of_scans(path) -> bool:
    """A folder holding image files or scan folders (a batch), rather than one DICOM series or nothing usable."""
    from ..batch import expand_inputs
    from ..io import list_dicom_series

    path = Path(path)
    if not path.is_dir() or list_dicom_series(path):
        return False
    try:
        return bool(expand_inputs([path]))
    except InputError:
        return False  # no scan in it: reading it as one scan gives the clear message


def _png_path(markups_path: Path) -> Path:
    return markups_path.with_name(markups_path.name[: -len(MARKUPS_SUFFIX)] + ".png")


def _label_one(image, path, markups_path: Path, models, fixed, args, progress) -> dict:
    """Label one checked scan and write its point list (and picture); returns the batch summary fields."""
    label_spine_best = SPINE_LABEL.entry("run_case")
    result = label_spine_best(image, models, fixed, progress=progress, detection_only=args.detection_only)
    if len(models) > 1:
        progress.log(f"{Path(path).name}: region auto {result.choice}")
    for warning in result.warnings:
        progress.log(f"{Path(path).name}: {warning}")
    written = write_labels(image, result, markups_path, _png_path(markups_path) if args.png else None)
    return {
        "region": result.region, "model": result.setup.model_id, "vertebrae": len(result.points),
        "labels": " ".join(p.label for p in result.points), "anchored": bool(result.labelling.anchored),
        "certainty": round(float(result.labelling.certainty), 4), "warnings": " ".join(result.warnings),
        "outputs": written,
    }


def write_labels(image, result, markups_path: Path, png_path: Path | None = None, label_image=None,
                 names=None, reference_points=None) -> list[Path]:
    """Write a labelling as a Slicer point list and, given ``png_path``, its overview picture (mid-sagittal).

    ``label_image``/``names`` and ``reference_points`` (the true centres) are drawn under the result, with a legend.
    """
    from ..outputs import write_markups

    written = [write_markups(result.points, markups_path, name="Vertebrae")]
    if png_path is not None:
        from ..outputs import save_overview_png  # matplotlib: imported only for a picture (1 s of a cold start)

        state = "anchored" if result.labelling.anchored else "not anchored: names uncertain (?)"
        title = f"SpineLabel ({result.region}): {len(result.points)} vertebrae, {state}"
        named = bool(result.labelling.assignments)  # detection-only points have no names to doubt
        written.append(save_overview_png(image, png_path, points=result.points, label_image=label_image,
                                         names=names, plane="sagittal", title=title,
                                         reference_points=reference_points,
                                         uncertain=named and not result.labelling.anchored))
    return written
