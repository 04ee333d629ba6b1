"""How real do the generated cases look? Real and generated cases side by side, with numbers.

For the spine: a montage (real row over generated row: same modality, same level, same plane and
the same physical field of view), intensity histograms per tissue (CT: vertebra masks vs the rest;
MR: vertebra, disc, rest) and vertebra sizes per level -- volume, a vertebral-body height proxy
along the local spine axis, a body width proxy and the oriented bounding box -- measured the same
way on real reference masks and on generated label maps, beside the published morphometry
(:mod:`spinebrain.synth.morphometry`). For the brain: a montage, intensity histograms per tissue
and lesion class, and tissue / lesion volumes.

Real cases come from the real-data folder (see /work/shared/data/README.md: spine CT A3/A5/A6,
spine MR A7/A9, VerSe labels A8; brain B2/B5/B6). Without it the report holds generated cases
only and says so. Generated cases use a coarse grid (default 2 mm) so the report takes seconds.

Body proxies: the vertebra's voxels within the anterior 35 % of its antero-posterior extent (the
body, for every level C2-S1) are projected on the local spine axis (centroid of the level above
to that of the level below) and on the left-right axis; the 2nd-98th percentile ranges are the
height and width proxies. They approximate the body's height and endplate width, not the
landmark-based measurements of the morphometry papers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import RESEARCH_NOTICE
from ..anatomy import VERTEBRA_LABELS, vertebra_index, vertebra_name
from ..geometry import array_from_image, index_to_ras, lps_to_ras, ras_to_index
from ..io import atomic_path, read_image
from ..outputs import write_table
from ..pictures import Panel, save_montage_png
from ..points import LabelledPoint
from ..tables import Column
from . import morphometry

BODY_FRACTION = 0.35  # anterior share of a vertebra's AP extent taken as its body
HISTOGRAM_SAMPLES = 200_000  # voxels per class and case: plenty for a histogram, fast on 2 cores

SIZE_COLUMNS = [
    Column("source", "text"), Column("case", "text"), Column("level", "text"), Column("complete", "bool"),
    Column("volume", "float", "cm³"), Column("body height", "float", "mm"), Column("body width", "float", "mm"),
    Column("body depth", "float", "mm"), Column("box length", "float", "mm"), Column("box width", "float", "mm"),
    Column("box thickness", "float", "mm"),
]
INTENSITY_COLUMNS = [
    Column("source", "text"), Column("case", "text"), Column("image", "text"), Column("class", "text"),
    Column("unit", "text"), Column("voxels", "int"), Column("mean", "float"), Column("median", "float"),
    Column("p5", "float"), Column("p95", "float"),
]
BRAIN_VOLUME_COLUMNS = [Column("source", "text"), Column("case", "text"), Column("structure", "text"),
                        Column("volume", "float", "mL")]


SPINE_CASE_FOLDERS = ("A3_ts_example_ct_dicom", "A5_ts_aorta_ct_cropped", "A6_tptbox_sample_ct", "A7_tptbox_sample_mri",
                      "A8_verse_sub-verse004_labels_only", "A9_sct_t2_cervical")
BRAIN_CASE_FOLDERS = ("B2_ms_lesjak2017_mni", "B5_nii2mesh_t1_fast", "B6_tcga_du_7294_lgg_silver")


def _real_data_found(data: Path, folders: tuple[str, ...], notes: list[str]) -> bool:
    """True when ``data`` holds at least one of the case folders; else a note says why not."""
    if any((data / folder).is_dir() for folder in folders):
        return True
    where = "not found" if not data.is_dir() else "holds none of the real cases"
    notes.append(f"Real-data folder {data} {where} (set SPINEBRAIN_TEST_DATA or --data): generated cases only.")
    return False


def default_data_dir() -> Path:
    """$SPINEBRAIN_TEST_DATA, else ``../shared/data`` beside the repository (the test fixtures' rule)."""
    repository = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("SPINEBRAIN_TEST_DATA", repository.parent / "shared" / "data"))


@dataclass
class RealismReport:
    files: list[Path]
    summary: list[str]  # short lines for people
    real_cases: list[str]  # real cases used ("A6", ...); empty without the real-data folder
    notes: list[str] = field(default_factory=list)  # what was missing or skipped


