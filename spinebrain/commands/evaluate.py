"""``spinebrain evaluate TASK``: compare results with references and print the paper's metrics.

``evaluate spine-label`` scores predicted vertebra points (``.mrk.json``) against reference points
or a vertebra label map (VerSe values, or the names in the label map's ``.json`` sidecar) with the
definitions of Forsberg 2017 (:mod:`spinebrain.spinelabel.metrics`): per case and pooled per
vertebra. Folders are matched by case name (``<case>.mrk.json`` or ``<case>/<case>.mrk.json`` for
predictions; ``<case>.mrk.json`` or ``<case>.nii.gz`` / ``.nrrd`` / ``.mha`` for references).
"""

from __future__ import annotations

import math
from pathlib import Path

from .. import RESEARCH_NOTICE
from ..errors import InputError
from ..outputs import check_output_file
from ..tables import Column
from .task import add_task_subcommands

MARKUPS_SUFFIX = ".mrk.json"
LABEL_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")

#: (key in the metrics dict, column name, kind, unit, how to print it)
METRIC_ROWS = [
    ("sensitivity", "detection sensitivity", "float", "%", "percent"),
    ("precision", "detection precision", "float", "%", "percent"),
    ("accuracy", "detection accuracy", "float", "%", "percent"),
    ("localisation_mean_mm", "localisation error mean", "float", "mm", "mm"),
    ("localisation_sd_mm", "localisation error SD", "float", "mm", "mm"),
    ("labeling_accuracy", "labeling accuracy", "float", "%", "percent"),
    ("identification_rate", "identification rate", "float", "%", "percent"),
    ("tp", "true positives", "int", "", "count"),
    ("fp", "false positives", "int", "", "count"),
    ("fn", "false negatives", "int", "", "count"),
]
COLUMNS = [Column("case", "text")] + [Column(name, kind, unit) for _, name, kind, unit, _ in METRIC_ROWS]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score results against references (paper metrics)",
        description="Compare pipeline results with reference annotations and print the metrics table. "
        + RESEARCH_NOTICE,
    )
    add_task_subcommands(parser, "evaluate", "score {title} results")


def add_spine_label_arguments(spine) -> None:
    """``spinebrain evaluate spine-label``: detection, localisation and labeling metrics."""
    spine.description = (
        "Detection sensitivity / precision / accuracy, localisation error (mean and SD, mm), labeling "
        "accuracy and identification rate of predicted vertebra points, as defined in Forsberg 2017.")
    spine.add_argument("--pred", required=True, help="predicted points: a .mrk.json file or a folder of them")
    spine.add_argument("--ref", required=True,
                       help="reference: a .mrk.json of vertebra centres, a vertebra label map, or a folder of them")
    spine.add_argument("--partial", default="",
                       help="comma-separated reference vertebrae that are only partly visible (not counted as "
                       "missed), e.g. L1,S1")
    spine.add_argument("--out", default="spine_label_evaluation.csv",
                       help="CSV with one row per case and a pooled row (default spine_label_evaluation.csv in the "
                       "current folder; the command prints where it wrote it)")
    spine.add_argument("--overwrite", action="store_true", help="replace an existing --out table")
    spine.set_defaults(run=run_spine_label)


def run_spine_label(args, progress) -> None:
    from ..outputs import write_table
    from ..spinelabel.metrics import aggregate

    out = check_output_file(args.out, args.overwrite, option="--out")
    if not out.name.lower().endswith((".csv", ".tsv")):
        raise InputError(f"--out {out} is not a .csv or .tsv file name; give a table name such as evaluation.csv.")
    pairs = match_cases(Path(args.pred), Path(args.ref))
    partial = _partial_names(args.partial)
    results, records = [], []
    for number, (name, pred, ref) in enumerate(pairs):
        progress.update("evaluate", number / len(pairs), name)
        result = evaluate_case(pred, ref, partial)
        results.append(result)
        records.append(_record(name, result))
    pooled = aggregate(results)
    records.append(_record("pooled (per vertebra)", pooled))
    path = write_table(records, COLUMNS, out)
    progress.update("evaluate", 1.0, f"{len(pairs)} case(s)")
    print(format_table(pooled, len(pairs)))
    progress.result(path, kind="table")
    progress.log(f"Wrote the per-case table to {path.resolve()}")


