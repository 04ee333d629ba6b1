"""The spine realism report: real and generated spines side by side (montage, intensities, vertebra sizes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ... import RESEARCH_NOTICE
from ...anatomy import VERTEBRA_LABELS, vertebra_index, vertebra_name
from ...geometry import array_from_image, index_to_ras, lps_to_ras, ras_to_index
from ...io import read_image
from ...outputs import write_table
from ...pictures import Panel, save_montage_png
from ...points import LabelledPoint
from .. import morphometry
from .common import (
    BODY_FRACTION, INTENSITY_COLUMNS, SIZE_COLUMNS, SPINE_CASE_FOLDERS, RealismReport, _find, _histogram_figure, _Log,
    _read_labels, _real_data_found, _sample, _save, _stats_rows, default_data_dir,
)


@dataclass
class _Slot:
    """One montage column: a real case (when found) and the generated case shown beside it."""

    key: str  # real case id, "A6"
    modality: str  # "ct" | "t2"
    focus: str  # level the slice goes through
    plane: str
    extent_mm: float  # field of view of the generated crop without the real case
    image: sitk.Image | None = None
    labels: sitk.Image | None = None  # VerSe values
    points: list[LabelledPoint] | None = None
    whole_labels: bool = True  # every vertebra in the image labelled (so "rest" holds no bone)
    raw_labels: sitk.Image | None = None  # the file's own values (A7: discs 105, 106)


_SPINE_SLOTS = [
    _Slot("A6", "ct", "L3", "sagittal", 110.0),
    _Slot("A5", "ct", "T12", "sagittal", 190.0, whole_labels=False),
    _Slot("A3", "ct", "T12", "axial", 250.0),
    _Slot("A7", "t2", "C6", "sagittal", 100.0),
    _Slot("A9", "t2", "C4", "sagittal", 60.0),
]


def spine_report(out_dir, data_dir=None, cases: int = 3, spacing: float = 2.0, progress=None) -> RealismReport:
    """Write the spine realism report into ``out_dir``: montage, histograms, size table and plot."""
    from ..spine import generate_spine

    out = Path(out_dir)
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    log = _Log(progress, 4 + 2 * cases)
    notes: list[str] = []
    found = _real_data_found(data, SPINE_CASE_FOLDERS, notes)
    slots = [_load_spine_slot(slot, data, notes) if found else slot for slot in _copy_slots()]
    real_labels = _load_size_references(data, notes) if found else {}
    log.step("real spine cases read")

    generated = {"ct": [], "t2": []}
    for seed in range(cases):
        for modality, view in (("ct", "lumbar"), ("t2", "cervical")):
            generated[modality].append(generate_spine(seed, modality=modality, view=view, spacing=spacing,
                                                      orientation="sagittal"))
            log.step(f"generated {view} {modality.upper()} seed {seed}")

    files = [_spine_montage(slots, generated, out / "realism_spine.png", found)]
    sets = _spine_intensity_sets(slots, generated)
    intensity_rows = _stats_rows(sets)
    files.append(write_table(intensity_rows, INTENSITY_COLUMNS, out / "spine_intensity_stats.csv"))
    files.append(_spine_histograms(sets, out / "spine_intensity_histograms.png"))
    log.step("montage and histograms drawn")

    size_rows = _size_rows(real_labels, generated)
    files.append(write_table(size_rows, SIZE_COLUMNS, out / "vertebra_sizes.csv"))
    files.append(_size_plot(size_rows, out / "vertebra_sizes.png"))
    log.step("vertebra sizes measured")
    real_cases = sorted({s.key for s in slots if s.image is not None} | set(real_labels))
    summary = _spine_summary(size_rows, intensity_rows, real_cases, cases, spacing)
    return RealismReport(files, summary, real_cases, notes)


def _copy_slots() -> list[_Slot]:
    return [_Slot(s.key, s.modality, s.focus, s.plane, s.extent_mm, whole_labels=s.whole_labels) for s in _SPINE_SLOTS]


def _map_values(labels: sitk.Image, mapping: dict[int, int]) -> sitk.Image:
    """Keep only the mapped values (old -> VerSe value); everything else becomes background."""
    array = array_from_image(labels)
    out = np.zeros(array.shape, np.uint8)
    for old, new in mapping.items():
        out[array == old] = new
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(labels)
    return image


_VERSE_VALUES = {v: v for v in VERTEBRA_LABELS.values()}
# TotalSegmentator v2 'total': 26 S1, 27 L5 ... 31 L1, 32 T12 ... 43 T1, 44 C7 ... 50 C1
_TOTALSEG_TO_VERSE = {26: 26, **{ts: 51 - ts for ts in range(27, 51)}}


#: Real case -> (image, reference labels, label values -> VerSe values; None: level points, value N = C<N>).
_SLOT_FILES = {
    "A6": ("A6_tptbox_sample_ct/sub-ct_label-22_ct.nii.gz", "A6_tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz",
           _VERSE_VALUES),
    "A5": ("A5_ts_aorta_ct_cropped/ct.nii.gz", "A5_ts_aorta_ct_cropped/vertebrae_T12.nii.gz",
           {1: VERTEBRA_LABELS["T12"]}),
    "A3": ("A3_ts_example_ct_dicom/dicom", "A3_ts_example_ct_dicom/seg_total_v2.nii.gz", _TOTALSEG_TO_VERSE),
    "A7": ("A7_tptbox_sample_mri/sub-mri_label-6_T2w.nii.gz",
           "A7_tptbox_sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz", _VERSE_VALUES),
    "A9": ("A9_sct_t2_cervical/t2.nii.gz", "A9_sct_t2_cervical/t2_labeled_center_manual.nii.gz", None),
}


def _load_spine_slot(slot: _Slot, data: Path, notes: list[str]) -> _Slot:
    """Fill the slot with its real image, VerSe labels and points; unchanged when files are missing."""
    image_file, label_file, mapping = _SLOT_FILES[slot.key]
    image_path, label_path = _find(data, image_file, notes), _find(data, label_file, notes)
    if image_path is None or label_path is None:
        return slot
    slot.image = sitk.Cast(read_image(image_path), sitk.sitkFloat32)
    labels = _read_labels(label_path, slot.image)
    if mapping is None:
        slot.points = _label_points(labels)
    else:
        slot.labels = _map_values(labels, mapping)
        slot.raw_labels = labels
    return slot


def _label_points(labels: sitk.Image) -> list[LabelledPoint]:
    """One point per label value at the centroid of its voxels (single-voxel level labels)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    return [LabelledPoint(vertebra_name(v), tuple(lps_to_ras(stats.GetCentroid(v)))) for v in stats.GetLabels()]