class _Log:
    """Progress reporting that works with or without a Progress object."""

    def __init__(self, progress, total_steps: int):
        self.progress, self.total, self.done = progress, total_steps, 0

    def step(self, message: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.update("realism", self.done / self.total, message)


# ============================================================================================ spine


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
    from .spine import generate_spine

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


def _find(data: Path, relative: str, notes: list[str]) -> Path | None:
    path = data / relative
    if not path.exists():
        notes.append(f"Real case file missing: {path}; that comparison is left out.")
        return None
    return path


def _read_labels(path: Path, reference: sitk.Image | None = None) -> sitk.Image:
    """A label map as uint16 (some references are float), resampled onto ``reference`` if given."""
    image = sitk.Cast(sitk.Round(sitk.ReadImage(str(path), sitk.sitkFloat32)), sitk.sitkUInt16)
    if reference is not None:
        image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    return image


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


def _load_spine_slot(slot: _Slot, data: Path, notes: list[str]) -> _Slot:
    """Fill the slot with its real image, VerSe labels and points; unchanged when files are missing."""
    if slot.key == "A6":
        image_path = _find(data, "A6_tptbox_sample_ct/sub-ct_label-22_ct.nii.gz", notes)
        label_path = _find(data, "A6_tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz", notes)
        mapping = _VERSE_VALUES
    elif slot.key == "A5":
        image_path = _find(data, "A5_ts_aorta_ct_cropped/ct.nii.gz", notes)
        label_path = _find(data, "A5_ts_aorta_ct_cropped/vertebrae_T12.nii.gz", notes)
        mapping = {1: VERTEBRA_LABELS["T12"]}
    elif slot.key == "A3":
        image_path = _find(data, "A3_ts_example_ct_dicom/dicom", notes)
        label_path = _find(data, "A3_ts_example_ct_dicom/seg_total_v2.nii.gz", notes)
        mapping = _TOTALSEG_TO_VERSE
    elif slot.key == "A7":
        image_path = _find(data, "A7_tptbox_sample_mri/sub-mri_label-6_T2w.nii.gz", notes)
        label_path = _find(data, "A7_tptbox_sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz", notes)
        mapping = _VERSE_VALUES
    else:  # A9: no vertebra masks, but mid-vertebral level points (value N = level C<N>)
        image_path = _find(data, "A9_sct_t2_cervical/t2.nii.gz", notes)
        label_path = _find(data, "A9_sct_t2_cervical/t2_labeled_center_manual.nii.gz", notes)
        mapping = None
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


def _sample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if values.size > HISTOGRAM_SAMPLES:
        values = rng.choice(values, HISTOGRAM_SAMPLES, replace=False)
    return values.astype(np.float32)


def _spine_classes(image: sitk.Image, labels: sitk.Image | None, modality: str, tissue: sitk.Image | None = None,
                   real_labels: sitk.Image | None = None) -> dict[str, np.ndarray]:
    """Intensities per class: CT in HU (air excluded); MR relative to the crop's 99th percentile."""
    values = array_from_image(image).astype(np.float32)
    bone = array_from_image(labels) > 0
    disc = np.zeros(bone.shape, bool)
    if tissue is not None:
        from .spine_render import DISC

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


def _stats_rows(sets) -> list[dict]:
    rows = []
    for source, case, modality, classes in sets:
        for name, values in classes.items():
            if values.size == 0:
                continue
            p5, median, p95 = np.percentile(values, [5, 50, 95])
            rows.append({"source": source, "case": case, "image": modality.upper(), "class": name,
                         "unit": "HU" if modality == "ct" else "relative to p99", "voxels": int(values.size),
                         "mean": float(values.mean()), "median": float(median), "p5": float(p5), "p95": float(p95)})
    return rows


_CLASS_COLOURS = {"vertebra": "tab:orange", "rest": "tab:blue", "disc": "tab:green", "Grey matter": "0.45",
                  "White matter": "tab:olive", "Cerebrospinal fluid": "tab:blue", "lesion": "tab:red",
                  "tumour core": "tab:purple", "oedema": "tab:orange", "brain": "tab:gray"}


def _histogram_figure(panels: list[tuple[str, str, dict, dict]], path: Path, title: str) -> Path:
    """panels: (title, x label, real class -> values, generated class -> values); solid real, dashed generated."""
    figure = Figure(figsize=(5.0 * len(panels), 4.0), dpi=100)
    FigureCanvasAgg(figure)
    for index, (panel_title, xlabel, real, gen) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        everything = [v for v in (*real.values(), *gen.values()) if v.size]
        if not everything:
            axes.set_title(f"{panel_title}\n(no data)", fontsize=9)
            continue
        low, high = np.percentile(np.concatenate(everything), [0.5, 99.5])
        bins = np.linspace(low, high, 80)
        for style, classes, source in (("-", real, "real"), ("--", gen, "generated")):
            for name, values in classes.items():
                if values.size:
                    axes.hist(values, bins=bins, density=True, histtype="step", linestyle=style, linewidth=1.4,
                              color=_CLASS_COLOURS.get(name, "k"), label=f"{source} {name}")
        axes.set_title(panel_title, fontsize=9)
        axes.set_xlabel(xlabel)
        axes.set_ylabel("density")
        axes.legend(fontsize=7)
    figure.suptitle(title)
    figure.text(0.5, 0.005, RESEARCH_NOTICE, ha="center", va="bottom", fontsize=7, color="0.35")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", facecolor="white")
    return path


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


# ============================================================================================ brain


@dataclass
class _BrainReal:
    key: str
    images: dict[str, sitk.Image]  # contrast -> image
    classes: dict[str, np.ndarray]  # class name -> boolean mask [k, j, i] on the images' grid
    focus: dict[str, LabelledPoint | None] = field(default_factory=dict)  # contrast -> slice point


def brain_report(out_dir, data_dir=None, cases: int = 2, spacing: float = 2.0, progress=None) -> RealismReport:
    """Write the brain realism report into ``out_dir``: montage, histograms and volumes."""
    from .brain import generate_brain

    out = Path(out_dir)
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    log = _Log(progress, 3 + 2 * cases)
    notes: list[str] = []
    found = _real_data_found(data, BRAIN_CASE_FOLDERS, notes)
    real = _load_brain_reals(data, notes) if found else {}
    log.step("real brain cases read")
    generated = {"ms": [], "tumour": []}
    for seed in range(cases):
        generated["ms"].append(generate_brain(seed, contrasts=("t1", "t2", "flair"), lesions="ms", spacing=spacing))
        log.step(f"generated brain with MS lesions, seed {seed}")
        generated["tumour"].append(generate_brain(seed, contrasts=("t1", "t2", "flair", "t1c"), lesions="tumour",
                                                  spacing=spacing))
        log.step(f"generated brain with a tumour, seed {seed}")

    sets = _brain_intensity_sets(real, generated)
    files = [_brain_montage(real, generated, out / "realism_brain.png")]
    files.append(write_table(_stats_rows(sets), INTENSITY_COLUMNS, out / "brain_intensity_stats.csv"))
    files.append(_brain_histograms(sets, out / "brain_intensity_histograms.png"))
    volume_rows = _brain_volume_rows(real, generated)
    files.append(write_table(volume_rows, BRAIN_VOLUME_COLUMNS, out / "brain_volumes.csv"))
    log.step("montage, histograms and volumes written")
    summary = _brain_summary(volume_rows, _stats_rows(sets), sorted(real), cases, spacing)
    summary += _brain_measure_lines(real, generated, sets)
    return RealismReport(files, summary, sorted(real), notes)


def _load_brain_reals(data: Path, notes: list[str]) -> dict[str, _BrainReal]:
    reals = {}
    for key, loader in (("B5", _load_b5), ("B2", _load_b2), ("B6", _load_b6)):
        case = loader(data, notes)
        if case is not None:
            reals[key] = case
    return reals


def _load_b5(data: Path, notes) -> _BrainReal | None:
    """T1 with FSL FAST partial-volume maps: GM / WM > 0.5; CSF = rest of the filled brain."""
    from scipy import ndimage

    paths = [_find(data, f"B5_nii2mesh_t1_fast/{name}.nii.gz", notes) for name in ("bet", "pve_1", "pve_2")]
    if None in paths:
        return None
    t1 = sitk.Cast(read_image(paths[0]), sitk.sitkFloat32)
    gm, wm = (array_from_image(read_image(p)) for p in paths[1:])
    tissue = (gm + wm) > 0.1
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(tissue, iterations=3))  # excludes the added spheres
    classes = {"Grey matter": gm > 0.5, "White matter": wm > 0.5,
               "Cerebrospinal fluid": brain & ((gm + wm) < 0.3) & (array_from_image(t1) > 0)}
    return _BrainReal("B5", {"t1": t1}, classes, {"t1": None})


