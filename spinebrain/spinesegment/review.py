"""The per-vertebra review records of a SpineSegment result, whichever mode made it (no Qt, no MRML).

One record per vertebra: name, label value, complete, completeness probability, volume (mm³) and
centroid (RAS, mm). They come from an in-process result (anything with ``label_image``, ``names``
and ``vertebrae``) or from the files the command wrote (``X.seg.nrrd`` + ``X.csv``). The 2D MR
mode judges completeness by a rule (a body touching the end of the scan along the spine is
incomplete) and has no probability: its cell stays empty rather than showing a made-up number.
The Slicer Logic keeps these records in a table node and on the segments' tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..tables import Column

NAME, VALUE, COMPLETE, PROBABILITY, VOLUME = "name", "label value", "complete", "completeness probability", "volume"
CENTROID = ("centroid R", "centroid A", "centroid S")
#: The review table's columns (the module's table node; ``complete`` is the one the user edits).
REVIEW_COLUMNS = [Column(NAME, "text"), Column(COMPLETE, "bool"), Column(PROBABILITY, "float"),
                  Column(VOLUME, "float", "mm³", decimals=1), *(Column(c, "float", "mm", decimals=1) for c in CENTROID),
                  Column(VALUE, "int")]
SEG_SUFFIX = ".seg.nrrd"


@dataclass
class ReviewResult:
    """A segmentation ready for review: label image, value -> name, and one record per vertebra."""

    label_image: sitk.Image
    names: dict[int, str]
    records: list[dict]


def record(name: str, value: int, complete: bool, volume_mm3: float, centroid_ras, probability=None) -> dict:
    probability = None if probability is None or not math.isfinite(float(probability)) else float(probability)
    return {NAME: name, VALUE: int(value), COMPLETE: bool(complete), PROBABILITY: probability,
            VOLUME: float(volume_mm3), **{key: float(v) for key, v in zip(CENTROID, centroid_ras, strict=True)}}


def from_result(result) -> ReviewResult:
    """Records of an in-process result (2D ``Segmentation2D`` or any result with the same fields)."""
    records = [record(v.name, v.value, v.complete, v.volume_mm3, v.centroid_ras,
                      _probability(v)) for v in result.vertebrae]
    return ReviewResult(result.label_image, dict(result.names), records)


def _probability(vertebra) -> float | None:
    """The completeness probability of a 3D vertebra (``complete_probability``); the 2D mode has none."""
    return getattr(vertebra, "complete_probability", None)


def write_segmentation_and_table(result, records: list[dict], columns, seg_path: str | Path) -> list:
    """What both modes write: ``X.seg.nrrd`` (segment names) and the per-vertebra table ``X.csv`` beside it
    (``records`` in ``columns``); a path without the ``.seg.nrrd`` suffix names the table after its stem."""
    from ..outputs import write_segmentation, write_table

    seg_path = Path(seg_path)
    stem = seg_path.name[: -len(SEG_SUFFIX)] if seg_path.name.endswith(SEG_SUFFIX) else seg_path.stem
    return [write_segmentation(result.label_image, result.names, seg_path),
            write_table(records, columns, seg_path.with_name(stem + ".csv"))]


def from_files(seg_path: str | Path) -> ReviewResult:
    """Records of the command's outputs: the ``.seg.nrrd`` and the ``.csv`` table beside it."""
    from ..outputs import read_segmentation, read_table

    seg_path = Path(seg_path)
    label_image, names = read_segmentation(seg_path)
    table = seg_path.with_name(seg_path.name[: -len(SEG_SUFFIX)] + ".csv")
    basic = [c for c in REVIEW_COLUMNS if c.name != PROBABILITY]
    rows = read_table(table, basic)
    try:  # the 2D mode writes no probability column
        probabilities = [row[PROBABILITY] for row in read_table(table, [c for c in REVIEW_COLUMNS
                                                                        if c.name == PROBABILITY])]
    except InputError:
        probabilities = [None] * len(rows)
    records = [record(row[NAME], row[VALUE], bool(row[COMPLETE]), row[VOLUME] or 0.0,
                      [row[c] for c in CENTROID], probability) for row, probability in zip(rows, probabilities)]
    return ReviewResult(label_image, names, records)


def centroid(records: list[dict], row: int) -> tuple[float, float, float]:
    """RAS centroid of record ``row``; InputError when there is no such row or it has no centroid."""
    if not 0 <= row < len(records):
        raise InputError(f"The review table has no row {row + 1}; choose one of its {len(records)} rows.")
    ras = tuple(records[row][c] for c in CENTROID)
    if any(v is None or not math.isfinite(v) for v in ras):
        raise InputError(f"{records[row][NAME]} has no centroid (it is empty); nothing to show.")
    return ras
