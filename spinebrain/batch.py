"""Batch runs: every pipeline command takes files, folders or lists of cases, runs each case, carries
on past a failed case, writes one summary table and reports the failures at the end.

A pipeline command uses it like this::

    def register(subparsers):
        parser = subparsers.add_parser("segment", ...)
        add_batch_arguments(parser)
        parser.set_defaults(run=run)

    def run(args, progress):
        run_cases(args, progress, lambda case, folder: segment_case(case, folder, progress))

``process_case(case, folder)`` reads ``case.path`` (with ``case.series_uid`` for DICOM), writes its
files under ``folder`` (``OUT/<case name>/``, created on first write by :func:`spinebrain.io.atomic_path`),
announces each with ``progress.result`` and returns a dict of per-case summary fields; the key
``outputs`` (a list of paths) fills the summary's outputs column.

Where it writes: every case writes into a temporary folder beside ``OUT``
(:mod:`spinebrain.outputs.staging`); at the end the finished cases and ``summary.csv`` move into
``OUT`` together. ``summary.csv`` lists every case with its status (``ok`` or ``failed`` and the
message), so a batch with failed cases still says so in its table. When *no* case succeeds, nothing
is written at all and the command fails. A cancel, or a :class:`~spinebrain.errors.ModelError` (a
missing model fails every case alike), stops the batch and leaves ``OUT`` exactly as it was. Existing
case folders or an existing ``summary.csv`` are refused before any work unless ``--overwrite``.

Exit code of a batch (the CLI's codes): 0 when every case succeeded; 2 (bad input) when every failed
case failed on its input; 1 when any case failed for another reason; 3 when cancelled.
"""

from __future__ import annotations

import csv
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, CancelledError, InputError, ModelError, SpineBrainError
from .io import IMAGE_SUFFIXES, list_dicom_series
from .outputs import StagedOutputs, check_output_folder, table_schema_path, write_table
from .protocol import output_kind
from .tables import Column

LIST_SUFFIXES = (".txt", ".csv")
SUMMARY_NAME = "summary.csv"
SUMMARY_COLUMNS = [
    Column("case", "text"), Column("input", "text"), Column("status", "text"), Column("message", "text"),
    Column("seconds", "float", "s"), Column("outputs", "text"),
]
_IMAGE_FILE_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s != ".dcm")  # single .dcm files are DICOM slices


@dataclass(frozen=True)
class Case:
    name: str  # unique within the batch: the summary row and the output sub-folder
    path: Path  # an image file or a DICOM folder
    series_uid: str | None = None  # which series of a DICOM folder (None: the folder's only one)


@dataclass
class CaseResult:
    case: Case
    ok: bool
    message: str = ""
    seconds: float = 0.0
    fields: dict = field(default_factory=dict)
    bad_input: bool = False  # failed on its input (InputError) rather than on an internal error


@dataclass
class BatchReport:
    results: list[CaseResult]
    summary_path: Path | None  # None when no case succeeded (nothing written)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    @property
    def exit_code(self) -> int:
        if not self.failed:
            return EXIT_OK
        return EXIT_BAD_INPUT if all(r.bad_input for r in self.failed) else EXIT_FAILED

    def raise_for_failures(self) -> None:
        """Raise :class:`BatchFailed` (carrying :attr:`exit_code`) if any case failed."""
        if self.failed:
            raise BatchFailed(self)


class BatchFailed(SpineBrainError):
    """Some cases of a batch failed; the others completed and the summary table lists all of them."""

    def __init__(self, report: BatchReport):
        failed = report.failed
        listed = "; ".join(f"{r.case.name}: {r.message}" for r in failed[:5]) + ("; ..." if len(failed) > 5 else "")
        if len(failed) == len(report.results):
            text = f"All {len(failed)} cases failed ({listed}); nothing was written."
        else:
            text = (f"{len(failed)} of {len(report.results)} cases failed ({listed}). The other cases are done; "
                    f"{report.summary_path} lists every case with its status.")
        super().__init__(text)
        self.exit_code = report.exit_code
        self.report = report


# ------------------------------------------------------------------------------------------ inputs


