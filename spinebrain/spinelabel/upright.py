"""Turning a spine tilted in the coronal plane upright before the graph names it.

The shape model's displacements are in patient RAS, fitted on spines lying straight along the table: a scan turned
about the A-P axis (or a patient lying obliquely) moves each body several millimetres sideways from the one above,
outside the fitted box, and the graph then leaves detected bodies out. The detections' own coronal tilt (a robust
line of R against S, SciPy's Theil-Sen slope) is turned back about the A-P axis through their centre; the names
come back on the original positions.

The detectors themselves were trained on spines lying straight: under a tilt of several degrees they miss or
misplace the anchor. Wherever the frame turns, the pipeline runs them again on the scan turned upright
(:meth:`CoronalFrame.turn`) and takes those detections, turned back onto the scan.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..turn import A_P, Turn
from .graph import Candidate, LabellingResult

#: Tilts under this (degrees) are left alone: the shape model's own spread holds them.
MIN_TILT_DEGREES = 3.0
#: A tilt is estimated only from this many detections on.
MIN_DETECTIONS = 4


class CoronalFrame:
    """The turn about A-P through the detections' centre that sets their line upright (none when small)."""

    def __init__(self, positions: np.ndarray):
        self.degrees = 0.0
        self._turn: Turn | None = None
        if len(positions) < MIN_DETECTIONS or np.ptp(positions[:, 2]) <= 0:
            return
        # a turn by +angle about A takes the line R = slope * S (slope = dR / dS) onto R = 0
        degrees = float(np.degrees(np.arctan(theil_sen_slope(positions[:, 2], positions[:, 0]))))
        if abs(degrees) < MIN_TILT_DEGREES:
            return
        self.degrees = degrees
        self._turn = Turn(degrees, A_P, positions.mean(axis=0))

    @property
    def turned(self) -> bool:
        return self._turn is not None

    def turn(self) -> Turn:
        """The turn itself, for images too: ``turn.image(scan)`` shows the spine upright (only when :attr:`turned`)."""
        return self._turn

    def upright(self, position) -> np.ndarray:
        return self._turn.point(position)

    def back(self, position) -> np.ndarray:
        return self._turn.back(position)

    def candidates(self, candidates: list[Candidate]) -> list[Candidate]:
        return [replace(c, position=self.upright(c.position)) for c in candidates] if self.turned else candidates

    def fixed(self, fixed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {level: self.upright(p) for level, p in fixed.items()} if self.turned else fixed

    def restore(self, labelling: LabellingResult, originals: list[Candidate]) -> LabellingResult:
        """The labelling and its alternatives on the scan's positions: detections exactly, others turned back."""
        if not self.turned:
            return labelling

        def back(assignments):
            return [replace(a, position=self.back(a.position) if a.candidate is None
                            else np.asarray(originals[a.candidate].position, float)) for a in assignments]

        return replace(labelling, assignments=back(labelling.assignments),
                       alternatives=[replace(alt, assignments=back(alt.assignments)) for alt in labelling.alternatives])


def theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """The median of the slopes between every two points with different ``x`` (the slope of scipy.stats.theilslopes).

    Written here because importing scipy.stats costs 0.5-0.7 s of every command line's start, for four lines.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx, dy = x[None, :] - x[:, None], y[None, :] - y[:, None]
    later = dx > 0
    return float(np.median(dy[later] / dx[later]))