def _load_b2(data: Path, notes) -> _BrainReal | None:
    folder = "B2_ms_lesjak2017_mni/patient07"
    paths = {c: _find(data, f"{folder}/{c.upper()}.nii.gz", notes) for c in ("t1", "t2", "flair")}
    lesion_path = _find(data, f"{folder}/GOLD_STANDARD.nii.gz", notes)
    if None in paths.values() or lesion_path is None:
        return None
    images = {c: sitk.Cast(read_image(p), sitk.sitkFloat32) for c, p in paths.items()}
    lesion = array_from_image(_read_labels(lesion_path, images["flair"])) > 0
    brain = array_from_image(images["t1"]) > 0
    focus = _largest_component_point(lesion, images["flair"], "lesion")
    return _BrainReal("B2", images, {"lesion": lesion, "brain": brain & ~lesion},
                      {c: focus for c in images})


def _load_b6(data: Path, notes) -> _BrainReal | None:
    folder = "B6_tcga_du_7294_lgg_silver"
    files = {"t1": "t1_bet", "t1c": "t1c_bet", "t2": "t2_bet", "flair": "fla_bet"}
    paths = {c: _find(data, f"{folder}/{name}.nii.gz", notes) for c, name in files.items()}
    seg_path = _find(data, f"{folder}/seg_fusion_simple.nii.gz", notes)
    if None in paths.values() or seg_path is None:
        return None
    images = {c: sitk.Cast(read_image(p), sitk.sitkFloat32) for c, p in paths.items()}
    seg = array_from_image(_read_labels(seg_path, images["t1"]))
    brain = array_from_image(images["t1"]) > 0
    focus = _largest_component_point(seg > 0, images["t1"], "tumour")
    return _BrainReal("B6", images, {"tumour core": seg == 1, "oedema": seg == 2, "brain": brain & (seg == 0)},
                      {c: focus for c in images})


