"""Result files that 3D Slicer opens natively: markups, segmentations, label maps and tables.

Formats
    * ``.mrk.json`` -- Slicer markups (schema v1.0.3). Points are written in **LPS**, the
      coordinate system Slicer itself writes, and read in LPS or RAS. A user-set point is a
      locked control point; the confidence lives in the control point description
      (format: :func:`spinebrain.points.point_description`).
    * ``.seg.nrrd`` -- Slicer segmentation written with slicerio: one segment per label value
      (the value is kept as the segment's label value), with name, colour and SNOMED CT
      terminology from :mod:`spinebrain.anatomy`.
    * ``.nii.gz`` label map + ``.json`` sidecar (value -> name), for tools that do not read NRRD.
    * ``.csv`` / ``.tsv`` tables: the first row is the header, with units in brackets
      (``volume (mm³)``), and nothing else -- no comment lines, so any CSV reader takes them.
      Beside it goes Slicer's own table schema sidecar (``name.schema.csv``) giving each
      column's type and unit, so Slicer loads typed columns.

Research notice
    Every file carries :data:`spinebrain.RESEARCH_NOTICE`: a top-level ``"notice"`` key in
    ``.mrk.json`` (the schema allows extra properties; Slicer ignores it), a
    ``SpineBrain_Notice`` header field in ``.seg.nrrd``, a ``"notice"`` key in the label-map
    sidecar, and the description of the first column in the table schema sidecar.

All writes are atomic (:func:`spinebrain.io.atomic_path`): a failed write leaves any previous
file untouched and no temporary files behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from . import RESEARCH_NOTICE, __version__
from .anatomy import structure
from .errors import InputError
from .geometry import (
    array_from_image,
    image_from_array,
    ijk_to_ras_matrix,
    lps_to_ras,
    ras_to_lps,
    set_geometry_from_ijk_to_ras,
)
from .io import atomic_path, read_image, write_image
from .points import LabelledPoint, parse_point_description, point_description
from .tables import Column, column_title

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
SOFTWARE = f"SlicerSpineBrain {__version__}"
LABEL_VALUE_TAG = "SpineBrain.LabelValue"  # same tag as spinebrain_slicer.bridge.segmentations
_FLIP_4X4 = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS for homogeneous matrices
_LPS_ORIENTATION = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]  # identity in RAS, as Slicer writes it


# ----------------------------------------------------------------------------------------- markups


def write_markups(points: list[LabelledPoint], path: str | os.PathLike, name: str = "SpineLabel") -> Path:
    """Write labelled RAS points as a Slicer point list (``.mrk.json``, LPS coordinates)."""
    control_points = [_control_point(index, point) for index, point in enumerate(points)]
    document = {
        "@schema": MARKUPS_SCHEMA,
        "notice": RESEARCH_NOTICE,
        "software": SOFTWARE,
        "markups": [
            {
                "type": "Fiducial",
                "name": name,
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "locked": False,
                "fixedNumberOfControlPoints": False,
                "labelFormat": "%N-%d",
                "lastUsedControlPointNumber": len(control_points),
                "controlPoints": control_points,
                "measurements": [],
            }
        ],
    }
    return _write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _control_point(index: int, point: LabelledPoint) -> dict:
    ras = np.asarray(point.ras, dtype=float)
    if ras.shape != (3,) or not np.all(np.isfinite(ras)):
        raise InputError(f"Point {point.label!r} has position {point.ras}; a point needs three finite RAS coordinates.")
    return {
        "id": str(index + 1),
        "label": str(point.label),
        "description": point_description(point),
        "associatedNodeID": "",
        "position": [float(v) for v in ras_to_lps(ras)],
        "orientation": _LPS_ORIENTATION,
        "selected": True,
        "locked": bool(point.user_set),
        "visibility": True,
        "positionStatus": "defined",
    }


def read_markups(path: str | os.PathLike) -> list[LabelledPoint]:
    """Read the points of every point list in a ``.mrk.json`` (or legacy ``.fcsv``) file, in RAS.

    Points without a defined position (Slicer's "missing"/"preview" states) are skipped.
    """
    document = _load_markups_document(Path(path))
    points = []
    for markup in document["markups"]:
        if markup.get("type", "Fiducial") != "Fiducial":
            continue
        to_ras = _position_to_ras(markup, path)
        for control_point in markup.get("controlPoints", []):
            if control_point.get("positionStatus", "defined") != "defined":
                continue
            confidence, description = parse_point_description(control_point.get("description", ""))
            ras = to_ras(control_point["position"])
            points.append(
                LabelledPoint(
                    label=str(control_point.get("label", "")),
                    ras=tuple(float(v) for v in ras),
                    confidence=confidence,
                    user_set=bool(control_point.get("locked", False)),
                    description=description,
                )
            )
    return points


def _load_markups_document(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"Markups file not found: {path}. Check the path and run again.")
    if path.suffix.lower() == ".fcsv":
        from slicerio.markups import read_markups_fcsv  # legacy Slicer (< 4.11) point lists

        return read_markups_fcsv(str(path))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"Could not read {path} as markups JSON ({error}); save the points from Slicer as .mrk.json.") from None
    if not isinstance(document, dict) or not isinstance(document.get("markups"), list):
        raise InputError(f"{path} is JSON but not a Slicer markups file (no 'markups' list); save the points from Slicer as .mrk.json.")
    return document


def _position_to_ras(markup: dict, path) -> Callable[[list], np.ndarray]:
    system = markup.get("coordinateSystem", "LPS")  # the schema's default
    units = markup.get("coordinateUnits", "mm")
    units = units[0] if isinstance(units, list) else units
    scale = {"mm": 1.0, "um": 1e-3}.get(units)
    if system not in ("LPS", "RAS") or scale is None:
        raise InputError(f"{path} uses coordinates {system} in {units}; only LPS or RAS in mm or um can be read.")
    if system == "LPS":
        return lambda position: lps_to_ras(np.asarray(position, dtype=float) * scale)
    return lambda position: np.asarray(position, dtype=float) * scale


# ------------------------------------------------------------------------------------ segmentations


def write_segmentation(label_image: sitk.Image, names: dict[int, str], path: str | os.PathLike) -> Path:
    """Write a label map as a Slicer ``.seg.nrrd``: one segment per named value (kept as its label value).

    Named values absent from the image become empty segments; unnamed non-zero values are an error.
    """
    array = _checked_label_array(label_image, names)
    voxels = array.transpose(2, 1, 0)  # [k, j, i] -> (i, j, k), the order slicerio writes ('F')
    segmentation = {
        "voxels": voxels,
        "ijkToLPS": _FLIP_4X4 @ ijk_to_ras_matrix(label_image),
        "segments": [_segment(value, name, voxels) for value, name in sorted(names.items())],
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        # written as the raw header field: Slicer drops a parameter lacking the trailing "&",
        # and slicerio's "conversionParameters" writer omits it after the last one
        "Segmentation_ConversionParameters": _reference_geometry(label_image),
        "SpineBrain_Notice": RESEARCH_NOTICE,
        "SpineBrain_Version": __version__,
    }
    path = Path(path)
    with atomic_path(path) as temporary:
        slicerio.write_segmentation(str(temporary), segmentation)
    return path


def _reference_geometry(image: sitk.Image) -> str:
    """Slicer's "Reference image geometry" parameter, so editing in Slicer keeps this exact grid."""
    matrix = ";".join(repr(float(v)) for v in ijk_to_ras_matrix(image).ravel())  # IJK-to-RAS, row-major
    extent = ";".join(f"0;{size - 1}" for size in image.GetSize())
    return f"Reference image geometry|{matrix};{extent};|Geometry of the labelmap created in conversions.&"


def _segment(value: int, name: str, voxels: np.ndarray) -> dict:
    anatomy = structure(name)
    segment = {
        "id": f"Segment_{value}",
        "name": name,
        "labelValue": int(value),
        "layer": 0,
        "color": [float(c) for c in anatomy.color],
        "extent": _extent(voxels == value),
        "tags": {LABEL_VALUE_TAG: str(int(value))},  # the bridge's tag: keeps the value through edits
    }
    if anatomy.code:  # names outside the anatomy table get no (invalid, empty-coded) terminology
        segment["tags"]["TerminologyEntry"] = anatomy.terminology_entry()
    return segment


def _extent(mask: np.ndarray) -> list[int]:
    if not mask.any():
        return [0, -1, 0, -1, 0, -1]  # Slicer's empty extent
    return [int(v) for axis in np.nonzero(mask) for v in (axis.min(), axis.max())]


def read_segmentation(path: str | os.PathLike) -> tuple[sitk.Image, dict[int, str]]:
    """Read a ``.seg.nrrd`` into a label map (exact geometry) and its value -> segment name table.

    Values come from the ``SpineBrain.LabelValue`` segment tag, else the segment's label value;
    where those clash (overlapping segments in several layers) segments get 1..n in file order,
    later segments winning overlaps.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Segmentation file not found: {path}. Check the path and run again.")
    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # pynrrd / slicerio raise several unrelated types
        raise InputError(f"Could not read {path} as a Slicer segmentation ({error}); save it from Slicer as .seg.nrrd.") from None
    voxels = segmentation["voxels"]
    segments = segmentation.get("segments", [])
    values = _segment_values(segments, layered=voxels.ndim == 4)
    labels = np.zeros(voxels.shape[-3:], dtype=np.uint8 if max(values, default=0) <= 255 else np.uint16)
    for segment, value in zip(segments, values):  # later segments win where segments overlap
        layer = voxels[segment.get("layer", 0)] if voxels.ndim == 4 else voxels
        labels[layer == segment.get("labelValue", 1)] = value
    image = image_from_array(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    set_geometry_from_ijk_to_ras(image, _FLIP_4X4 @ np.asarray(segmentation["ijkToLPS"], dtype=float))
    return image, {value: segment.get("name", segment["id"]) for segment, value in zip(segments, values)}


def _segment_values(segments: list[dict], layered: bool) -> list[int]:
    """Label value of each segment: our tag (survives editing in Slicer), else the file's value.

    Where those are not unique (overlapping segments in several layers), values are 1..n.
    """
    values = [int(s.get("tags", {}).get(LABEL_VALUE_TAG, s.get("labelValue", 1))) for s in segments]
    if len(set(values)) < len(values) or (layered and not all(LABEL_VALUE_TAG in s.get("tags", {}) for s in segments)):
        values = list(range(1, len(segments) + 1))
    return values


def write_label_map(label_image: sitk.Image, names: dict[int, str], path: str | os.PathLike) -> Path:
    """Write a NIfTI label map (``.nii.gz`` / ``.nii``) and its sidecar ``.json`` (value -> name).

    Both files appear together or not at all.
    """
    path = Path(path)
    array = _checked_label_array(label_image, names)
    image = image_from_array(array, label_image)
    sidecar = {
        "notice": RESEARCH_NOTICE,
        "software": SOFTWARE,
        "labels": {str(value): name for value, name in sorted(names.items())},
    }
    with atomic_path(label_map_sidecar(path)) as temporary_json, atomic_path(path) as temporary_image:
        write_image(image, temporary_image)
        temporary_json.write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_label_map(path: str | os.PathLike) -> tuple[sitk.Image, dict[int, str]]:
    """Read a label map and its sidecar JSON (``{"labels": {value: name}}`` or a plain mapping)."""
    path = Path(path)
    sidecar = label_map_sidecar(path)
    if not sidecar.is_file():
        raise InputError(f"The label names file {sidecar.name} is missing beside {path.name}; label maps travel with their names.")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        table = data.get("labels", data)
        names = {int(value): str(name) for value, name in table.items()}
    except (ValueError, AttributeError) as error:
        raise InputError(f"Could not read label names from {sidecar} ({error}); it must map label values to names.") from None
    return read_image(path), names


def label_map_sidecar(path: str | os.PathLike) -> Path:
    """The JSON names file beside a label map: ``labels.nii.gz`` -> ``labels.json``."""
    path = Path(path)
    stem = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return path.with_name(stem + ".json")


def _checked_label_array(label_image: sitk.Image, names: dict[int, str]) -> np.ndarray:
    """The label map's [k, j, i] array in the smallest unsigned type, after checking it."""
    if label_image.GetDimension() != 3 or label_image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"The label map must be a 3D single-channel image (it is {label_image.GetDimension()}D).")
    array = array_from_image(label_image)
    if not np.array_equal(array, np.round(array)) or (array.size and array.min() < 0):
        raise InputError("The label map holds negative or non-integer values; a label map holds whole numbers >= 0.")
    if any(int(value) <= 0 for value in names):
        raise InputError(f"Label names {names} include value 0 or less; 0 is background and cannot be named.")
    unnamed = sorted(set(np.unique(array).astype(int).tolist()) - set(names) - {0})
    if unnamed:
        raise InputError(f"Label values {unnamed} have no name; give every non-zero value a name.")
    largest = max([int(array.max()) if array.size else 0, *names])
    if largest > np.iinfo(np.uint16).max:
        raise InputError(f"Label value {largest} is too large; label values must be at most 65535.")
    return array.astype(np.uint8 if largest <= 255 else np.uint16)


# ------------------------------------------------------------------------------------------- tables

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
        return repr(float(value))
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


def _write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
