"""Column descriptions of the result tables (review table, tissue volumes, batch summary).

The same :class:`Column` list drives the CSV/TSV writer of the CLI and the MRML table node of
the bridge, so a column's name, type and unit are declared once.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("text", "bool", "float", "int")


@dataclass
class Column:
    name: str
    kind: str  # text|bool|float|int
    unit: str = ""
    decimals: int = 3  # floats are written rounded to this many decimals (no 34567.89123456789 in a table)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r} has kind {self.kind!r}; use one of {', '.join(KINDS)}")


def column_title(column: Column) -> str:
    """Header shown to people: the name with its unit, e.g. ``"volume (mm³)"``."""
    return f"{column.name} ({column.unit})" if column.unit else column.name
