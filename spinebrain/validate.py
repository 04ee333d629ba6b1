"""Checks that turn unusable input into one clear sentence before any work starts.

Each check raises :class:`~spinebrain.errors.InputError` whose message names the problem and
says what to do. Nothing is written before these checks pass. The command line, the Python API
and the Slicer Logic all reach these checks through the core functions (``load_volume``,
``label_spine``, ``read_markups``, ...), so every caller gets the same answer.

Families
    * **types** -- :func:`check_image_type`: a numpy array or ``None`` where an image belongs is an
      :class:`~spinebrain.errors.InputTypeError` (a ``TypeError`` and an ``InputError``);
    * **geometry and values** -- :func:`check_volume`: 3D, one real component, plausible spacing,
      orthogonal axes, finite, not constant;
    * **plausibility for a model** -- :func:`check_plausible` (below): run before any model, by
      every task;
    * **points** -- :func:`check_point_entry`, :func:`check_points_in_image`;
    * **options** -- :func:`check_seed`, :func:`check_spacing_option` (also argparse types).

Output paths (existing files, ``--overwrite``, name lengths) are checked in
:mod:`spinebrain.outputs.staging`, where they are written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError, InputTypeError
from .geometry import same_grid

MIN_SPACING_MM = 0.01
MAX_SPACING_MM = 50.0


def check_image_type(image, name: str = "image") -> sitk.Image:
    """Raise InputTypeError unless ``image`` is a SimpleITK image (the Python API's input type)."""
    if isinstance(image, sitk.Image):
        return image
    kind = "None" if image is None else type(image).__module__.split(".")[0] + "." + type(image).__name__
    hint = ("wrap it with SimpleITK.GetImageFromArray(array) and set its spacing, origin and direction"
            if isinstance(image, np.ndarray) else "read the file with spinebrain.io.load_volume(path)")
    raise InputTypeError(f"The {name} must be a SimpleITK image, not {kind}; {hint}.")


def check_volume(image: sitk.Image, name: str = "image") -> sitk.Image:
    """Raise InputError unless ``image`` is a usable 3D scalar volume; return it unchanged."""
    check_image_type(image, name)
    _check_dimension(image, name)
    _check_spacing(image, name)
    _check_direction(image, name)
    _check_values(image, name)
    return image


def _check_dimension(image: sitk.Image, name: str) -> None:
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"The {name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (a colour or "
            "vector image); load a single-channel grayscale scan instead."
        )
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(
            f"The {name} holds complex values (raw MR data or phase); export the magnitude image and run again."
        )
    if image.GetDimension() > 3:
        raise InputError(
            f"The {name} is {image.GetDimension()}D (size {size}); extract a single 3D volume "
            "(one time point or one echo) and run again."
        )
    if image.GetDimension() < 3 or min(size) < 2:
        raise InputError(
            f"The {name} is 2D (size {size}); a 3D volume with several slices is needed -- load the "
            "whole series rather than a single slice."
        )


