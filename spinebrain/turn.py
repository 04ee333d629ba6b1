"""Turning a scan's content in the world: a spine tilted in the coronal plane, for training and benchmarks.

Unlike :mod:`spinebrain.resample`, which never moves anything in the world, a turn moves the anatomy
(image, label map and named points together) about an axis through a centre, so a network can be
taught, and measured on, a patient lying at an angle. The grid keeps its direction and spacing; it can
grow on every side so that nothing turned out of the old field of view is lost.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .geometry import lps_to_ras, ras_to_lps
from .points import LabelledPoint

A_P = (0.0, 1.0, 0.0)  # the axis of a coronal tilt (RAS)
#: A grid turned to set a tilted spine upright (or to tilt a training case) grows by this share of its extent on
#: each side, so the turned spine stays in view.
TILT_GROW = 0.15


class Turn:
    """A rigid turn by ``degrees`` about ``axis_ras`` through ``centre_ras`` (right-handed, RAS)."""

    def __init__(self, degrees: float, axis_ras=A_P, centre_ras=(0.0, 0.0, 0.0)):
        self.degrees = float(degrees)
        self._resampling = sitk.VersorRigid3DTransform()
        self._resampling.SetCenter(tuple(float(v) for v in ras_to_lps(centre_ras)))
        self._resampling.SetRotation(tuple(float(v) for v in ras_to_lps(axis_ras)), np.radians(self.degrees))
        # resampling maps each output point to the input point it reads, so the content moves by the inverse
        self._moving = self._resampling.GetInverse()

    def point(self, ras) -> np.ndarray:
        """Where a point of the anatomy lies after the turn (RAS mm)."""
        return lps_to_ras(self._moving.TransformPoint(tuple(float(v) for v in ras_to_lps(ras))))

    def image(self, image: sitk.Image, is_label: bool = False, grow: float = 0.0,
              min_spacing_mm: float = 0.0) -> sitk.Image:
        """The turned image on a grid of the same direction and centre.

        ``grow``: the grid widens by that fraction of its extent on each side (0: the same extent), so
        that what turns out of the old field of view is kept; ``min_spacing_mm``: axes finer than this are
        resampled at it (a coarser, cheaper grid). Voxels from outside the old field of view take 0
        (labels) or the image's minimum (air).
        """
        spacing = np.maximum(np.array(image.GetSpacing()), float(min_spacing_mm))
        extent = np.array(image.GetSize()) * np.array(image.GetSpacing()) * (1.0 + 2.0 * float(grow))
        size = [max(1, int(np.ceil(e / s - 1e-6))) for e, s in zip(extent, spacing)]
        direction = np.array(image.GetDirection()).reshape(3, 3)
        origin = ras_to_lps(volume_centre_ras(image)) - direction @ ((np.array(size) - 1) / 2 * spacing)
        background = 0.0 if is_label else float(np.min(sitk.GetArrayViewFromImage(image)))
        interpolator = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
        return sitk.Resample(image, size, self._resampling, interpolator, tuple(origin), tuple(spacing),
                             image.GetDirection(), background, image.GetPixelID())

    def back(self, ras) -> np.ndarray:
        """Where a point of the turned anatomy lay before the turn (RAS mm)."""
        return lps_to_ras(self._resampling.TransformPoint(tuple(float(v) for v in ras_to_lps(ras))))


def turn_scan(image: sitk.Image, labels: sitk.Image, points: list[LabelledPoint], degrees: float, axis_ras=A_P):
    """(image, labels, points) turned by ``degrees`` about ``axis_ras`` through the volume centre, on their own grid
    (corners turned out of the field of view are lost): a benchmark's tilted variant of a scan."""
    turn = Turn(degrees, axis_ras, volume_centre_ras(image))
    moved = [LabelledPoint(p.label, tuple(turn.point(p.ras))) for p in points]
    return turn.image(image), turn.image(labels, is_label=True), moved


def volume_centre_ras(image: sitk.Image) -> np.ndarray:
    """The centre of a volume's field of view (RAS mm)."""
    middle = [(n - 1) / 2 for n in image.GetSize()]
    return lps_to_ras(image.TransformContinuousIndexToPhysicalPoint(middle))
