"""Slicer segmentations (``.seg.nrrd``, via slicerio) and NIfTI label maps with a names sidecar.

A ``.seg.nrrd`` holds one segment per label value (the value is kept as the segment's label
value and in the ``SpineBrain.LabelValue`` tag, which survives editing in Slicer), with name,
colour and SNOMED CT terminology from :mod:`spinebrain.anatomy`. A ``.nii.gz`` label map travels
with a ``.json`` sidecar (value -> name) for tools that do not read NRRD.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from .. import RESEARCH_NOTICE, __version__
from ..anatomy import structure
from ..errors import InputError
from ..geometry import array_from_image, image_from_array, ijk_to_ras_matrix, set_geometry_from_ijk_to_ras
from ..io import atomic_path, read_image, write_image
from .common import SOFTWARE

LABEL_VALUE_TAG = "SpineBrain.LabelValue"  # same tag as spinebrain_slicer.bridge.segmentations
_FLIP_4X4 = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS for homogeneous matrices


def write_segmentation(label_image: sitk.Image, names: dict[int, str], path: str | os.PathLike) -> Path:
    """Write a label map as a Slicer ``.seg.nrrd``: one segment per named value (kept as its label value).

    Named values absent from the image become empty segments; unnamed non-zero values are an error.
    """
    array = _checked_label_array(label_image, names)
    voxels = array.transpose(2, 1, 0)  # [k, j, i] -> (i, j, k), the order slicerio writes ('F')
    segmentation = {
        "voxels": voxels,
        "ijkToLPS": _FLIP_4X4 @ ijk_to_ras_matrix(label_image),
        "segments": [_segment(value, name, voxels) for value, name in sorted(names.items())],
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        # written as the raw header field: Slicer drops a parameter lacking the trailing "&",
        # and slicerio's "conversionParameters" writer omits it after the last one
        "Segmentation_ConversionParameters": _reference_geometry(label_image),
        "SpineBrain_Notice": RESEARCH_NOTICE,
        "SpineBrain_Version": __version__,
    }
    path = Path(path)
    with atomic_path(path) as temporary:
        slicerio.write_segmentation(str(temporary), segmentation)
    return path


def _reference_geometry(image: sitk.Image) -> str:
    """Slicer's "Reference image geometry" parameter, so editing in Slicer keeps this exact grid."""
    matrix = ";".join(repr(float(v)) for v in ijk_to_ras_matrix(image).ravel())  # IJK-to-RAS, row-major
    extent = ";".join(f"0;{size - 1}" for size in image.GetSize())
    return f"Reference image geometry|{matrix};{extent};|Geometry of the labelmap created in conversions.&"


def _segment(value: int, name: str, voxels: np.ndarray) -> dict:
    anatomy = structure(name)
    segment = {
        "id": f"Segment_{value}",
        "name": name,
        "labelValue": int(value),
        "layer": 0,
        "color": [float(c) for c in anatomy.color],
        "extent": _extent(voxels == value),
        "tags": {LABEL_VALUE_TAG: str(int(value))},  # the bridge's tag: keeps the value through edits
    }
    if anatomy.code:  # names outside the anatomy table get no (invalid, empty-coded) terminology
        segment["tags"]["TerminologyEntry"] = anatomy.terminology_entry()
    return segment


def _extent(mask: np.ndarray) -> list[int]:
    if not mask.any():
        return [0, -1, 0, -1, 0, -1]  # Slicer's empty extent
    return [int(v) for axis in np.nonzero(mask) for v in (axis.min(), axis.max())]