def _check_spacing(image: sitk.Image, name: str) -> None:
    spacing = np.array(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise InputError(
            f"The {name} has voxel spacing {tuple(float(s) for s in spacing)} mm, outside the plausible "
            f"range {MIN_SPACING_MM}-{MAX_SPACING_MM} mm; fix the spacing in the file header (the file may "
            "have lost its geometry) and run again."
        )


def _check_direction(image: sitk.Image, name: str) -> None:
    direction = np.array(image.GetDirection(), dtype=float).reshape(image.GetDimension(), -1)
    if not np.allclose(direction.T @ direction, np.eye(len(direction)), atol=1e-3):
        raise InputError(
            f"The {name} has a non-orthogonal direction matrix (sheared axes); resample it onto an "
            "orthogonal grid (e.g. with Slicer's Resample Scalar Volume) and run again."
        )


def _check_values(image: sitk.Image, name: str) -> None:
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0:
        raise InputError(f"The {name} has no voxels; load a non-empty scan.")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(
            f"The {name} contains {bad} NaN or infinite voxels; replace them (e.g. with 0) or re-export "
            "the scan, and run again."
        )
    if array.min() == array.max():
        raise InputError(
            f"The {name} is constant (every voxel is {array.flat[0]}); it holds no anatomy -- check that "
            "the right file or series was chosen."
        )


def check_label_map(labels: sitk.Image, image: sitk.Image, name: str = "label map") -> sitk.Image:
    """Raise InputError unless ``labels`` is an integer map on exactly the grid of ``image``."""
    _check_dimension(labels, name)
    if labels.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        values = sitk.GetArrayViewFromImage(labels)
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise InputError(f"The {name} holds non-integer values; a label map must hold whole numbers.")
    if not same_grid(labels, image):
        raise InputError(
            f"The {name} is on a different grid than its image (size {labels.GetSize()} vs "
            f"{image.GetSize()}, or different spacing/origin/direction); resample the {name} onto the "
            "image with nearest-neighbour interpolation and run again."
        )
    return labels


# ------------------------------------------------------------------------------ plausibility for a model

#: At most this many distinct whole values and the image is a label map (a real scan has hundreds).
MAX_LABEL_VALUES = 32
#: A wrapped integer image jumps by more than half its type's range between this share of neighbours.
WRAP_JUMP_SHARE = 0.01
_SAMPLE_VOXELS = 2_000_000  # statistics on a strided sample: a 512x512x600 CT is checked in well under a second


def check_plausible(image: sitk.Image, modalities=None, name: str = "image") -> list[str]:
    """The hook every task runs before any model: refuse what is not a scan, warn where it may not fit.

    Refuses (InputError) a binary mask, a label map, and integer data that wrapped around its type
    (e.g. CT numbers stored as unsigned, or cut to 8 bits). Returns warnings (for the result, never a
    silent pass) when the intensities do not look like the ``modalities`` the model card lists
    (e.g. ``card.modalities == ["CT"]`` on an MR-like range). A task calls it as::

        warnings = check_plausible(image, modalities=model.card.modalities)

    after :func:`check_volume` and before loading or running a network, and puts the warnings in
    its result. SpineLabel does (``spinebrain.spinelabel.pipeline.label_spine``); SpineSegment and
    BrainSeg inherit it by calling the same line.
    """
    check_volume(image, name)
    array = sitk.GetArrayViewFromImage(image)
    sample = _sample(array)
    _refuse_masks_and_label_maps(array, sample, name)
    if np.issubdtype(array.dtype, np.integer):
        _refuse_wrapped(array, sample, name)
    return _modality_warnings(sample, [str(m).upper() for m in modalities or ()], name)


def _sample(array: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(array.size / _SAMPLE_VOXELS)))
    return np.asarray(array).ravel()[::step]


def _refuse_masks_and_label_maps(array: np.ndarray, sample: np.ndarray, name: str) -> None:
    if np.issubdtype(sample.dtype, np.floating) and not np.array_equal(sample, np.round(sample)):
        return  # fractional intensities: a scan, not labels
    if len(np.unique(sample)) > MAX_LABEL_VALUES:
        return
    values = np.unique(array)  # the sample looked like labels: confirm on every voxel
    if len(values) > MAX_LABEL_VALUES or not np.array_equal(values, np.round(values)):
        return
    shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
    if len(values) <= 2:
        raise InputError(f"The {name} holds only the values {shown}: it is a mask, not a scan; give the CT or MR "
                         "scan it was made from.")
    raise InputError(f"The {name} holds only {len(values)} whole values ({shown}): it is a label map or "
                     "segmentation, not a scan; give the CT or MR scan it labels.")