def _largest_component_point(mask: np.ndarray, image: sitk.Image, name: str) -> LabelledPoint | None:
    from scipy import ndimage

    components, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    kji = np.argwhere(components == int(np.argmax(sizes)) + 1).mean(axis=0)
    return LabelledPoint(name, tuple(float(v) for v in index_to_ras(image, kji[::-1])))


def _generated_brain_classes(case) -> dict[str, np.ndarray]:
    tissue = array_from_image(case.tissue)
    lesions = array_from_image(case.lesions)
    healthy = lesions == 0
    classes = {name: (tissue == value) & healthy for value, name in case.tissue_names.items()}
    if case.metadata.get("lesions") == "ms":
        classes["lesion"] = lesions > 0
        classes["brain"] = (tissue > 0) & healthy
    elif case.metadata.get("lesions") == "tumour":
        names = {v: n for v, n in case.lesion_names.items()}
        oedema = [v for v, n in names.items() if n == "Oedema"]
        classes["oedema"] = np.isin(lesions, oedema)
        classes["tumour core"] = (lesions > 0) & ~classes["oedema"]
        classes["brain"] = (tissue > 0) & healthy
    return classes


def _normalised(image: sitk.Image, brain: np.ndarray) -> np.ndarray:
    """Intensities divided by the 99th percentile inside the brain: MR has no absolute scale."""
    values = array_from_image(image).astype(np.float32)
    inside = values[brain]
    scale = float(np.percentile(inside, 99)) if inside.size else 1.0
    return values / (scale or 1.0)


def _brain_intensity_sets(real: dict[str, _BrainReal], generated: dict) -> list:
    sets = []
    for key, case in real.items():
        brain = np.logical_or.reduce(list(case.classes.values()))
        for contrast, image in case.images.items():
            values = _normalised(image, brain)
            sets.append(("real", key, contrast, {n: values[m] for n, m in case.classes.items()}))
    for kind, cases in generated.items():
        for case in cases:
            classes = _generated_brain_classes(case)
            brain = array_from_image(case.tissue) > 0
            for contrast, image in case.images.items():
                values = _normalised(image, brain)
                sets.append(("generated", f"{kind} seed {case.metadata['seed']}", contrast,
                             {n: values[m] for n, m in classes.items()}))
    return sets


def _select(sets, source: str, contrast: str, keys: tuple[str, ...], classes: tuple[str, ...]) -> dict:
    rng = np.random.default_rng(0)
    pooled: dict[str, list] = {}
    for set_source, case, set_contrast, values in sets:
        if set_source == source and set_contrast == contrast and any(case.startswith(k) for k in keys):
            for name in classes:
                if name in values and values[name].size:
                    pooled.setdefault(name, []).append(_sample(values[name], rng))
    return {name: np.concatenate(parts) for name, parts in pooled.items()}


