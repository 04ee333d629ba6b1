"""Tables (``.csv`` / ``.tsv``) with Slicer's schema sidecar giving each column's type and unit.

The first row is the header, with units in brackets (``volume (mm³)``), and nothing else -- no
comment lines, so any CSV reader takes them. Beside it goes Slicer's own table schema sidecar
(``name.schema.csv``), so Slicer loads typed columns. Floats are rounded to their column's
``decimals`` (:class:`spinebrain.tables.Column`): a table of volumes reads 34567.891, not 34567.89123456789.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from .. import RESEARCH_NOTICE
from ..errors import InputError
from ..io import atomic_path
from ..tables import Column, column_title

_SLICER_TYPES = {"text": "string", "bool": "bit", "float": "double", "int": "int"}


def write_table(records: list[dict], columns: list[Column], path: str | os.PathLike) -> Path:
    """Write records as CSV or TSV (by suffix) plus Slicer's ``.schema`` sidecar with types and units.

    Missing or ``None`` values become empty cells; booleans are written 1/0 (Slicer's "bit").
    """
    path = Path(path)
    delimiter = _delimiter(path)
    rows = [[column_title(c) for c in columns]]
    rows += [[_cell(record.get(c.name), c) for c in columns] for record in records]
    schema = [["columnName", "type", "unitLabel", "description"]]
    schema += [
        [column_title(c), _SLICER_TYPES[c.kind], c.unit, RESEARCH_NOTICE if index == 0 else ""]
        for index, c in enumerate(columns)
    ]
    with atomic_path(table_schema_path(path)) as temporary_schema, atomic_path(path) as temporary:
        _write_rows(temporary_schema, schema, delimiter)
        _write_rows(temporary, rows, delimiter)
    return path


def read_table(path: str | os.PathLike, columns: list[Column]) -> list[dict]:
    """Read a table written by :func:`write_table` (or by hand) back into typed records.

    Columns are matched by header (``name (unit)``) or bare name; empty cells become ``None``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Table file not found: {path}. Check the path and run again.")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle, delimiter=_delimiter(path)))
    if not rows:
        raise InputError(f"The table {path} is empty; it needs at least a header row.")
    header = rows[0]
    positions = {}
    for column in columns:
        for text in (column_title(column), column.name):
            if text in header:
                positions[column.name] = header.index(text)
                break
        else:
            raise InputError(f"The table {path.name} has no column {column_title(column)!r} (it has {', '.join(header)}).")
    return [
        {c.name: _parse_cell(row[positions[c.name]] if positions[c.name] < len(row) else "", c, path) for c in columns}
        for row in rows[1:]
        if any(cell.strip() for cell in row)
    ]


def table_schema_path(path: str | os.PathLike) -> Path:
    """Slicer's schema sidecar of a table: ``volumes.csv`` -> ``volumes.schema.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.schema{path.suffix}")


def _delimiter(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ","
    if suffix in (".tsv", ".txt"):
        return "\t"
    raise InputError(f"Cannot write a table as {path.name}; use a .csv or .tsv file name.")


def _cell(value, column: Column) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column.kind == "bool":
        return "1" if value else "0"
    if column.kind == "float":
        return repr(round(float(value), column.decimals))
    if column.kind == "int":
        return str(int(value))
    return str(value)


def _parse_cell(text: str, column: Column, path: Path):
    text = text.strip()
    if column.kind == "text":
        return text
    if text == "":
        return None
    try:
        if column.kind == "bool":
            return _parse_bool(text)
        return float(text) if column.kind == "float" else int(float(text))
    except ValueError:
        raise InputError(f"The table {path.name} has {text!r} in column {column.name!r}, which is not a {column.kind}.") from None


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValueError(text)


def _write_rows(path: Path, rows: list[list[str]], delimiter: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter, lineterminator="\n").writerows(rows)