def _load_size_references(data: Path, notes: list[str]) -> dict[str, sitk.Image]:
    """Real vertebra label maps (VerSe values) for the size statistics: A8, A6, A3, A5, A7."""
    sources = {
        "A8": ("A8_verse_sub-verse004_labels_only/sub-verse004_seg-vert_msk.nii.gz", _VERSE_VALUES),
        "A6": ("A6_tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz", _VERSE_VALUES),
        "A3": ("A3_ts_example_ct_dicom/seg_total_v2.nii.gz", _TOTALSEG_TO_VERSE),
        "A5": ("A5_ts_aorta_ct_cropped/vertebrae_T12.nii.gz", {1: VERTEBRA_LABELS["T12"]}),
        "A7": ("A7_tptbox_sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz", _VERSE_VALUES),
    }
    out = {}
    for key, (relative, mapping) in sources.items():
        path = _find(data, relative, notes)
        if path is not None:
            out[key] = _map_values(_read_labels(path), mapping)
    return out


# ------------------------------------------------------------------------------------ montage / crops


def _label_centroids(labels: sitk.Image) -> dict[str, np.ndarray]:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(labels, sitk.sitkUInt16))
    return {vertebra_name(v): lps_to_ras(stats.GetCentroid(v)) for v in stats.GetLabels()}


def _focus_point(slot_or_case, focus: str) -> LabelledPoint | None:
    """The focus level's centre: its point, else its label centroid, else the nearest level's."""
    points = getattr(slot_or_case, "points", None) or []
    labels = getattr(slot_or_case, "labels", None)
    centres = {p.label: np.asarray(p.ras) for p in points}
    if labels is not None:
        centres = {**_label_centroids(labels), **centres}
    centres = {name: c for name, c in centres.items() if name in VERTEBRA_LABELS}
    if not centres:
        return None
    name = min(centres, key=lambda n: abs(vertebra_index(n) - vertebra_index(focus)))
    return LabelledPoint(name, tuple(float(v) for v in centres[name]))


def _ras_box(image: sitk.Image) -> np.ndarray:
    """Half extents (mm) along R, A, S of the image's bounding box."""
    size = np.array(image.GetSize(), float)
    corners = np.array([[i, j, k] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
                        for k in (-0.5, size[2] - 0.5)])
    ras = index_to_ras(image, corners)
    return (ras.max(axis=0) - ras.min(axis=0)) / 2


