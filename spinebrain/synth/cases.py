"""Write a generated spine or brain case as files 3D Slicer opens (a "phantom" on disk).

Spine: the image (``.nrrd``), the vertebrae (``.seg.nrrd`` with level names), the vertebral body
centres (``.mrk.json``), a per-vertebra table with units (``.csv``), the generator's metadata
(``.json``) and an overview picture (``.png``).
Brain: one volume per contrast, the tissue and lesion segmentations, a volumes table in mL,
the metadata and an overview picture.

The column lists and record builders are shared with :mod:`spinebrain_slicer.samples`, so a
case loaded into a scene shows the same table as the file on disk. Every write is atomic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import RESEARCH_NOTICE, __version__
from ..io import atomic_path, write_image
from ..outputs import write_markups, write_segmentation, write_table
from ..outputs.pictures import Panel, save_montage_png
from ..tables import Column

VERTEBRA_COLUMNS = [
    Column("name", "text"),
    Column("label", "int"),
    Column("complete", "bool"),
    Column("fraction outside", "float", "%"),
    Column("volume", "float", "mm³"),
    Column("centroid R", "float", "mm"),
    Column("centroid A", "float", "mm"),
    Column("centroid S", "float", "mm"),
]
# "lesion count" is a float column so rows without a count stay empty (MRML int columns have no "missing")
VOLUME_COLUMNS = [Column("structure", "text"), Column("volume", "float", "mL"), Column("lesion count", "float")]


# ------------------------------------------------------------------------------------------- spine


def vertebra_records(case) -> list[dict]:
    """One table row per vertebra of a :class:`~spinebrain.synth.spine.SpineCase` (VERTEBRA_COLUMNS)."""
    rows = []
    for record in case.vertebrae:
        outside = record.fraction_outside
        rows.append({
            "name": record.name,
            "label": record.label,
            "complete": record.complete,
            "fraction outside": None if outside is None else 100.0 * float(outside),
            "volume": float(record.volume_mm3),
            "centroid R": float(record.centroid_ras[0]),
            "centroid A": float(record.centroid_ras[1]),
            "centroid S": float(record.centroid_ras[2]),
        })
    return rows


def write_spine_case(case, out_dir: str | os.PathLike, name: str = "spine") -> list[Path]:
    """Write a spine case into ``out_dir``; returns the written files (image first)."""
    out = Path(out_dir)
    modality = str(case.metadata.get("modality", "image"))
    names = case.label_names()
    return [
        write_image(case.image, out / f"{name}_{modality}.nrrd"),
        write_segmentation(case.labels, names, out / f"{name}_vertebrae.seg.nrrd"),
        write_markups(case.points, out / f"{name}_body_centres.mrk.json", name="Vertebral body centres"),
        write_table(vertebra_records(case), VERTEBRA_COLUMNS, out / f"{name}_vertebrae.csv"),
        write_metadata(case.metadata, out / f"{name}_metadata.json"),
        save_montage_png(_spine_panels(case, names), out / f"{name}_overview.png", columns=2,
                         title=f"Synthetic spine ({modality.upper()}, seed {case.metadata.get('seed')})"),
    ]


def _spine_panels(case, names: dict[int, str]) -> list[Panel]:
    return [
        Panel(case.image, case.points, case.labels, names, plane, plane)
        for plane in ("sagittal", "coronal")
    ]


# ------------------------------------------------------------------------------------------- brain


def volume_records(case) -> list[dict]:
    """Rows of the volumes table of a :class:`~spinebrain.synth.brain.BrainCase` (VOLUME_COLUMNS, mL)."""
    volumes = case.volumes
    rows = [
        {"structure": case.tissue_names[value], "volume": volumes[key]}
        for value, key in ((2, "gm_ml"), (3, "wm_ml"), (1, "csf_ml"))
        if value in case.tissue_names
    ]
    rows.append({"structure": "Intracranial volume", "volume": volumes["icv_ml"]})
    if case.lesion_names:
        rows += [{"structure": label, "volume": ml} for label, ml in volumes["lesion_label_ml"].items()]
        rows.append({"structure": "Total lesion load", "volume": volumes["lesion_load_ml"],
                     "lesion count": volumes["lesion_count"]})
        rows += [{"structure": f"Lesion #{index}", "volume": ml}
                 for index, ml in enumerate(volumes["lesion_volumes_ml"], start=1)]
    return rows


def write_brain_case(case, out_dir: str | os.PathLike, name: str = "brain") -> list[Path]:
    """Write a brain case into ``out_dir``; returns the written files (volumes first).

    The lesion segmentation is written only when the case has lesions.
    """
    out = Path(out_dir)
    written = [write_image(image, out / f"{name}_{contrast}.nrrd") for contrast, image in case.images.items()]
    written.append(write_segmentation(case.tissue, case.tissue_names, out / f"{name}_tissue.seg.nrrd"))
    if case.lesion_names:
        written.append(write_segmentation(case.lesions, case.lesion_names, out / f"{name}_lesions.seg.nrrd"))
    written.append(write_table(volume_records(case), VOLUME_COLUMNS, out / f"{name}_volumes.csv"))
    written.append(write_metadata(case.metadata, out / f"{name}_metadata.json"))
    written.append(save_montage_png(_brain_panels(case), out / f"{name}_overview.png",
                                    title=f"Synthetic brain (seed {case.metadata.get('seed')})"))
    return written


def _brain_panels(case) -> list[Panel]:
    panels = [Panel(image, plane="axial", title=contrast.upper()) for contrast, image in case.images.items()]
    first = next(iter(case.images.values()))
    panels.append(Panel(first, label_image=case.tissue, names=case.tissue_names, plane="axial", title="tissue"))
    if case.lesion_names:
        panels.append(Panel(case.images.get("flair", first), label_image=case.lesions, names=case.lesion_names,
                            plane="axial", title="lesions"))
    panels.append(Panel(first, label_image=case.tissue, names=case.tissue_names, plane="sagittal", title="tissue"))
    return panels


# ---------------------------------------------------------------------------------------- metadata


def write_metadata(metadata: dict, path: str | os.PathLike) -> Path:
    """The generator's metadata as JSON, with the research notice and software version."""
    document = {"notice": RESEARCH_NOTICE, "software": f"SlicerSpineBrain {__version__}", **metadata}
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(document, indent=2, default=_plain, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return path


def _plain(value):
    """JSON form of numpy scalars / arrays and other values json does not know."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
