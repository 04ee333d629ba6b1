"""Slicer point lists (``.mrk.json``, markups schema v1.0.3) written and read outside Slicer.

Points are held in RAS inside the project (as in Slicer's scene) and written in **LPS**, the
coordinate system Slicer itself writes to ``.mrk.json`` (the file says so in its
``coordinateSystem`` field); files in LPS or RAS are read. A user-set point is a locked control
point; the confidence lives in the control point description
(:func:`spinebrain.points.point_description`). Every point read is checked
(:func:`spinebrain.validate.check_point_entry`), so a file with a point lacking its position is
one clear sentence, not a KeyError.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import RESEARCH_NOTICE
from ..errors import InputError, InputTypeError
from ..geometry import lps_to_ras, ras_to_lps
from ..points import LabelledPoint, parse_point_description, point_description
from ..validate import check_point_entry, check_points_type
from .common import SOFTWARE, write_text

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
_LPS_ORIENTATION = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]  # identity in RAS, as Slicer writes it


def write_markups(points: list[LabelledPoint], path: str | os.PathLike, name: str = "SpineLabel") -> Path:
    """Write labelled RAS points as a Slicer point list (``.mrk.json``, LPS coordinates)."""
    points = check_points_type(points)
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
    return write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


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
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise InputTypeError(f"A markups file path is needed, not {type(path).__name__}; give the path of a .mrk.json "
                             "file saved from Slicer.")
    document = _load_markups_document(Path(path))
    points = []
    for markup in document["markups"]:
        if not isinstance(markup, dict) or markup.get("type", "Fiducial") != "Fiducial":
            continue
        to_ras = _position_to_ras(markup, path)
        for index, control_point in enumerate(markup.get("controlPoints") or []):
            if isinstance(control_point, dict) and control_point.get("positionStatus", "defined") != "defined":
                continue
            _, position = check_point_entry(control_point, index, path)
            confidence, description = parse_point_description(str(control_point.get("description", "")))
            ras = to_ras(position)
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
    if path.is_dir():
        raise InputError(f"The markups path {path} is a folder; give a .mrk.json file saved from Slicer.")
    if not path.is_file():
        raise InputError(f"Markups file not found: {path}. Check the path and run again.")
    if path.suffix.lower() == ".fcsv":
        from slicerio.markups import read_markups_fcsv  # legacy Slicer (< 4.11) point lists

        try:
            return read_markups_fcsv(str(path))
        except Exception as error:  # noqa: BLE001 -- slicerio's CSV parsing raises several types
            raise InputError(f"Could not read {path} as a Slicer .fcsv point list ({error}); save the points from "
                             "Slicer as .mrk.json.") from None
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

