"""The brain realism report: real and generated brains side by side (montage, intensities, volumes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...geometry import array_from_image, index_to_ras
from ...io import read_image
from ...outputs import write_table
from ...pictures import Panel, save_montage_png
from ...points import LabelledPoint
from .common import (
    BRAIN_CASE_FOLDERS, BRAIN_VOLUME_COLUMNS, INTENSITY_COLUMNS, RealismReport, _find, _histogram_figure, _Log,
    _read_labels, _real_data_found, _sample, _stats_rows, default_data_dir,
)


@dataclass
class _BrainReal:
    key: str
    images: dict[str, sitk.Image]  # contrast -> image
    classes: dict[str, np.ndarray]  # class name -> boolean mask [k, j, i] on the images' grid
    focus: dict[str, LabelledPoint | None] = field(default_factory=dict)  # contrast -> slice point


def brain_report(out_dir, data_dir=None, cases: int = 2, spacing: float = 2.0, progress=None) -> RealismReport:
    """Write the brain realism report into ``out_dir``: montage, histograms and volumes."""
    from ..brain import generate_brain

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
