"""What the spine and brain realism reports share: tables, real-data lookup, intensity statistics and figures."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ... import RESEARCH_NOTICE
from ...io import atomic_path
from ...protocol import as_progress
from ...tables import Column


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
    repository = Path(__file__).resolve().parents[3]  # spinebrain/synth/realism/common.py
    return Path(os.environ.get("SPINEBRAIN_TEST_DATA", repository.parent / "shared" / "data"))


@dataclass
class RealismReport:
    files: list[Path]
    summary: list[str]  # short lines for people
    real_cases: list[str]  # real cases used ("A6", ...); empty without the real-data folder
    notes: list[str] = field(default_factory=list)  # what was missing or skipped


class _Log:
    """Counts the report's steps into one progress fraction."""

    def __init__(self, progress, total_steps: int):
        self.progress, self.total, self.done = as_progress(progress), total_steps, 0

    def step(self, message: str) -> None:
        self.done += 1
        self.progress.update("realism", self.done / self.total, message)




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


def _sample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if values.size > HISTOGRAM_SAMPLES:
        values = rng.choice(values, HISTOGRAM_SAMPLES, replace=False)
    return values.astype(np.float32)


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



_CLASS_COLOURS = {"vertebra": "tab:orange", "rest": "tab:blue", "disc": "tab:green", "Grey matter": "0.45",
                  "White matter": "tab:olive", "Cerebrospinal fluid": "tab:blue", "lesion": "tab:red",
                  "tumour core": "tab:purple", "oedema": "tab:orange", "brain": "tab:gray"}