def _refuse_wrapped(array: np.ndarray, sample: np.ndarray, name: str) -> None:
    info = np.iinfo(array.dtype)
    half_range = (float(info.max) - float(info.min)) / 2
    if info.min == 0 and info.bits >= 16:  # negative numbers stored as unsigned: read signed, they close up
        signed = sample.view(np.dtype(f"i{info.bits // 8}")) if sample.dtype.itemsize == info.bits // 8 else sample
        low, high = np.percentile(sample, [0.5, 99.5])
        s_low, s_high = np.percentile(signed, [0.5, 99.5])
        if high - low > half_range and (s_high - s_low) < 0.25 * (high - low):
            raise InputError(f"The {name} holds negative values stored as unsigned {info.bits}-bit numbers (they "
                             f"wrapped to {low:.0f}-{high:.0f}); re-export it with a signed type (e.g. int16 for CT).")
    rows = np.asarray(array).reshape(-1, array.shape[-1])  # neighbours along i, on a sample of rows
    rows = rows[:: max(1, rows.size // _SAMPLE_VOXELS)].astype(np.float64)
    jumps = np.abs(np.diff(rows, axis=-1)) > half_range
    if jumps.size and jumps.mean() > WRAP_JUMP_SHARE:
        raise InputError(f"The {name} jumps by more than half the range of its {array.dtype} type between "
                         f"{100 * jumps.mean():.0f} % of neighbouring voxels: its values wrapped around (e.g. CT "
                         "numbers cut to 8 bits); re-export it with a wider type (int16 or float).")


def _modality_warnings(sample: np.ndarray, modalities: list[str], name: str) -> list[str]:
    if not modalities:
        return []
    low, high = (float(v) for v in np.percentile(sample, [1, 99]))
    ct_like = low < -500 and high > 0  # air in Hounsfield units
    if modalities == ["CT"] and not ct_like:
        return [f"The {name}'s intensities ({low:.0f} to {high:.0f}) do not look like CT in Hounsfield units "
                "(no air below -500), the only modality this model knows; check the labels carefully."]
    if ct_like and "CT" not in modalities:
        return [f"The {name}'s intensities ({low:.0f} to {high:.0f}) look like CT, which this model was not "
                f"trained on ({', '.join(modalities)}); check the labels carefully."]
    return []


# ------------------------------------------------------------------------------------------- options

MAX_SEED = 2**32 - 1


def check_seed(value, option: str = "--seed") -> int:
    """A random seed: a whole number from 0 to 2**32 - 1 (what numpy's generators accept)."""
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{option} {value!r} is not a whole number; give a seed from 0 to {MAX_SEED}.") from None
    if isinstance(value, float) and value != seed or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{option} {value} is out of range; give a seed from 0 to {MAX_SEED}.")
    return seed


def check_spacing_option(value, option: str = "--spacing") -> float:
    """A voxel size in mm within the plausible range of :func:`check_volume`."""
    try:
        spacing = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{option} {value!r} is not a number; give a voxel size in mm, e.g. 1.0.") from None
    if not MIN_SPACING_MM <= spacing <= MAX_SPACING_MM:  # also false for NaN
        raise InputError(f"{option} {value} mm is outside {MIN_SPACING_MM}-{MAX_SPACING_MM} mm; give a voxel "
                         "size in mm, e.g. 1.0.")
    return spacing


def argparse_type(check):
    """An argparse ``type=`` from a check, so a bad value is a usage error (exit 2) with the check's sentence."""
    import argparse

    def convert(text):
        try:
            return check(text)
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = check.__name__.removeprefix("check_")  # argparse names the type in its messages
    return convert


# -------------------------------------------------------------------------------------------- points


def check_point_entry(control_point, index: int, path) -> tuple[str, np.ndarray]:
    """(label, position) of one control point of a markups file, or InputError naming the point and the file."""
    if not isinstance(control_point, dict):
        raise InputError(f"Point {index + 1} in {path} is not a JSON object; save the points from Slicer as .mrk.json.")
    label = str(control_point.get("label", "")).strip() or f"number {index + 1}"
    position = control_point.get("position")
    if position is None:
        raise InputError(f"Point {label} in {path} has no position; place it in Slicer (or delete it) and save "
                         "the points again.")
    try:
        values = np.asarray(position, dtype=float)
    except (TypeError, ValueError):
        values = np.array([])
    if values.shape != (3,) or not np.all(np.isfinite(values)):
        raise InputError(f"Point {label} in {path} has position {position!r}; a position is three finite numbers "
                         "(x, y, z in mm) -- fix or delete the point.")
    return label, values


def check_points_type(points, name: str = "points") -> list:
    """Raise InputTypeError unless ``points`` is a list (or tuple) of LabelledPoint."""
    from .points import LabelledPoint

    if isinstance(points, (list, tuple)) and all(isinstance(p, LabelledPoint) for p in points):
        return list(points)
    kind = "None" if points is None else type(points).__name__
    raise InputTypeError(f"The {name} must be a list of spinebrain.points.LabelledPoint, not {kind}; read them "
                         "with spinebrain.outputs.read_markups(path).")


def check_points_in_image(points, image: sitk.Image, what: str = "fixed point", margin_mm: float = 10.0) -> None:
    """Raise InputError when a point lies outside the image (plus a margin): it belongs to another scan."""
    from .geometry import ras_to_lps

    size = np.array(image.GetSize(), dtype=float)
    margin = margin_mm / np.array(image.GetSpacing(), dtype=float)
    for point in points:
        index = np.array(image.TransformPhysicalPointToContinuousIndex([float(v) for v in ras_to_lps(point.ras)]))
        outside = np.maximum(-0.5 - margin - index, index - (size - 0.5) - margin)
        if np.any(outside > 0):
            distance = float(np.max(outside * np.array(image.GetSpacing())) + margin_mm)
            ras = ", ".join(f"{v:.0f}" for v in point.ras)
            raise InputError(f"The {what} {point.label} at RAS ({ras}) lies about {distance:.0f} mm outside the image; "
                             "check that the points belong to this scan (and their coordinate system), then run again.")


# ---------------------------------------------------------------------------------------- references

#: VerSe vertebra values (C1 = 1 ... L6 = 25, S1 = 26, T13 = 28) and a few spare ones of the sacrum.
MAX_VERSE_VALUE = 28
_NEAR_MM = 15.0  # a predicted point this close to a reference vertebra is on it (a vertebral body's radius)


def check_reference_labels(predicted, labels: sitk.Image, names, pred_path, ref_path) -> None:
    """Refuse a reference that is not a vertebra label map of the predicted points' scan.

    The scan itself, a probability map, or another patient's (or another grid's) labels would give a
    score without meaning: the checks are that the reference holds few whole values (VerSe values
    when it has no names) and that at least one predicted point lies on or near a labelled vertebra.
    """
    complex_values = labels.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64)
    array = sitk.GetArrayViewFromImage(labels)
    sample = _sample(array)
    fractional = np.issubdtype(sample.dtype, np.floating) and not np.array_equal(sample, np.round(sample))
    values = np.unique(sample)
    if complex_values or fractional or len(values) > 64 or (names is None and (values.min() < 0 or values.max() > 255)):
        raise InputError(f"--ref {Path(ref_path).name} is not a vertebra label map (it holds {len(values)}+ different "
                         f"values from {values.min():g} to {values.max():g}, like a scan); give the reference labels.")
    if not np.any(values > 0):
        raise InputError(f"--ref {Path(ref_path).name} holds no labelled vertebra (every voxel is 0); give the "
                         "reference labels of this scan.")
    if predicted and not any(_near_label(point.ras, labels, array) for point in predicted):
        raise InputError(f"None of the {len(predicted)} points in {Path(pred_path).name} lies on or within "
                         f"{_NEAR_MM:.0f} mm of a vertebra in {Path(ref_path).name}; check that both belong to the same "
                         "scan (and patient).")


def check_reference_points(predicted, reference, pred_path, ref_path) -> None:
    """Refuse reference points that cannot be this scan's: empty, or far from every predicted point."""
    if not reference:
        raise InputError(f"--ref {Path(ref_path).name} holds no points; give the reference vertebra centres.")
    if not predicted:
        return
    ref = np.array([p.ras for p in reference], dtype=float)
    distances = [np.min(np.linalg.norm(ref - np.asarray(p.ras, dtype=float), axis=1)) for p in predicted]
    if min(distances) > 3 * _NEAR_MM:
        raise InputError(f"No point in {Path(pred_path).name} lies within {3 * _NEAR_MM:.0f} mm of a point in "
                         f"{Path(ref_path).name} (closest {min(distances):.0f} mm); check that both belong to the same "
                         "scan (and patient).")


def _near_label(ras, labels: sitk.Image, array: np.ndarray) -> bool:
    from .geometry import ras_to_lps

    centre = np.array(labels.TransformPhysicalPointToContinuousIndex([float(v) for v in ras_to_lps(ras)]))
    reach = np.ceil(_NEAR_MM / np.array(labels.GetSpacing())).astype(int)
    low = np.maximum(np.round(centre).astype(int) - reach, 0)
    high = np.minimum(np.round(centre).astype(int) + reach + 1, labels.GetSize())
    if np.any(high <= low):
        return False
    box = array[low[2]:high[2], low[1]:high[1], low[0]:high[0]]  # [k, j, i]
    return bool(np.any(box > 0))
