"""Label operations the user applies to labelled points: shift, rename-and-propagate, re-solve with fixed points.

Pure functions: every operation returns a new list of new points and leaves its input alone, so
the Logic can keep the previous lists as its undo history. A point the user set (``user_set``) is
never changed silently: an operation that would rename it raises InputError unless the caller
passes ``include_user_set=True`` (an explicit user request to rename locked points too).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from spinebrain.anatomy import STANDARD_ORDER, VERTEBRA_LABELS
from spinebrain.errors import InputError
from spinebrain.points import LabelledPoint, is_estimate
from spinebrain.spinelabel.graph import Candidate, SpineShapeModel, label_candidates

_SUPERIOR = 2  # RAS axis that runs from the feet (-) to the head (+)


def naming_sequence(labels) -> list[str]:
    """Vertebra names in cranio-caudal order, with T13 / L6 inserted where ``labels`` use them."""
    labels = set(labels)
    sequence = []
    for name in STANDARD_ORDER:
        sequence.append(name)
        if name == "T12" and "T13" in labels:
            sequence.append("T13")
        if name == "L5" and "L6" in labels:
            sequence.append("L6")
    return sequence


def shift_labels(points: list[LabelledPoint], steps: int, include_user_set: bool = False) -> list[LabelledPoint]:
    """Move every label ``steps`` levels along the spine: +1 towards the sacrum (L5 -> S1), -1 towards the head.

    Raises InputError when a label would go beyond C1 or S1, or would rename a user-set point
    while ``include_user_set`` is False.
    """
    if not points or steps == 0:
        return [replace(p) for p in points]
    _check_known(points)
    if not include_user_set and any(p.user_set for p in points):
        locked = ", ".join(p.label for p in points if p.user_set)
        raise InputError(f"Shifting would rename the points you set ({locked}); "
                         "unlock them or confirm shifting them too.")
    sequence = naming_sequence(p.label for p in points)
    shifted = []
    for point in points:
        position = sequence.index(point.label) + steps
        if not 0 <= position < len(sequence):
            end, direction = ("C1", "above") if steps < 0 else ("S1", "below")
            raise InputError(f"Cannot shift {point.label} by {steps:+d}: there is no vertebra {direction} {end}.")
        shifted.append(replace(point, label=sequence[position]))
    return shifted


def shift_up(points: list[LabelledPoint], include_user_set: bool = False) -> list[LabelledPoint]:
    """Give every point the name of the vertebra above it (S1 -> L5, ..., L1 -> T12)."""
    return shift_labels(points, -1, include_user_set)


def shift_down(points: list[LabelledPoint], include_user_set: bool = False) -> list[LabelledPoint]:
    """Give every point the name of the vertebra below it (T12 -> L1, ..., L5 -> S1)."""
    return shift_labels(points, +1, include_user_set)


def spine_order(points: list[LabelledPoint]) -> list[int]:
    """Indices of ``points`` from head to feet (by the superior RAS coordinate)."""
    return sorted(range(len(points)), key=lambda k: -float(points[k].ras[_SUPERIOR]))


def set_label(points: list[LabelledPoint], index: int, new_label: str,
              include_user_set: bool = False) -> list[LabelledPoint]:
    """Rename point ``index`` to ``new_label`` (now user-set) and renumber the others along the spine to match.

    The others are ordered head to feet by position and named consecutively from the new label.
    Raises InputError for an unknown name, a chain that would run past C1 or S1, or a user-set
    point that would get another name (unless ``include_user_set``).
    """
    if not 0 <= index < len(points):
        raise InputError(f"There is no point {index}; the list has {len(points)} points.")
    if new_label not in VERTEBRA_LABELS:
        raise InputError(f"{new_label!r} is not a vertebra name; use C1...S1, T13 or L6.")
    sequence = naming_sequence([new_label] + [p.label for p in points])
    order = spine_order(points)
    start = sequence.index(new_label) - order.index(index)
    if start < 0 or start + len(points) > len(sequence):
        raise InputError(f"Naming point {index} {new_label} would push the other points beyond C1 or S1.")
    result = [replace(p) for p in points]
    for rank, k in enumerate(order):
        label = sequence[start + rank]
        if k == index:
            result[k] = replace(points[k], label=label, user_set=True)
        elif label != points[k].label:
            if points[k].user_set and not include_user_set:
                raise InputError(f"Naming point {index} {new_label} would rename your point {points[k].label}; "
                                 "unlock it first.")
            result[k] = replace(points[k], label=label)
    return result


def relabel_with_fixed(points: list[LabelledPoint], candidates_or_points, model: SpineShapeModel,
                       fixed: dict[str, tuple] | None = None, **options) -> list[LabelledPoint]:
    """Re-solve the labels with the user's points held fixed (``graph.label_candidates``).

    ``points`` are the current labelled points; their user-set ones are fixed (plus ``fixed``,
    level -> RAS position). ``candidates_or_points`` are the detections to label again:
    ``graph.Candidate`` objects, or labelled points (p = their confidence, 1 where unknown);
    None re-uses the points that are not user-set. The user-set points come back unchanged.
    """
    user_points = [p for p in points if p.user_set]
    hard = {p.label: np.asarray(p.ras, dtype=float) for p in user_points}
    if len(hard) < len(user_points):
        raise InputError("Two of your points have the same name; rename or delete one.")
    for level, position in (fixed or {}).items():
        hard.setdefault(level, np.asarray(position, dtype=float))
    source = [p for p in points if not p.user_set] if candidates_or_points is None else candidates_or_points
    given = [c for c in source if not isinstance(c, Candidate)]  # points: their confidences are scaled together
    candidates = [c for c in source if isinstance(c, Candidate)] + candidates_from_points(given)
    result = label_candidates(candidates, model, fixed=hard, **options)
    by_label = {p.label: p for p in user_points}
    return [replace(by_label[a.level]) if a.level in by_label else point
            for a, point in zip(result.assignments, result.to_points())]


def candidates_from_points(points: list[LabelledPoint], anchor_level: str | None = None) -> list[Candidate]:
    """Labelled points as detections to label again (p = their confidence over the largest one, 1 where unknown).

    The point named ``anchor_level`` (the model's end vertebra) becomes the anchor answer: a list
    read back from a file or another process keeps no detections, and its end vertebra is what
    anchored the labels that made it, so a re-solve with nothing changed gives the same names.
    """
    detections = [p for p in points if not is_estimate(p)]  # an estimate is no detection: the solve places it again
    # a point's confidence is p x the labelling's certainty (0.5 without an anchor); the graph's costs scale with
    # 1 / (p_i p_j), so the shared factor is divided out again: else an unanchored list re-solves one level off
    known = [p.confidence for p in detections if p.confidence is not None and p.confidence > 0]
    scale = max(known, default=1.0)
    return [Candidate(np.asarray(p.ras, dtype=float), 1.0 if p.confidence is None else float(p.confidence) / scale,
                      anchor_probability=1.0 if anchor_level is not None and p.label == anchor_level else 0.0)
            for p in detections]


def _check_known(points: list[LabelledPoint]) -> None:
    for point in points:
        if point.label not in VERTEBRA_LABELS:
            raise InputError(f"The point named {point.label!r} is not a vertebra level; name it first.")