def _brain_histograms(sets, path: Path) -> Path:
    tissues = ("Grey matter", "White matter", "Cerebrospinal fluid")
    tumour = ("tumour core", "oedema", "brain")
    panels = [
        ("T1 tissue: real B5 (FSL FAST) vs generated", "T1 / 99th percentile in brain",
         _select(sets, "real", "t1", ("B5",), tissues), _select(sets, "generated", "t1", ("ms", "tumour"), tissues)),
        ("FLAIR: real B2 MS lesions vs generated MS", "FLAIR / 99th percentile in brain",
         _select(sets, "real", "flair", ("B2",), ("lesion", "brain")),
         _select(sets, "generated", "flair", ("ms",), ("lesion", "brain"))),
        ("T2: real B6 glioma vs generated tumour", "T2 / 99th percentile in brain",
         _select(sets, "real", "t2", ("B6",), tumour), _select(sets, "generated", "t2", ("tumour",), tumour)),
        ("T1c: real B6 glioma vs generated tumour", "T1c / 99th percentile in brain",
         _select(sets, "real", "t1c", ("B6",), tumour), _select(sets, "generated", "t1c", ("tumour",), tumour)),
    ]
    return _histogram_figure(panels, path, "Brain intensities per tissue and lesion class (solid real, dashed generated)")


def _brain_montage(real: dict[str, _BrainReal], generated: dict, path: Path) -> Path:
    # (real case, contrast, plane, generated kind, focus class)
    columns = [("B5", "t1", "axial", "ms", None), ("B5", "t1", "sagittal", "ms", None),
               ("B2", "flair", "axial", "ms", "lesion"), ("B6", "t1c", "axial", "tumour", "tumour"),
               ("B6", "t2", "axial", "tumour", "tumour")]
    real_row, generated_row = [], []
    for key, contrast, plane, kind, focus in columns:
        case = generated[kind][0]
        point = None
        if focus is not None:
            point = _largest_component_point(array_from_image(case.lesions) > 0, case.tissue, focus)
        generated_row.append(Panel(case.images[contrast], [point] if point else None, plane=plane,
                                   title=f"generated {contrast.upper()} ({kind}, {plane})"))
        if key in real:
            real_point = real[key].focus.get(contrast)
            real_row.append(Panel(real[key].images[contrast], [real_point] if real_point else None, plane=plane,
                                  title=f"real {key} {contrast.upper()} ({plane})"))
    if len(real_row) == len(generated_row):
        title = "Brain: real cases (top) vs generated (bottom)"
        panels = real_row + generated_row
    else:
        title = "Brain: generated cases only (real cases not found)"
        panels = generated_row
    return save_montage_png(panels, path, columns=len(columns), title=title)


def _brain_volume_rows(real: dict[str, _BrainReal], generated: dict) -> list[dict]:
    rows = []
    for key, case in real.items():
        voxel_ml = float(np.prod(next(iter(case.images.values())).GetSpacing())) / 1000.0
        for name, mask in case.classes.items():
            rows.append({"source": "real", "case": key, "structure": name, "volume": float(mask.sum() * voxel_ml)})
    for kind, cases in generated.items():
        for case in cases:
            classes = _generated_brain_classes(case)
            voxel_ml = float(np.prod(case.tissue.GetSpacing())) / 1000.0
            label = f"{kind} seed {case.metadata['seed']}"
            rows += [{"source": "generated", "case": label, "structure": name, "volume": float(mask.sum() * voxel_ml)}
                     for name, mask in classes.items()]
            rows.append({"source": "generated", "case": label, "structure": "Intracranial volume",
                         "volume": case.volumes["icv_ml"]})
    return rows


def border_sharpness(image: sitk.Image, gm: np.ndarray, wm: np.ndarray) -> float:
    """Mean gradient magnitude on the GM/WM border (per mm) over the GM/WM contrast (medians).

    About 1 / (width of the GM-WM transition in mm). The border is every GM voxel face-touching
    WM and every WM voxel face-touching GM. A blurry image spreads the same step over more
    millimetres, so its value is lower; noise raises it a little.
    """
    from scipy import ndimage

    values = array_from_image(image).astype(np.float32)
    spacing = np.array(image.GetSpacing())[::-1]  # k, j, i
    gradient = np.sqrt(sum(g * g for g in np.gradient(values, *spacing)))
    border = (gm & ndimage.binary_dilation(wm)) | (wm & ndimage.binary_dilation(gm))
    scale = float(np.median(values[wm]) - np.median(values[gm])) if wm.any() and gm.any() else 0.0
    return float(gradient[border].mean() / scale) if border.any() and scale > 0 else float("nan")