def _crop(image: sitk.Image, centre_ras, half_extent_mm) -> sitk.Image:
    """The voxels of ``image`` inside an RAS-aligned box around ``centre_ras`` (clamped to the image)."""
    centre = np.asarray(centre_ras, float)
    half = np.broadcast_to(np.asarray(half_extent_mm, float), (3,))
    corners = np.array([centre + half * np.array([a, b, c]) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)])
    ijk = ras_to_index(image, corners)
    size = np.array(image.GetSize())
    low = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, size - 1)
    high = np.clip(np.ceil(ijk.max(axis=0)).astype(int), 0, size - 1)
    return sitk.RegionOfInterest(image, [int(v) for v in high - low + 1], [int(v) for v in low])


def _generated_crop(case, slot: _Slot, images=("image", "labels", "tissue")):
    """(point, {name: cropped image}) of a generated case around the slot's focus level."""
    point = _focus_point(case, slot.focus)
    half = _ras_box(slot.image) if slot.image is not None else np.full(3, slot.extent_mm / 2)
    if point is None:
        return None, {}
    return point, {name: _crop(getattr(case, name), point.ras, half) for name in images}


def _spine_montage(slots: list[_Slot], generated: dict, path: Path, found: bool) -> Path:
    real_row, generated_row = [], []
    for slot in slots:
        case = generated[slot.modality][0]
        point, crops = _generated_crop(case, slot, images=("image",))
        if slot.image is not None:
            real_point = _focus_point(slot, slot.focus)
            real_row.append(Panel(slot.image, [real_point] if real_point else None, plane=slot.plane,
                                  title=f"real {slot.key} {slot.modality.upper()} ({slot.plane})"))
        elif found:
            real_row.append(None)
        if crops:
            generated_row.append(Panel(crops["image"], [point], plane=slot.plane,
                                       title=f"generated {slot.modality.upper()} ({slot.plane})"))
    panels = [p for p in real_row if p is not None] + generated_row
    columns = max(len(generated_row), 1)
    if any(p is None for p in real_row):  # a real case is missing: rows no longer line up, so no real row
        panels = generated_row
    title = "Spine: real cases (top) vs generated (bottom), same field of view" if found and len(panels) > columns \
        else "Spine: generated cases only (no real cases found)"
    return save_montage_png(panels, path, columns=columns, title=title)


# ------------------------------------------------------------------------------------- intensities


def _spine_classes(image: sitk.Image, labels: sitk.Image | None, modality: str, tissue: sitk.Image | None = None,
                   real_labels: sitk.Image | None = None) -> dict[str, np.ndarray]:
    """Intensities per class: CT in HU (air excluded); MR relative to the crop's 99th percentile."""
    values = array_from_image(image).astype(np.float32)
    bone = array_from_image(labels) > 0
    disc = np.zeros(bone.shape, bool)
    if tissue is not None:
        from ..spine_render import DISC

        disc = array_from_image(tissue) == DISC
    if real_labels is not None:  # A7: discs are labelled 105, 106 (disc below C5, C6)
        raw = array_from_image(real_labels)
        disc = (raw >= 100) & (raw < 200)
    if modality == "ct":
        rest = ~bone & (values > -900)
        return {"vertebra": values[bone], "rest": values[rest]}
    scale = float(np.percentile(values, 99)) or 1.0
    values = values / scale
    return {"vertebra": values[bone], "disc": values[disc & ~bone], "rest": values[~bone & ~disc]}


def _spine_intensity_sets(slots, generated) -> list[tuple[str, str, str, dict[str, np.ndarray]]]:
    """(source, case, modality, class -> values) for every real slot with masks and its generated crops."""
    sets = []
    for slot in slots:
        if slot.labels is None and slot.image is not None:
            continue  # A9: no vertebra masks
        if slot.labels is not None:
            raw = slot.raw_labels if slot.key == "A7" else None
            classes = _spine_classes(slot.image, slot.labels, slot.modality, real_labels=raw)
            if not slot.whole_labels:
                classes.pop("rest")  # unlabelled vertebrae would count as "rest"
            sets.append(("real", slot.key, slot.modality, classes))
        for index, case in enumerate(generated[slot.modality]):
            _, crops = _generated_crop(case, slot)
            if crops:
                classes = _spine_classes(crops["image"], crops["labels"], slot.modality, tissue=crops["tissue"])
                sets.append(("generated", f"seed {case.metadata['seed']} at {slot.key}", slot.modality, classes))
    return sets