def read_segmentation(path: str | os.PathLike) -> tuple[sitk.Image, dict[int, str]]:
    """Read a ``.seg.nrrd`` into a label map (exact geometry) and its value -> segment name table.

    Values come from the ``SpineBrain.LabelValue`` segment tag, else the segment's label value;
    where those clash (overlapping segments in several layers) segments get 1..n in file order,
    later segments winning overlaps.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Segmentation file not found: {path}. Check the path and run again.")
    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # pynrrd / slicerio raise several unrelated types
        raise InputError(f"Could not read {path} as a Slicer segmentation ({error}); save it from Slicer as .seg.nrrd.") from None
    voxels = segmentation["voxels"]
    segments = segmentation.get("segments", [])
    values = _segment_values(segments, layered=voxels.ndim == 4)
    labels = np.zeros(voxels.shape[-3:], dtype=np.uint8 if max(values, default=0) <= 255 else np.uint16)
    for segment, value in zip(segments, values):  # later segments win where segments overlap
        layer = voxels[segment.get("layer", 0)] if voxels.ndim == 4 else voxels
        labels[layer == segment.get("labelValue", 1)] = value
    image = image_from_array(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    set_geometry_from_ijk_to_ras(image, _FLIP_4X4 @ np.asarray(segmentation["ijkToLPS"], dtype=float))
    return image, {value: segment.get("name", segment["id"]) for segment, value in zip(segments, values)}


def _segment_values(segments: list[dict], layered: bool) -> list[int]:
    """Label value of each segment: our tag (survives editing in Slicer), else the file's value.

    Where those are not unique (overlapping segments in several layers), values are 1..n.
    """
    values = [int(s.get("tags", {}).get(LABEL_VALUE_TAG, s.get("labelValue", 1))) for s in segments]
    if len(set(values)) < len(values) or (layered and not all(LABEL_VALUE_TAG in s.get("tags", {}) for s in segments)):
        values = list(range(1, len(segments) + 1))
    return values


def write_label_map(label_image: sitk.Image, names: dict[int, str], path: str | os.PathLike) -> Path:
    """Write a NIfTI label map (``.nii.gz`` / ``.nii``) and its sidecar ``.json`` (value -> name).

    Both files appear together or not at all.
    """
    path = Path(path)
    array = _checked_label_array(label_image, names)
    image = image_from_array(array, label_image)
    sidecar = {
        "notice": RESEARCH_NOTICE,
        "software": SOFTWARE,
        "labels": {str(value): name for value, name in sorted(names.items())},
    }
    with atomic_path(label_map_sidecar(path)) as temporary_json, atomic_path(path) as temporary_image:
        write_image(image, temporary_image)
        temporary_json.write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_label_map(path: str | os.PathLike) -> tuple[sitk.Image, dict[int, str]]:
    """Read a label map and its sidecar JSON (``{"labels": {value: name}}`` or a plain mapping)."""
    path = Path(path)
    sidecar = label_map_sidecar(path)
    if not sidecar.is_file():
        raise InputError(f"The label names file {sidecar.name} is missing beside {path.name}; label maps travel with their names.")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        table = data.get("labels", data)
        names = {int(value): str(name) for value, name in table.items()}
    except (ValueError, AttributeError) as error:
        raise InputError(f"Could not read label names from {sidecar} ({error}); it must map label values to names.") from None
    return read_image(path), names


def label_map_sidecar(path: str | os.PathLike) -> Path:
    """The JSON names file beside a label map: ``labels.nii.gz`` -> ``labels.json``."""
    path = Path(path)
    stem = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return path.with_name(stem + ".json")


def _checked_label_array(label_image: sitk.Image, names: dict[int, str]) -> np.ndarray:
    """The label map's [k, j, i] array in the smallest unsigned type, after checking it."""
    if label_image.GetDimension() != 3 or label_image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"The label map must be a 3D single-channel image (it is {label_image.GetDimension()}D).")
    array = array_from_image(label_image)
    if not np.array_equal(array, np.round(array)) or (array.size and array.min() < 0):
        raise InputError("The label map holds negative or non-integer values; a label map holds whole numbers >= 0.")
    if any(int(value) <= 0 for value in names):
        raise InputError(f"Label names {names} include value 0 or less; 0 is background and cannot be named.")
    unnamed = sorted(set(np.unique(array).astype(int).tolist()) - set(names) - {0})
    if unnamed:
        raise InputError(f"Label values {unnamed} have no name; give every non-zero value a name.")
    largest = max([int(array.max()) if array.size else 0, *names])
    if largest > np.iinfo(np.uint16).max:
        raise InputError(f"Label value {largest} is too large; label values must be at most 65535.")
    return array.astype(np.uint8 if largest <= 255 else np.uint16)
