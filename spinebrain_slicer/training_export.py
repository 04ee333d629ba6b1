"""Write the cases of the scene into a work folder: images, references and a MONAI-style datalist.

Layout of ``<work>/data/`` (written in a staged folder and moved in only when every case was
written, so a failure or a full disk leaves nothing half-written)::

    images/<case>.nii.gz          the volume (its own grid and voxel type)
    labels/<case>.nii.gz          segmentation tasks: the label map on the volume's grid
    points/<case>.nii.gz + .mrk.json   labelling: scan and named body centres side by side
                                  (the layout of ``spinebrain train spine-label --real-data``)
    datalist.json                 {"training": [...], "validation": [...], "labels": {...}, "modality": {...}}

Label values are the same for every case: segments are matched by name (case-insensitive) to one
label set -- the model's when fine-tuning (a name it does not know is refused), else the names of all
cases in order of first appearance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spinebrain.errors import InputError
from spinebrain.io import write_image
from spinebrain.outputs import staged_outputs
from spinebrain.outputs.markups import write_markups
from spinebrain.resample import resample_like

from .bridge import image_from_volume_node, labels_from_segmentation_node, points_from_markups_node
from .training_cases import POINTS, SEGMENTATION, TrainingCase

DATALIST = "datalist.json"


@dataclass
class ExportedCases:
    """What :func:`export_cases` wrote: the datalist, the label set and the case names of each part."""

    folder: Path
    datalist: Path
    labels: dict[str, str] = field(default_factory=dict)
    training: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)

    @property
    def points_folder(self) -> Path:
        return self.folder / "points"


def split_cases(cases: list[TrainingCase], validation_fraction: float, seed: int = 0,
                validation_names=None) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """(training, validation): the named validation cases, else a seeded share (at least one case each)."""
    if validation_names:
        unknown = set(validation_names) - {case.name for case in cases}
        if unknown:
            raise InputError(f"The validation case(s) {', '.join(sorted(unknown))} are not among the usable cases.")
        validation = [case for case in cases if case.name in set(validation_names)]
    else:
        if not 0.0 <= validation_fraction < 1.0:
            raise InputError("The validation share must be at least 0 and below 1 (e.g. 0.2).")
        count = int(round(validation_fraction * len(cases)))
        if validation_fraction > 0 and count == 0 and len(cases) > 1:
            count = 1
        order = np.random.default_rng(seed).permutation(len(cases))
        validation = [cases[i] for i in sorted(order[:count])]
    training = [case for case in cases if case not in validation]
    if not training:
        raise InputError("Every case is a validation case; keep at least one case for training.")
    return training, validation


def export_cases(training: list[TrainingCase], validation: list[TrainingCase], work_folder, modality: str,
                 label_set: dict[str, str] | None = None, overwrite: bool = False) -> ExportedCases:
    """Write the cases under ``<work_folder>/data`` (see the module docstring); nothing on failure."""
    folder = Path(work_folder) / "data"
    if folder.exists() and not overwrite:
        raise InputError(f"{folder} already holds exported cases; choose another work folder or allow replacing it.")
    labels = {"0": "background"} if label_set is None else dict(label_set)
    fixed = label_set is not None
    document = {"training": [], "validation": []}
    with staged_outputs(folder, overwrite=overwrite) as stage:
        for part, cases in (("training", training), ("validation", validation)):
            for case in cases:
                document[part].append(_write_case(case, stage.path, labels, fixed))
        document.update(labels=labels, modality={"0": modality}, numTraining=len(training))
        stage.path(DATALIST).write_text(json.dumps(document, indent=2), encoding="utf-8")
    return ExportedCases(folder, folder / DATALIST, labels if len(labels) > 1 else {},
                         [c.name for c in training], [c.name for c in validation])


def _write_case(case: TrainingCase, staged, labels: dict[str, str], fixed: bool) -> dict:
    image = image_from_volume_node(case.volume)
    reference = case.reference
    if reference.IsA(POINTS):
        points = points_from_markups_node(reference)
        if not points:
            raise InputError(f"{case.name}: the point list '{reference.GetName()}' is empty; place the points.")
        write_image(image, _parent(staged(f"points/{case.name}.nii.gz")))
        write_markups(points, staged(f"points/{case.name}.mrk.json"), name=case.name)
        return {"name": case.name, "image": f"points/{case.name}.nii.gz", "label": f"points/{case.name}.mrk.json"}
    label_image = _label_image(case, image, labels, fixed)
    write_image(image, _parent(staged(f"images/{case.name}.nii.gz")))
    write_image(label_image, _parent(staged(f"labels/{case.name}.nii.gz")))
    return {"name": case.name, "image": f"images/{case.name}.nii.gz", "label": f"labels/{case.name}.nii.gz"}


def _label_image(case: TrainingCase, image: sitk.Image, labels: dict[str, str], fixed: bool) -> sitk.Image:
    """The reference as a label map on the volume's grid, with the common label values."""
    reference = case.reference
    if reference.IsA(SEGMENTATION):
        exported, names = labels_from_segmentation_node(reference, case.volume)
    else:
        exported = image_from_volume_node(reference)
        if case.needs_resampling:
            exported = resample_like(exported, image, is_label=True)
        names = {int(v): f"label {int(v)}" for v in np.unique(sitk.GetArrayViewFromImage(exported)) if v}
        names.update(_names_of_labelmap(reference, names))
    array = sitk.GetArrayFromImage(exported)
    out = np.zeros(array.shape, np.uint8)
    for value, name in names.items():
        mask = array == value
        if not mask.any():
            continue
        out[mask] = _value_for(name, labels, fixed, case)
    if not out.any():
        raise InputError(f"{case.name}: the reference '{reference.GetName()}' is empty on this volume; paint the "
                         "structures or leave the case out.")
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(image)
    return result


def _value_for(name: str, labels: dict[str, str], fixed: bool, case: TrainingCase) -> int:
    by_name = {text.strip().lower(): int(value) for value, text in labels.items()}
    key = name.strip().lower()
    if key in by_name:
        return by_name[key]
    if fixed:
        known = ", ".join(text for value, text in sorted(labels.items(), key=lambda i: int(i[0])) if value != "0")
        raise InputError(f"{case.name}: the segment '{name}' is not a label of the model to fine-tune ({known}); "
                         "rename the segment or train from scratch.")
    value = max(int(v) for v in labels) + 1
    if value > 255:
        raise InputError("More than 255 different segment names; a label map holds at most 255 labels.")
    labels[str(value)] = name
    return value


def _names_of_labelmap(node, names: dict[int, str]) -> dict[int, str]:
    """Names of a label map's values from its colour table, where it has one."""
    display = node.GetDisplayNode()
    colours = display.GetColorNode() if display is not None else None
    if colours is None:
        return {}
    found = {}
    for value in names:
        name = colours.GetColorName(value) if value < colours.GetNumberOfColors() else ""
        if name and name.lower() not in ("invalid", "(none)", ""):
            found[value] = name
    return found


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
