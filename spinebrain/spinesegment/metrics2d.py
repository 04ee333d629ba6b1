"""Per-vertebra evaluation of instance segmentations against reference body masks (MONAI metrics).

Each reference body is matched to the predicted instance that overlaps it most; its Dice and
mean (symmetric) surface distance are measured against that instance alone, so two bodies merged
into one instance both lose. A body whose match has Dice < ``detected_dice`` is *missed*; a
predicted instance that is no body's match is *false*. References often label only some of the
bodies in view (A10: L1-L5), so false instances are also counted *within the labelled span*
(centroid between the top of the highest and the bottom of the lowest reference body), the
count that says something about the method.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics import DiceMetric, SurfaceDistanceMetric

DETECTED_DICE = 0.5


def _bbox(*masks: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    union = np.logical_or.reduce(masks)
    if not union.any():
        return tuple(slice(0, 0) for _ in union.shape)
    indices = np.nonzero(union)
    return tuple(slice(max(0, i.min() - margin), i.max() + margin + 1) for i in indices)


def body_scores(reference: np.ndarray, prediction: np.ndarray, spacing_zyx) -> tuple[float, float]:
    """(Dice, mean symmetric surface distance in mm) of two boolean masks, with MONAI's metrics."""
    box = _bbox(reference, prediction)
    ref = torch.as_tensor(reference[box][None, None].astype(np.float32))
    pred = torch.as_tensor(prediction[box][None, None].astype(np.float32))
    dice = float(DiceMetric(include_background=True, reduction="none")(pred, ref)[0, 0])
    if not prediction.any():
        return dice, float("nan")
    distance = SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none")(
        pred, ref, spacing=list(spacing_zyx))
    return dice, float(distance[0, 0])


def evaluate_case(reference: sitk.Image, prediction: sitk.Image, names: dict[int, str] | None = None,
                  si_axis: int = 0) -> dict:
    """Scores of one scan; ``si_axis`` is the numpy axis (of [k, j, i]) running superior-inferior,
    increasing towards inferior in the reference frame used here (only its order matters)."""
    ref = sitk.GetArrayViewFromImage(reference)
    pred = sitk.GetArrayViewFromImage(prediction)
    spacing = reference.GetSpacing()[::-1]
    bodies, matched = [], set()
    for value in (int(v) for v in np.unique(ref) if v != 0):
        body = ref == value
        overlaps = np.bincount(pred[body].ravel())
        overlaps[0] = 0
        instance = int(np.argmax(overlaps)) if overlaps.sum() else 0
        dice, asd = body_scores(body, pred == instance, spacing) if instance else (0.0, float("nan"))
        if dice >= DETECTED_DICE:
            matched.add(instance)
        bodies.append({"value": value, "instance": instance, "dice": dice, "surface_mm": asd,
                       "name": (names or {}).get(instance, "")})
    instances = [int(v) for v in np.unique(pred) if v != 0]
    false = [v for v in instances if v not in matched]
    span = _labelled_span(ref, si_axis)
    false_in_span = [v for v in false if span[0] <= _centre(pred == v, si_axis) <= span[1]]
    return {"bodies": bodies, "missed": sum(b["dice"] < DETECTED_DICE for b in bodies),
            "false": len(false), "false_in_span": len(false_in_span), "instances": len(instances)}


def _labelled_span(ref: np.ndarray, axis: int) -> tuple[float, float]:
    profile = np.flatnonzero(np.moveaxis(ref != 0, axis, 0).reshape(ref.shape[axis], -1).any(axis=1))
    return (float(profile.min()), float(profile.max())) if len(profile) else (np.inf, -np.inf)


def _centre(mask: np.ndarray, axis: int) -> float:
    return float(np.nonzero(mask)[axis].mean())