def add_batch_arguments(parser) -> None:
    """The input and output options every pipeline subcommand shares."""
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image file (NIfTI, NRRD, MHA), DICOM folder, folder of images or of DICOM folders, or a "
        ".txt/.csv list of such paths (one per line; in a .csv the 'path' column or the first one)",
    )
    parser.add_argument("--out", "-o", required=True, metavar="FOLDER",
                        help=f"output folder: one sub-folder per case and {SUMMARY_NAME}")
    parser.add_argument("--series", metavar="UID", help="DICOM series to use in folders that hold several")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results that already exist at --out (default: refuse and write nothing)")


def expand_inputs(inputs: list[str | os.PathLike], series_uid: str | None = None) -> list[Case]:
    """Turn command-line inputs into cases.

    An image file is a case; a folder holding DICOM files is one case (its series is chosen when
    the case is read, so a folder with several series fails alone and names them); a folder of
    image files gives a case per file; a folder of such folders is looked into one level deep; a
    ``.txt``/``.csv`` file lists paths (relative ones are relative to the list). A path that does
    not exist, or a folder with no image in it, is an InputError before anything runs.
    """
    paths = []
    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise InputError(f"Input not found: {path}. Check the path and run again.")
        paths += _read_list(path) if path.is_file() and path.suffix.lower() in LIST_SUFFIXES else [path]
    cases, seen, names = [], set(), set()
    for path in paths:
        for image in _images_in(path) if path.is_dir() else [path]:
            if image.resolve() in seen:
                continue
            seen.add(image.resolve())
            series = series_uid if image.is_dir() else None  # --series picks among a DICOM folder's series only
            cases.append(Case(_unique_name(_case_name(image), names), image, series))
    if not cases:
        raise InputError("No cases to run: the inputs list no image files or folders.")
    return cases


def _read_list(list_file: Path) -> list[Path]:
    with open(list_file, newline="", encoding="utf-8-sig") as handle:
        if list_file.suffix.lower() == ".csv":
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
            column = _path_column(rows[0]) if rows else None
            if column is not None:
                rows = rows[1:]  # a header row
            entries = [row[column or 0].strip() for row in rows if len(row) > (column or 0)]
        else:
            entries = [line.strip() for line in handle]
    entries = [e for e in entries if e and not e.startswith("#")]
    paths = [Path(e) if Path(e).is_absolute() else list_file.parent / e for e in entries]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputError(f"The list {list_file.name} names paths that do not exist: {', '.join(missing[:5])}. "
                         "Fix the list (relative paths are relative to the list file) and run again.")
    return paths


def _path_column(header: list[str]) -> int | None:
    """Index of a 'path'/'image'/'input' header column, or None when the first row is already data."""
    for index, cell in enumerate(header):
        name = cell.strip().lower()
        if "path" in name or name in ("image", "input", "file"):
            return index
    return None


def _images_in(folder: Path, depth: int = 0) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.name.lower().endswith(_IMAGE_FILE_SUFFIXES)]
    others = [p for p in files if p not in images]
    found = list(images)
    if others and list_dicom_series(folder):  # DICOM files often have no suffix at all
        found.insert(0, folder)
    if not found and depth == 0:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += _images_in(sub, depth + 1)
    if not found and depth == 0:
        raise InputError(f"No image files or DICOM series found in {folder}; "
                         "point to image files (NIfTI, NRRD, MHA), DICOM folders or a folder of them.")
    return found


