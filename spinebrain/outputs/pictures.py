"""Overview pictures (PNG) of a result: one slice with labelled points and label-map outlines.

Display convention (the one Slicer's slice views use, radiological):
    * sagittal -- anterior on the left, superior up (seen from the patient's left);
    * coronal  -- patient's right on the left, superior up (seen from the front);
    * axial    -- patient's right on the left, anterior up (seen from the feet).

The slice is resampled from the volume onto a plane aligned with the patient axes, with square
pixels, so oblique directions and anisotropic spacing show at their true physical proportions.
Points are projected onto the plane along its normal. matplotlib's Agg canvas draws without a
display; figures are never shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import RESEARCH_NOTICE
from ..anatomy import structure
from ..errors import InputError
from ..geometry import index_to_ras, ras_to_lps
from ..io import atomic_path
from ..points import LabelledPoint, is_estimate

#: Per plane, the LPS directions of screen x (left to right), screen y (top to bottom), normal.
PLANE_AXES = {
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),  # A -> P, S -> I
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),  # R -> L, S -> I
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),  # R -> L, A -> P
}
#: Orientation letters at the left, right, top and bottom edge of each plane.
PLANE_LETTERS = {"sagittal": "APSI", "coronal": "RLSI", "axial": "RLAP"}
MAX_PIXELS = 768  # longest side of a resampled slice: enough detail, small files


@dataclass
class Panel:
    """One picture in a montage; the arguments of :func:`save_overview_png`."""

    image: sitk.Image
    points: list[LabelledPoint] | None = None
    label_image: sitk.Image | None = None
    names: dict[int, str] | None = None
    plane: str = "sagittal"
    title: str = ""
    reference_points: list[LabelledPoint] | None = None  # true centres, drawn as open circles
    uncertain: bool = False  # the names are not anchored: drawn as "L3?" in orange (estimates always are)
    #: legend text of the label overlay and of the points: what they are in this picture
    labels_legend: str = "reference vertebrae"
    points_legend: str = "result (named centres)"
    faint_labels: frozenset[int] = frozenset()  # label values drawn faint and dashed (e.g. incomplete vertebrae)
    faint_legend: str = "incomplete (cut by the scan's edge)"


def save_overview_png(
    image: sitk.Image,
    path: str | os.PathLike,
    points: list[LabelledPoint] | None = None,
    label_image: sitk.Image | None = None,
    names: dict[int, str] | None = None,
    plane: str = "sagittal",
    title: str = "",
    reference_points: list[LabelledPoint] | None = None,
    uncertain: bool = False,
    labels_legend: str = "reference vertebrae",
    points_legend: str = "result (named centres)",
    faint_labels=(),
) -> Path:
    """Save one slice (through the points' median, else the volume centre) with overlays as PNG.

    With a label image or reference points the picture gets a legend saying what each mark is:
    ``labels_legend`` names the label overlay (a reference, or a segmentation result), and
    ``points_legend`` the points; ``faint_labels`` are label values drawn faint and dashed.
    ``uncertain``: the point names are not anchored; they are drawn with a question mark in orange.
    CT (Hounsfield units) is shown in a bone window, anything else between its 1st and 99th percentiles.
    """
    panel = Panel(image, points, label_image, names, plane, title, reference_points, uncertain, labels_legend,
                  points_legend, frozenset(int(v) for v in faint_labels))
    return save_montage_png([panel], path, columns=1)


def save_montage_png(panels: list[Panel], path: str | os.PathLike, columns: int | None = None, title: str = "") -> Path:
    """Save a grid of panels (row by row) as one PNG with the research notice in the footer."""
    if not panels:
        raise InputError("No pictures to put in the montage; give at least one panel.")
    columns = columns or int(np.ceil(np.sqrt(len(panels))))
    rows = int(np.ceil(len(panels) / columns))
    slices = [_panel_slice(panel) for panel in panels]
    aspect = max(s.image.shape[0] / s.image.shape[1] for s in slices)  # height / width of the tallest
    figure = Figure(figsize=(4.0 * columns, 4.0 * rows * min(max(aspect, 0.5), 2.0) + 0.5), dpi=100,
                    layout="constrained")  # unlike tight_layout, keeps each title clear of the row above
    FigureCanvasAgg(figure)
    figure.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))  # room for the footer
    for index, (panel, plane_slice) in enumerate(zip(panels, slices)):
        _draw(figure.add_subplot(rows, columns, index + 1), panel, plane_slice)
    if title:
        figure.suptitle(title)
    figure.text(0.5, 0.005, RESEARCH_NOTICE, ha="center", va="bottom", fontsize=7, color="0.35")
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", facecolor="white")
    return path


@dataclass
class _Slice:
    image: np.ndarray  # [row, column] intensities
    labels: np.ndarray | None  # [row, column] label values
    grid: sitk.Image  # the one-slice output grid, for projecting points


def _panel_slice(panel: Panel) -> _Slice:
    if panel.plane not in PLANE_AXES:
        raise InputError(f"Unknown picture plane {panel.plane!r}; use sagittal, coronal or axial.")
    grid = _slice_grid(panel.image, panel.plane, panel.points)
    image = _resample(panel.image, grid, sitk.sitkLinear)
    labels = None if panel.label_image is None else _resample(panel.label_image, grid, sitk.sitkNearestNeighbor)
    return _Slice(image, labels, grid)


def _slice_grid(image: sitk.Image, plane: str, points) -> sitk.Image:
    """A one-voxel-thick grid on the plane, covering the whole volume, with square pixels."""
    axes = np.array(PLANE_AXES[plane])  # rows: screen x, screen y, normal (LPS unit vectors)
    corners_lps = _corners_lps(image)
    along = corners_lps @ axes.T  # corner coordinates along each axis
    low, high = along.min(axis=0), along.max(axis=0)
    if points:
        depth = float(np.median([ras_to_lps(p.ras) @ axes[2] for p in points]))
    else:
        depth = float((low[2] + high[2]) / 2)
    spacing = max(min(image.GetSpacing()), float((high[:2] - low[:2]).max()) / MAX_PIXELS)
    size = [int(np.floor((high[a] - low[a]) / spacing)) + 1 for a in (0, 1)] + [1]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing((spacing, spacing, spacing))
    grid.SetDirection(tuple(axes.T.ravel()))  # columns of the direction matrix are the axes
    grid.SetOrigin(tuple(axes.T @ np.array([low[0], low[1], depth])))
    return grid


def _corners_lps(image: sitk.Image) -> np.ndarray:
    size = np.array(image.GetSize(), dtype=float) - 1
    corners = np.array([[i, j, k] for i in (-0.5, size[0] + 0.5) for j in (-0.5, size[1] + 0.5) for k in (-0.5, size[2] + 0.5)])
    return ras_to_lps(index_to_ras(image, corners))


def _resample(volume: sitk.Image, grid: sitk.Image, interpolator) -> np.ndarray:
    background = float(np.min(sitk.GetArrayViewFromImage(volume)))
    resampled = sitk.Resample(volume, grid, sitk.Transform(), interpolator, background, volume.GetPixelID())
    return sitk.GetArrayFromImage(resampled)[0]


#: Display window of CT (HU): bone (cortex and trabecular bone apart) with the soft tissue still grey.
CT_BONE_WINDOW = (-400.0, 1200.0)
UNCERTAIN_COLOR = "orange"


def display_window(image: np.ndarray) -> tuple[float, float]:
    """(low, high) grey range: a bone window for CT (air and fat well below -150 HU), else percentiles 1-99."""
    if not image.size:
        return 0.0, 1.0
    if float(np.percentile(image, 0.5)) < -150.0:
        return CT_BONE_WINDOW
    low, high = np.percentile(image, [1, 99])
    return float(low), float(max(high, low + 1e-6))


def _draw(axes, panel: Panel, plane_slice: _Slice) -> None:
    low, high = display_window(plane_slice.image)
    axes.imshow(plane_slice.image, cmap="gray", vmin=low, vmax=high, interpolation="bilinear")
    if plane_slice.labels is not None:
        _draw_labels(axes, plane_slice.labels, panel.names or {}, panel.faint_labels)
    if panel.reference_points:
        _draw_reference_points(axes, panel.reference_points, plane_slice.grid)
    if panel.points:
        _draw_points(axes, panel.points, plane_slice.grid, panel.uncertain)
    if panel.reference_points or plane_slice.labels is not None or panel.uncertain:
        _draw_legend(axes, panel, plane_slice)
    _draw_letters(axes, panel.plane, plane_slice.image.shape)
    axes.set_title(panel.title or panel.plane, fontsize=9)
    axes.set_axis_off()


def _label_color(value: int, names: dict[int, str]) -> tuple[float, float, float]:
    if value in names:
        return structure(names[value]).color
    return structure(str(value)).color


def _draw_labels(axes, labels: np.ndarray, names: dict[int, str], faint=frozenset()) -> None:
    overlay = np.zeros(labels.shape + (4,))
    for value in np.unique(labels[labels > 0]):
        mask = labels == value
        color = _label_color(int(value), names)
        overlay[mask] = (*color, 0.1 if int(value) in faint else 0.3)
        axes.contour(mask.astype(float), levels=[0.5], colors=[color], linewidths=0.8,
                     linestyles="dashed" if int(value) in faint else "solid")
    axes.imshow(overlay, interpolation="nearest")


def _draw_points(axes, points: list[LabelledPoint], grid: sitk.Image, uncertain: bool = False) -> None:
    for point in points:
        column, row, _ = grid.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in ras_to_lps(point.ras)))
        doubtful = (uncertain and not point.user_set) or is_estimate(point)  # an estimate: no detection there
        color = "yellow" if point.user_set else (UNCERTAIN_COLOR if doubtful else "cyan")
        axes.plot(column, row, marker="o", markersize=5, markeredgecolor="black", markerfacecolor=color)
        axes.annotate(point.label + ("?" if doubtful else ""), (column, row), xytext=(6, 0),
                      textcoords="offset points", va="center", fontsize=8, color=color, fontweight="bold",
                      path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")])  # legible on any overlay


def _draw_reference_points(axes, points: list[LabelledPoint], grid: sitk.Image) -> None:
    for point in points:
        column, row, _ = grid.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in ras_to_lps(point.ras)))
        axes.plot(column, row, marker="o", markersize=9, markerfacecolor="none", markeredgecolor="magenta",
                  markeredgewidth=1.5)


def _draw_legend(axes, panel: Panel, plane_slice: _Slice) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    if panel.points:
        color, text = (UNCERTAIN_COLOR, "result (uncertain names)") if panel.uncertain else ("cyan", panel.points_legend)
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor=color, markeredgecolor="black",
                              label=text))
    if panel.reference_points:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="magenta",
                              label="reference centres"))
    if plane_slice.labels is not None and _segment_legend(panel, plane_slice):
        handles += _segment_legend(panel, plane_slice)
    elif plane_slice.labels is not None:
        handles.append(Patch(facecolor=(0.6, 0.6, 0.9, 0.4), edgecolor="0.3", label=panel.labels_legend))
        if panel.faint_labels and np.isin(plane_slice.labels, list(panel.faint_labels)).any():
            handles.append(Patch(facecolor=(0.6, 0.6, 0.9, 0.1), edgecolor="0.3", linestyle="--",
                                 label=panel.faint_legend))
    axes.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.7)


def _segment_legend(panel: Panel, plane_slice: _Slice) -> list:
    """One patch per named structure of a result segmentation (a few classes, no points): e.g. brain tissue."""
    from matplotlib.patches import Patch

    names = panel.names or {}
    values = [int(v) for v in np.unique(plane_slice.labels[plane_slice.labels > 0])]
    if panel.points or panel.reference_points or not names or len(names) > 8 or not values:
        return []
    return [Patch(facecolor=(*_label_color(v, names), 0.5), edgecolor="0.3", label=names.get(v, str(v)))
            for v in sorted(names) if v in values]


def _draw_letters(axes, plane: str, shape) -> None:
    left, right, top, bottom = PLANE_LETTERS[plane]
    height, width = shape
    style = dict(color="orange", fontsize=9, fontweight="bold", ha="center", va="center")
    axes.text(0.02 * width, height / 2, left, **style)
    axes.text(0.98 * width, height / 2, right, **style)
    axes.text(width / 2, 0.03 * height, top, **style)
    axes.text(width / 2, 0.97 * height, bottom, **style)
