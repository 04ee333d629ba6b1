"""Per-item records (dicts) <-> table node, with typed columns and units.

Column kinds map to typed VTK arrays, which Slicer's table view and its ``.tsv`` + ``.schema.tsv``
storage keep: text -> vtkStringArray, bool -> vtkBitArray (shown as a check box, so the user
can tick it), float -> vtkDoubleArray, int -> vtkIntArray. The unit goes to the column's unit
label and the header shows ``name (unit)`` (:func:`spinebrain.tables.column_title`); the column
*name* stays the plain key used in records.
"""

from __future__ import annotations

import math

import vtk

from spinebrain.errors import InputError
from spinebrain.tables import Column, column_title

from .nodes import output_node

TABLE = "vtkMRMLTableNode"
_ARRAY_CLASSES = {
    "text": vtk.vtkStringArray,
    "bool": vtk.vtkBitArray,
    "float": vtk.vtkDoubleArray,
    "int": vtk.vtkIntArray,
}
_TRUE_TEXT = {"1", "true", "yes", "y", "on"}


def table_node_from_records(scene, records: list[dict], columns: list[Column], name: str, node=None):
    """Replace the content of ``node`` (or a new table node) with one row per record."""
    node = output_node(scene, TABLE, name, node, kind="table")
    was_modifying = node.StartModify()
    try:
        node.RemoveAllColumns()
        for column in columns:
            node.AddColumn(_column_array(column, [record.get(column.name) for record in records]))
            node.SetColumnUnitLabel(column.name, column.unit)
            node.SetColumnTitle(column.name, column_title(column))
        node.SetUseColumnTitleAsColumnHeader(True)
    finally:
        node.EndModify(was_modifying)
    return node


def _column_array(column: Column, values: list):
    array = _ARRAY_CLASSES[column.kind]()
    array.SetName(column.name)
    for row, value in enumerate(values):
        if value is None and column.kind in ("bool", "int"):
            raise ValueError(f"row {row} has no value for the {column.kind} column {column.name!r}")
        if column.kind == "text":
            array.InsertNextValue("" if value is None else str(value))
        elif column.kind == "bool":
            array.InsertNextValue(1 if value else 0)
        elif column.kind == "float":
            array.InsertNextValue(math.nan if value is None else float(value))
        else:
            array.InsertNextValue(int(value))
    return array


def records_from_table_node(node, columns: list[Column]) -> list[dict]:
    """Read the given columns back as typed records (e.g. after the user ticked 'complete')."""
    if node is None or not node.IsA(TABLE):
        raise InputError("Select a table node to read.")
    table = node.GetTable()
    arrays = {}
    for column in columns:
        arrays[column.name] = table.GetColumnByName(column.name)
        if arrays[column.name] is None:
            raise InputError(
                f"The table '{node.GetName()}' has no column '{column.name}'; choose the table this module wrote."
            )
    return [
        {column.name: _read_value(arrays[column.name], row, column) for column in columns}
        for row in range(table.GetNumberOfRows())
    ]


def _read_value(array, row: int, column: Column):
    if isinstance(array, vtk.vtkDataArray):  # numeric, bit arrays included
        if column.kind == "text":
            return array.GetVariantValue(row).ToString()
        return _from_number(array.GetTuple1(row), column.kind)
    text = array.GetVariantValue(row).ToString().strip()  # string columns (e.g. a table read from CSV)
    if column.kind == "text":
        return text
    if column.kind == "bool":
        return text.lower() in _TRUE_TEXT
    try:
        number = float(text) if text else math.nan
    except ValueError:
        raise InputError(
            f"The table column '{column.name}' holds '{text}' in row {row + 1}, which is not a number."
        ) from None
    return _from_number(number, column.kind)


def _from_number(number: float, kind: str):
    if kind == "bool":
        return bool(number)
    if kind == "int":
        if math.isnan(number):
            raise InputError("A whole-number table cell is empty; fill it in and try again.")
        return int(number)
    return number