def _case_name(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


MAX_CASE_NAME = 100  # characters: OUT/<case>/<case>.mrk.json must fit in a file system's 255-byte names


def _unique_name(name: str, taken: set[str]) -> str:
    name = name[:MAX_CASE_NAME]
    unique, number = name, 2
    while unique.lower() in taken:  # output folders must differ on case-insensitive file systems too
        unique, number = f"{name}-{number}", number + 1
    taken.add(unique.lower())
    return unique


# --------------------------------------------------------------------------------------------- run


def prepare_cases(args) -> list[Case]:
    """The cases of a batch, after checking that ``--out`` can take their results; call it before loading models."""
    cases = expand_inputs(args.inputs, args.series)
    check_output_folder(args.out, getattr(args, "overwrite", False), _result_names(cases))
    return cases


def _result_names(cases: list[Case]) -> list[str]:
    return [c.name for c in cases] + [SUMMARY_NAME, table_schema_path(SUMMARY_NAME).name]


def run_cases(args, progress, process_case: Callable[[Case, Path], dict],
              cases: list[Case] | None = None) -> BatchReport:
    """What a pipeline command's ``run(args, progress)`` calls: expand inputs, run them, raise on failures."""
    cases = prepare_cases(args) if cases is None else cases
    report = run_batch(cases, process_case, args.out, progress, overwrite=getattr(args, "overwrite", False))
    report.raise_for_failures()
    return report


def run_batch(cases: list[Case], process_case: Callable[[Case, Path], dict], out_dir: str | os.PathLike,
              progress, overwrite: bool = False) -> BatchReport:
    """Run ``process_case`` on each case, keep going past failures, then move the results and ``summary.csv`` in.

    Each case ends with a ``case`` event (name, status, message) so Slicer can list failures as
    they happen; after the move every file is announced with a ``result`` event (the summary as
    kind ``table``).
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir, overwrite, _result_names(cases))
    results = []
    stage = StagedOutputs(out_dir, overwrite)
    try:
        for index, case in enumerate(cases):
            progress.update("batch", index / len(cases), f"case {index + 1} of {len(cases)}: {case.name}")
            result = _run_case(case, process_case, stage, progress)
            results.append(result)
            progress.emit("case", name=case.name, status="ok" if result.ok else "failed", message=result.message)
            if not result.ok:
                progress.log(f"Case {case.name} failed: {result.message}")
        done = sum(r.ok for r in results)
        progress.update("batch", 1.0, f"{done} of {len(cases)} cases done")
        if not done:
            return BatchReport(results, None)  # nothing succeeded: nothing is written
        announced = [stage.final(p) for r in results for p in r.fields.get("outputs") or []]
        announced.append(stage.final(_write_summary(results, stage.path(SUMMARY_NAME), stage.root)))
        stage.commit()
    finally:
        stage.cleanup()
    for path in announced:
        progress.result(path, kind=output_kind(path))
    progress.log(f"Wrote {done} of {len(cases)} cases and {SUMMARY_NAME} into {out_dir}")
    return BatchReport(results, out_dir / SUMMARY_NAME)


def _run_case(case: Case, process_case, stage: StagedOutputs, progress) -> CaseResult:
    start = time.perf_counter()
    try:
        fields = dict(process_case(case, stage.path(case.name)) or {})
        return CaseResult(case, True, seconds=time.perf_counter() - start, fields=fields)
    except (CancelledError, ModelError):
        raise  # a cancel stops the whole batch; a model problem would fail every case alike
    except InputError as error:
        stage.discard(case.name)  # a failed case leaves no partial files
        return CaseResult(case, False, str(error), time.perf_counter() - start, bad_input=True)
    except Exception as error:  # noqa: BLE001 -- one broken case must not stop the others
        stage.discard(case.name)
        progress.log(traceback.format_exc())
        return CaseResult(case, False, f"Internal error: {error}", time.perf_counter() - start)


def _write_summary(results: list[CaseResult], path: Path, out_dir: Path) -> Path:
    records, extra = [], {}
    for result in results:
        fields = dict(result.fields)
        outputs = [_relative(p, out_dir) for p in fields.pop("outputs", None) or []]
        for key, value in fields.items():
            extra[key] = _column_kind(value, extra.get(key))
        records.append({
            **fields, "case": result.case.name, "input": str(result.case.path),
            "status": "ok" if result.ok else "failed", "message": result.message,
            "seconds": round(result.seconds, 3), "outputs": ";".join(outputs),
        })
    reserved = {c.name for c in SUMMARY_COLUMNS}
    columns = SUMMARY_COLUMNS + [Column(name, kind or "text") for name, kind in extra.items() if name not in reserved]
    return write_table(records, columns, path)


def _column_kind(value, kind_so_far: str | None) -> str | None:
    """Column kind fitting this value and the earlier ones (int and float give float; a mix gives text)."""
    if value is None:
        return kind_so_far
    kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else (
        "float" if isinstance(value, float) else "text")
    if kind_so_far in (None, kind):
        return kind
    return "float" if {kind, kind_so_far} == {"int", "float"} else "text"


def _relative(path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