def edge_density(image: sitk.Image, gm: np.ndarray, wm: np.ndarray) -> float:
    """Mean gradient magnitude (per mm) over all GM and WM voxels, over the GM/WM contrast.

    High where the tissue is finely folded (many GM/WM borders), low for a smooth, blurry brain.
    """
    values = array_from_image(image).astype(np.float32)
    spacing = np.array(image.GetSpacing())[::-1]  # k, j, i
    gradient = np.sqrt(sum(g * g for g in np.gradient(values, *spacing)))
    scale = float(np.median(values[wm]) - np.median(values[gm])) if wm.any() and gm.any() else 0.0
    return float(gradient[gm | wm].mean() / scale) if scale > 0 else float("nan")


def histogram_overlap(a: np.ndarray, b: np.ndarray, bins: int = 64) -> float:
    """Shared area of two normalised histograms (1 = identical distributions, 0 = disjoint)."""
    if a.size == 0 or b.size == 0:
        return float("nan")
    low, high = np.percentile(np.concatenate([a, b]), [0.5, 99.5])
    edges = np.linspace(low, high, bins + 1)
    ha, _ = np.histogram(np.clip(a, low, high), edges)
    hb, _ = np.histogram(np.clip(b, low, high), edges)
    return float(np.minimum(ha / ha.sum(), hb / hb.sum()).sum())


# (label, contrast, real case, generated kinds, classes) compared by histogram overlap
_OVERLAPS = [("T1 vs B5", "t1", "B5", ("ms", "tumour"), ("Grey matter", "White matter", "Cerebrospinal fluid")),
             ("FLAIR vs B2", "flair", "B2", ("ms",), ("lesion", "brain")),
             ("T2 vs B6", "t2", "B6", ("tumour",), ("oedema", "brain")),
             ("T1c vs B6", "t1c", "B6", ("tumour",), ("oedema", "brain"))]


def _brain_measure_lines(real: dict, generated: dict, sets) -> list[str]:
    """Summary lines: GM/WM border sharpness (T1) and per-class histogram overlap with the real cases."""
    lines = []
    for label, measure in (("GM/WM border sharpness", border_sharpness), ("edge density", edge_density)):
        parts = []
        if "B5" in real:
            classes = real["B5"].classes
            parts.append(f"real B5 {measure(real['B5'].images['t1'], classes['Grey matter'], classes['White matter']):.3f}")
        values = []
        for case in generated["ms"] + generated["tumour"]:
            tissue = array_from_image(case.tissue)
            values.append(measure(case.images["t1"], tissue == 2, tissue == 3))
        if values:
            parts.append(f"generated {np.mean(values):.3f}")
        lines.append(f"  T1 {label} (mean |gradient| per mm / GM-WM contrast): " + ", ".join(parts))
    for label, contrast, key, kinds, classes in _OVERLAPS:
        if key not in real:
            continue
        a = _select(sets, "real", contrast, (key,), classes)
        b = _select(sets, "generated", contrast, kinds, classes)
        shared = [f"{name} {histogram_overlap(a[name], b[name]):.2f}" for name in classes if name in a and name in b]
        if shared:
            lines.append(f"  histogram overlap {label}: " + ", ".join(shared))
    return lines


def _brain_summary(volume_rows, intensity_rows, real_cases, cases, spacing) -> list[str]:
    lines = [f"Brain realism: {cases} generated MS + {cases} tumour case(s) at {spacing:g} mm; real cases: "
             f"{', '.join(real_cases) if real_cases else 'none found'}."]
    for structure in ("Grey matter", "White matter", "Cerebrospinal fluid"):
        parts = []
        for source in ("real", "generated"):
            values = [r["volume"] for r in volume_rows if r["source"] == source and r["structure"] == structure]
            if values:
                parts.append(f"{source} {np.mean(values):.0f} mL")
        if parts:
            lines.append(f"  {structure}: " + ", ".join(parts))
    for contrast, tissue in (("T1", "White matter"), ("FLAIR", "lesion")):
        parts = []
        for source in ("real", "generated"):
            values = [r["median"] for r in intensity_rows if r["source"] == source and r["image"] == contrast
                      and r["class"] == tissue]
            if values:
                parts.append(f"{source} {np.mean(values):.2f}")
        if parts:
            lines.append(f"  {contrast} {tissue} median (/ p99 in brain): " + ", ".join(parts))
    return lines