def _pooled(sets, source: str, modality: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    pooled: dict[str, list] = {}
    for set_source, _, set_modality, classes in sets:
        if set_source == source and set_modality == modality:
            for name, values in classes.items():
                pooled.setdefault(name, []).append(_sample(values, rng))
    return {name: np.concatenate(parts) for name, parts in pooled.items()}


def _spine_histograms(sets, path: Path) -> Path:
    panels = [
        ("CT: real A6/A5/A3 masks (solid) vs generated (dashed)", "HU", _pooled(sets, "real", "ct"),
         _pooled(sets, "generated", "ct")),
        ("T2 MR: real A7 (solid) vs generated cervical (dashed)", "intensity / 99th percentile",
         _pooled(sets, "real", "t2"), _pooled(sets, "generated", "t2")),
    ]
    return _histogram_figure(panels, path, "Spine intensities per tissue")


# ------------------------------------------------------------------------------------------- sizes


def vertebra_sizes(labels: sitk.Image) -> list[dict]:
    """Size measures of every vertebra in a VerSe label map (see the module notes for the proxies).

    Keys: level, complete (mask does not touch the image border), volume (cm³), body height,
    body width, box length / width / thickness (oriented bounding box, mm, largest first).
    """
    labels = sitk.Cast(labels, sitk.sitkUInt16)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeOrientedBoundingBoxOn()
    stats.Execute(labels)
    values = sorted((v for v in stats.GetLabels() if v in VERTEBRA_LABELS.values()),
                    key=lambda v: vertebra_index(vertebra_name(v)))
    centroids = {v: lps_to_ras(stats.GetCentroid(v)) for v in values}
    array = array_from_image(labels)
    touching = _border_values(array)
    rows = []
    for position, value in enumerate(values):
        axis = _spine_axis(centroids, values, position)
        kji = np.argwhere(array == value)
        height, width, depth = _body_extents(index_to_ras(labels, kji[:, ::-1].astype(float)), axis)
        box = sorted(stats.GetOrientedBoundingBoxSize(value), reverse=True)
        rows.append({"level": vertebra_name(value), "complete": value not in touching,
                     "volume": stats.GetPhysicalSize(value) / 1000.0, "body height": height, "body width": width,
                     "body depth": depth, "box length": box[0], "box width": box[1], "box thickness": box[2]})
    return rows


def _border_values(array: np.ndarray) -> set[int]:
    faces = [array[0], array[-1], array[:, 0], array[:, -1], array[:, :, 0], array[:, :, -1]]
    return set(np.unique(np.concatenate([f.ravel() for f in faces])).tolist())


def _spine_axis(centroids: dict, values: list[int], position: int) -> np.ndarray:
    """Unit vector along the spine at a level: between its neighbours' centroids, else superior."""
    above = centroids[values[max(position - 1, 0)]]
    below = centroids[values[min(position + 1, len(values) - 1)]]
    axis = above - below
    if np.linalg.norm(axis) < 1.0:
        return np.array([0.0, 0.0, 1.0])
    axis = axis / np.linalg.norm(axis)
    return axis if axis[2] >= 0 else -axis


def _body_extents(ras: np.ndarray, axis: np.ndarray) -> tuple[float, float, float]:
    """(height, width, depth) proxies of the vertebral body from the vertebra's voxel centres (RAS)."""
    anterior = np.array([0.0, 1.0, 0.0]) - axis * axis[1]
    anterior /= max(np.linalg.norm(anterior), 1e-9)
    right = np.cross(anterior, axis)
    a = ras @ anterior
    front, back = np.percentile(a, [99, 1])
    body = ras[a >= front - BODY_FRACTION * (front - back)]
    spans = [float(np.subtract(*np.percentile(body @ d, [98, 2]))) for d in (axis, right, anterior)]
    return spans[0], spans[1], spans[2]


def _size_rows(real_labels: dict[str, sitk.Image], generated: dict) -> list[dict]:
    rows = []
    for key, labels in real_labels.items():
        rows += [{"source": "real", "case": key, **row} for row in vertebra_sizes(labels)]
    for modality, cases in generated.items():
        for case in cases:
            flags = {r.name: r.complete for r in case.vertebrae}
            for row in vertebra_sizes(case.labels):
                row["complete"] = flags.get(row["level"], row["complete"])  # known exactly for generated cases
                rows.append({"source": "generated", "case": f"{modality} seed {case.metadata['seed']}", **row})
    levels = sorted({r["level"] for r in rows} & set(morphometry.LEVEL_SIZES), key=vertebra_index)
    for level in levels:
        size = morphometry.LEVEL_SIZES[level]
        rows.append({"source": "published", "case": "morphometry.py", "level": level, "complete": True,
                     "body height": size.height, "body width": size.width or None, "body depth": size.depth or None})
    return rows


def _size_plot(rows: list[dict], path: Path) -> Path:
    levels = sorted({r["level"] for r in rows}, key=vertebra_index)
    x = {level: index for index, level in enumerate(levels)}
    figure = Figure(figsize=(13.0, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    for index, (key, unit) in enumerate((("volume", "cm³"), ("body height", "mm"), ("body width", "mm"))):
        axes = figure.add_subplot(1, 3, index + 1)
        _plot_generated(axes, rows, key, x)
        real = [r for r in rows if r["source"] == "real" and r["complete"] and r.get(key) is not None]
        for case in sorted({r["case"] for r in real}):
            points = [(x[r["level"]], r[key]) for r in real if r["case"] == case]
            axes.plot(*zip(*points), marker="o", linestyle="none", markersize=6, label=f"real {case}")
        published = [(x[r["level"]], r[key]) for r in rows if r["source"] == "published" and r.get(key)]
        if published:
            axes.plot(*zip(*published), color="k", linewidth=1.2, label="published")
        axes.set_xticks(range(len(levels)), levels, rotation=90, fontsize=7)
        axes.set_ylabel(f"{key} ({unit})")
        axes.set_title(f"{key} per level (complete vertebrae)", fontsize=9)
        axes.legend(fontsize=7)
    figure.suptitle("Vertebra sizes: real masks, generated cases, published morphometry")
    figure.text(0.5, 0.005, RESEARCH_NOTICE, ha="center", va="bottom", fontsize=7, color="0.35")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(figure, path)


def _plot_generated(axes, rows, key, x) -> None:
    generated = [r for r in rows if r["source"] == "generated" and r["complete"]]
    by_level: dict[str, list[float]] = {}
    for r in generated:
        by_level.setdefault(r["level"], []).append(r[key])
    if by_level:
        levels = sorted(by_level, key=vertebra_index)
        means = [np.mean(by_level[level]) for level in levels]
        sds = [np.std(by_level[level]) for level in levels]
        axes.errorbar([x[level] for level in levels], means, yerr=sds, fmt="s", color="tab:red", alpha=0.7,
                      markersize=5, capsize=2, label="generated (mean ± SD)")


def _spine_summary(size_rows, intensity_rows, real_cases, cases, spacing) -> list[str]:
    lines = [f"Spine realism: {cases} generated lumbar CT + {cases} cervical T2 case(s) at {spacing:g} mm; "
             f"real cases: {', '.join(real_cases) if real_cases else 'none found'}."]
    for level in ("C6", "T12", "L3"):
        lines.append(_level_line(size_rows, level))
    for modality, label in (("CT", "CT vertebra median"), ("T2", "T2 vertebra/rest median ratio")):
        lines.append(_intensity_line(intensity_rows, modality, label))
    return [line for line in lines if line]


def _mean(rows, source, level, key):
    values = [r[key] for r in rows if r["source"] == source and r["level"] == level and r["complete"]
              and r.get(key) is not None]
    return (float(np.mean(values)), len(values)) if values else (None, 0)


def _level_line(rows, level) -> str:
    parts = []
    for source in ("real", "generated", "published"):
        volume, n = _mean(rows, source, level, "volume")
        height, _ = _mean(rows, source, level, "body height")
        if height is None:
            continue
        text = f"{source}: body height {height:.1f} mm"
        if volume is not None:
            text += f", volume {volume:.1f} cm³"
        parts.append(text + (f" (n={n})" if source != "published" else ""))
    return f"  {level}: " + "; ".join(parts) if parts else ""


def _intensity_line(rows, image, label) -> str:
    parts = []
    for source in ("real", "generated"):
        vertebra = [r["median"] for r in rows if r["source"] == source and r["image"] == image and r["class"] == "vertebra"]
        rest = [r["median"] for r in rows if r["source"] == source and r["image"] == image and r["class"] == "rest"]
        if not vertebra:
            continue
        if image == "CT":
            parts.append(f"{source} {np.mean(vertebra):.0f} HU")
        elif rest:
            parts.append(f"{source} {np.mean(vertebra) / max(np.mean(rest), 1e-6):.2f}")
    return f"  {label}: " + ", ".join(parts) if parts else ""