def _partial_names(text: str) -> frozenset:
    from ..anatomy import VERTEBRA_LABELS

    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(names - set(VERTEBRA_LABELS))
    if unknown:
        raise InputError(f"--partial {unknown[0]!r} is not a vertebra name; give names like L1,S1 "
                         "(C1...C7, T1...T12, L1...L5, S1, T13, L6).")
    return names


def evaluate_case(pred_path: Path, ref_path: Path, partial=frozenset()) -> dict:
    """Metrics of one predicted point list against one reference file."""
    from ..outputs import read_markups
    from ..spinelabel.metrics import evaluate_points

    from ..validate import check_reference_labels, check_reference_points

    predicted = read_markups(pred_path)
    if ref_path.name.lower().endswith(MARKUPS_SUFFIX):
        reference = read_markups(ref_path)
        check_reference_points(predicted, reference, pred_path, ref_path)
        return evaluate_points(predicted, ref_points=reference, ref_partial=partial)
    labels, names = _read_reference_labels(ref_path)
    check_reference_labels(predicted, labels, names, pred_path, ref_path)
    return evaluate_points(predicted, ref_labels=labels, ref_partial=partial, ref_names=names)


def _read_reference_labels(path: Path):
    from ..io import read_image
    from ..outputs import label_map_sidecar, read_label_map, read_segmentation

    if not path.is_file():
        raise InputError(f"Reference not found: {path}. Check the path and run again.")
    if path.name.lower().endswith(".seg.nrrd"):
        return read_segmentation(path)
    if label_map_sidecar(path).is_file():
        return read_label_map(path)
    return read_image(path), None  # VerSe values


def match_cases(pred: Path, ref: Path) -> list[tuple[str, Path, Path]]:
    """(case name, prediction file, reference file) for a file pair or two folders matched by case name."""
    for path in (pred, ref):
        if not path.exists():
            raise InputError(f"{path} does not exist; check the path and run again.")
    if pred.is_file() and ref.is_file():
        if pred.resolve() == ref.resolve():
            raise InputError(f"--pred and --ref are the same file ({pred.name}); give the reference annotation as "
                             "--ref.")
        if not pred.name.lower().endswith(MARKUPS_SUFFIX):
            raise InputError(f"--pred {pred.name} is not a .mrk.json point list; give the points 'spinebrain "
                             "spine-label' wrote.")
        if not _is_reference(ref):
            raise InputError(f"--ref {ref.name} is neither a .mrk.json nor a label map (.seg.nrrd, .nii.gz, .nrrd, "
                             ".mha); give the reference vertebra centres or label map.")
        return [(_stem(pred), pred, ref)]
    if pred.is_file() != ref.is_file():
        raise InputError("Give --pred and --ref both as files or both as folders.")
    predictions = {_stem(p): p for p in pred.rglob(f"*{MARKUPS_SUFFIX}")}
    references = {_stem(p): p for p in ref.iterdir() if p.is_file() and _is_reference(p)}
    common = sorted(set(predictions) & set(references))
    if not common:
        raise InputError(f"No case name is in both {pred} and {ref}; name each reference like its prediction "
                         "(case.mrk.json with case.mrk.json or case.nii.gz).")
    return [(name, predictions[name], references[name]) for name in common]


def _is_reference(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((MARKUPS_SUFFIX, *LABEL_SUFFIXES))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (MARKUPS_SUFFIX, *LABEL_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _record(name: str, metrics: dict) -> dict:
    record = {"case": name}
    for key, column, _, _, style in METRIC_ROWS:
        value = metrics[key]
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif style == "percent":
            value = round(100.0 * value, 2)
        elif style == "mm":
            value = round(value, 3)
        record[column] = value
    return record


def format_table(metrics: dict, cases: int) -> str:
    """The metrics as a plain-text table with units (pooled per vertebra)."""
    lines = [f"SpineLabel evaluation, {cases} case(s), pooled per vertebra", f"{'metric':<28} value"]
    for key, column, _, unit, style in METRIC_ROWS:
        value = metrics[key]
        if isinstance(value, float) and math.isnan(value):
            text = "n/a"
        elif style == "percent":
            text = f"{100.0 * value:.1f} %"
        elif style == "mm":
            text = f"{value:.2f} mm"
        else:
            text = str(value)
        lines.append(f"{column:<28} {text}")
    return "\n".join(lines)
