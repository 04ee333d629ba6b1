"""``spinebrain demo``: the README's first command, runnable on a fresh machine with no data.

Generates a synthetic lumbar CT with known vertebrae (or reads the user's scan with ``--input``),
reads it back the way a user's file is read, resamples it to 1 mm, runs SpineLabel with the
bundled model, and writes what 3D Slicer opens: the volumes, the labelled vertebra centres
(.mrk.json), a labelled overview picture (.png) and -- for the generated scan -- the reference
files and a table scoring the labels against them. Everything is staged beside ``--out`` and moved
in only when the whole demo succeeds: a failure or a cancel leaves ``--out`` as it was.
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..io import load_volume, write_image
from ..outputs import check_output_folder, staged_outputs
from ..protocol import output_kind
from ..resample import resample_to_spacing
from ..validate import argparse_type, check_plausible, check_seed
from .spine_label import write_labels

DEMO_SPACING_MM = (1.0, 1.0, 1.0)


#: What the demo writes into --out (checked before any work: never replaced without --overwrite).
DEMO_OUTPUTS = ("scan_1mm.nrrd", "labels.mrk.json", "labels_overview.png", "labels_score.csv",
                "labels_score.schema.csv", "reference")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="label the vertebrae of a generated lumbar CT (no data needed) and write Slicer-format outputs",
        description="Generate a synthetic lumbar CT with known vertebrae (or read your own scan with --input), "
        "resample it to 1 mm, label its vertebrae with the bundled SpineLabel model and write Slicer-format "
        "outputs, an overview PNG and (for the generated scan) a score against the reference into --out. "
        + RESEARCH_NOTICE,
    )
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--input", help="use this scan (NIfTI, NRRD, MHA or DICOM folder) instead of a generated one")
    parser.add_argument("--series", help="DICOM series UID when --input is a folder with several series")
    parser.add_argument("--seed", type=argparse_type(check_seed), default=0,
                        help="seed of the generated scan, 0 to 2**32-1 (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier demo in --out (default: refuse and write nothing)")
    parser.set_defaults(run=run)


def run(args, progress) -> None:
    out = check_output_folder(args.out, args.overwrite, DEMO_OUTPUTS)
    if args.input:  # read and check the user's scan before anything else, so bad input fails at once
        progress.update("read", 0.05, f"reading {args.input}")
        image = load_volume(args.input, args.series)
        check_plausible(image, name=f"input image {Path(args.input).name}")
    with staged_outputs(out, args.overwrite) as stage:
        if args.input:
            case, written = None, []
        else:
            image, case, written = _generated_scan(args.seed, stage.path("reference"), progress)
        progress.update("resample", 0.3, "resampling to 1 mm isotropic")
        written.append(write_image(resample_to_spacing(image, DEMO_SPACING_MM), stage.path("scan_1mm.nrrd")))
        result = _label(image, region="auto" if case is None else "lumbar", progress=progress)
        overlay = {} if case is None else {"label_image": case.labels, "names": case.label_names(),
                                           "reference_points": case.points}
        written += write_labels(image, result, stage.path("labels.mrk.json"), stage.path("labels_overview.png"),
                                **overlay)
        if case is not None:
            written.append(_score(case, result, stage.path(""), progress))
    written = [stage.final(path) for path in written]
    for path in written:
        progress.result(path, kind=output_kind(path))
    progress.update("done", 1.0, f"wrote the outputs to {out}")
    progress.log("\n".join(["Demo outputs (drag and drop them into 3D Slicer):", *[f"  {p}" for p in written]]))


def _generated_scan(seed: int, reference_folder: Path, progress):
    from ..synth.cases import write_spine_case
    from ..synth.spine import generate_spine

    progress.update("generate", 0.02, "generating a synthetic lumbar CT")
    case = generate_spine(seed=seed, modality="ct", view="lumbar", orientation="sagittal")
    reference_files = write_spine_case(case, reference_folder)
    progress.update("read", 0.2, f"reading {reference_files[0].name} back")
    return load_volume(reference_files[0]), case, reference_files


def _label(image, region: str, progress):
    from ..spinelabel.pipeline import label_spine_best, load_spine_label_models

    progress.update("label", 0.4, "labelling the vertebrae")
    result = label_spine_best(image, load_spine_label_models(region), progress=progress)
    for warning in result.warnings:
        progress.log(warning)
    return result


def _score(case, result, out: Path, progress) -> Path:
    """Score the labels against the generated reference with the paper's metrics (a table with units)."""
    from ..outputs import write_table
    from ..spinelabel.metrics import evaluate_points
    from ..tables import Column

    partial = {v.name for v in case.vertebrae if not v.complete}
    scores = evaluate_points(result.points, ref_points=case.points, ref_labels=case.labels,
                             ref_partial=partial, ref_names=case.label_names())
    rows = [
        {"metric": "detection sensitivity", "value": 100 * scores["sensitivity"], "unit": "%"},
        {"metric": "detection precision", "value": 100 * scores["precision"], "unit": "%"},
        {"metric": "localisation error (mean)", "value": scores["localisation_mean_mm"], "unit": "mm"},
        {"metric": "labeling accuracy", "value": 100 * scores["labeling_accuracy"], "unit": "%"},
    ]
    progress.log("Against the reference: " + ", ".join(f"{r['metric']} {r['value']:.1f} {r['unit']}" for r in rows))
    columns = [Column("metric", "text"), Column("value", "float"), Column("unit", "text")]
    return write_table(rows, columns, out / "labels_score.csv")
