"""Labelled points (one per vertebra) and how their confidence is written as text.

A point's confidence travels in the control point's description, both in ``.mrk.json`` files
and in Slicer's markups nodes, so the format lives here, in one place, for the CLI writer and
the MRML bridge alike: ``"confidence=0.93"`` optionally followed by ``"; "`` and free text.
"""

from __future__ import annotations

from dataclasses import dataclass

_CONFIDENCE_KEY = "confidence="
_SEPARATOR = "; "
#: Free text that starts the description of a point no detector found: a level the labelling says lies between two
#: named vertebrae, placed by the shape model (confidence 0). Kept in the description so it survives a .mrk.json.
ESTIMATE_NOTE = "estimated, no detection"


@dataclass
class LabelledPoint:
    label: str  # vertebra name, e.g. "L3"
    ras: tuple[float, float, float]  # centre of the vertebral body, RAS millimetres
    confidence: float | None = None  # 0..1; None where unknown (e.g. set by the user)
    user_set: bool = False  # placed or confirmed by the user: locked, never moved silently
    description: str = ""  # free text shown beside the point


def is_estimate(point: LabelledPoint) -> bool:
    """A point placed by the shape model where no detection was (see :data:`ESTIMATE_NOTE`), not since set by a user."""
    return not point.user_set and point.description.startswith(ESTIMATE_NOTE)


def point_description(point: LabelledPoint) -> str:
    """Description text holding the point's confidence and free text (``"confidence=0.93; ..."``)."""
    parts = []
    if point.confidence is not None:
        parts.append(f"{_CONFIDENCE_KEY}{float(point.confidence):.6g}")
    if point.description:
        parts.append(point.description)
    return _SEPARATOR.join(parts)


def parse_point_description(text: str) -> tuple[float | None, str]:
    """Split a description written by :func:`point_description` into (confidence, free text).

    Text without a leading ``confidence=`` number (e.g. typed by a user) is all free text.
    """
    text = (text or "").strip()
    if not text.startswith(_CONFIDENCE_KEY):
        return None, text
    head, _, rest = text.partition(";")
    try:
        confidence = float(head[len(_CONFIDENCE_KEY):])
    except ValueError:
        return None, text
    return confidence, rest.strip()
