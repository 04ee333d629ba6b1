"""Evaluating the 3D mode: per-vertebra Dice and mean surface distance (MONAI), completeness
accuracy, false and missed instances per scan.

Matching: each reference vertebra takes the predicted instance that overlaps it most; a match needs
a Dice of at least 0.2. Predicted instances matched to no reference vertebra are false; reference
vertebrae of at least ``MIN_REFERENCE_MM3`` (the paper's n_min, 1000 mm³) without a match are missed
(smaller slivers at the scan's end are not counted either way). Surface distance: MONAI's symmetric
average surface distance in mm, computed in the box around the pair.

Data: held-out generated CT (seeds never trained on; training uses 0-199 and validation 5000+/90000+)
and the real CT crops with reference masks: A6 (L3 complete between partial L2 and L4), A3 (T11, T12
partial, TotalSegmentator silver labels) and A5 (T12 only labelled: only its own match is scored).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics import compute_average_surface_distance, compute_dice

MIN_REFERENCE_MM3 = 1000.0
MIN_MATCH_DICE = 0.2


@dataclass
class VertebraScore:
    name: str
    reference_complete: bool
    matched: bool
    dice: float | None = None
    surface_mm: float | None = None
    predicted_complete: bool | None = None


@dataclass
class CaseScore:
    case: str
    vertebrae: list[VertebraScore] = field(default_factory=list)
    false_instances: int = 0
    missed: int = 0
    seconds: float = 0.0  # wall, warm (model loaded), on this shared machine
    cpu_seconds: float = 0.0  # CPU time of the process (1 thread): what the run costs without sharing
    steps: int = 0


def _border_touching(array: np.ndarray) -> set[int]:
    faces = [array[0], array[-1], array[:, 0], array[:, -1], array[:, :, 0], array[:, :, -1]]
    return {int(v) for face in faces for v in np.unique(face) if v}


def score_case(name: str, predicted: sitk.Image, predicted_complete: dict[int, bool], reference: sitk.Image,
               reference_names: dict[int, str], reference_complete: dict[int, bool],
               only_labelled: bool = False) -> CaseScore:
    """Scores of one scan (``only_labelled``: the reference labels only some vertebrae; no false count)."""
    pred = sitk.GetArrayViewFromImage(predicted)
    ref = sitk.GetArrayViewFromImage(reference)
    spacing = np.array(reference.GetSpacing()[::-1])
    voxel_mm3 = float(np.prod(spacing))
    score = CaseScore(name)
    matched_predictions = set()
    for value, vertebra_name in sorted(reference_names.items()):
        target = ref == value
        if target.sum() * voxel_mm3 < MIN_REFERENCE_MM3:
            continue
        overlap = np.bincount(pred[target].ravel().astype(np.int64))
        overlap[0] = 0
        best = int(np.argmax(overlap)) if overlap.size > 1 and overlap.max() > 0 else 0
        record = VertebraScore(vertebra_name, bool(reference_complete[value]), False)
        if best:
            mask = pred == best
            dice, surface = _pair_metrics(mask, target, spacing)
            if dice >= MIN_MATCH_DICE:
                matched_predictions.add(best)
                record.matched, record.dice = True, round(dice, 4)
                record.surface_mm = round(surface, 3)
                record.predicted_complete = bool(predicted_complete.get(best, False))
        score.missed += not record.matched
        score.vertebrae.append(record)
    if not only_labelled:
        score.false_instances = len({int(v) for v in np.unique(pred) if v} - matched_predictions)
    return score


def _pair_box(mask: np.ndarray, target: np.ndarray) -> tuple[slice, ...]:
    where = np.argwhere(mask | target)
    lo, hi = np.maximum(where.min(0) - 2, 0), where.max(0) + 3
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _tensors(mask: np.ndarray, target: np.ndarray):
    box = _pair_box(mask, target)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a[box]))[None, None].float()  # noqa: E731
    return as_tensor(mask), as_tensor(target)


def mask_dice(mask: np.ndarray, target: np.ndarray) -> float:
    """Dice of two boolean masks by MONAI (0 when they do not overlap), in the box around the pair."""
    if not (mask & target).any():
        return 0.0
    return float(compute_dice(*_tensors(mask, target)).item())


def _pair_metrics(mask: np.ndarray, target: np.ndarray, spacing) -> tuple[float, float]:
    """(Dice, symmetric mean surface distance in mm) by MONAI, in the box around the pair."""
    prediction, reference = _tensors(mask, target)
    dice = float(compute_dice(prediction, reference).item())
    distance = compute_average_surface_distance(prediction, reference, symmetric=True,
                                                spacing=[float(s) for s in spacing])
    return dice, float(distance.item())


def summarise(scores: list[CaseScore]) -> dict:
    vertebrae = [v for s in scores for v in s.vertebrae]
    matched = [v for v in vertebrae if v.matched]
    complete = [v for v in matched if v.reference_complete]
    judged = [v for v in matched if v.predicted_complete is not None]
    mean = lambda values: round(float(np.mean(values)), 4) if values else None  # noqa: E731
    return {
        "cases": len(scores), "reference_vertebrae": len(vertebrae), "matched": len(matched),
        "dice_mean": mean([v.dice for v in matched]), "dice_mean_complete": mean([v.dice for v in complete]),
        "dice_median": round(float(np.median([v.dice for v in matched])), 4) if matched else None,
        "surface_mm_mean": mean([v.surface_mm for v in matched]),
        "completeness_accuracy": mean([float(v.predicted_complete == v.reference_complete) for v in judged]),
        "false_per_scan": mean([s.false_instances for s in scores]),
        "missed_per_scan": mean([s.missed for s in scores]),
        "seconds_per_scan": mean([s.seconds for s in scores]),
        "cpu_seconds_per_scan": mean([s.cpu_seconds for s in scores]),
        "steps_per_scan": mean([s.steps for s in scores]),
    }


def _run(model, image, points=None):
    from .pipeline3d import segment_vertebrae

    result = segment_vertebrae(image, model, points)
    complete = {v.value: v.complete for v in result.vertebrae}
    return result, complete


def synthetic_scores(model, first: int, last: int, log=print, view: str = "lumbar") -> list[CaseScore]:
    from ..synth import generate_spine

    scores = []
    for seed in range(first, last):
        case = generate_spine(seed, modality="ct", view=view)
        started, cpu = time.perf_counter(), time.process_time()
        result, complete = _run(model, case.image)
        score = score_case(f"synthetic {seed}", result.label_image, complete, case.labels,
                           {r.label: r.name for r in case.vertebrae}, {r.label: r.complete for r in case.vertebrae})
        score.seconds, score.steps = round(time.perf_counter() - started, 2), sum(result.steps.values())
        score.cpu_seconds = round(time.process_time() - cpu, 2)
        log(json.dumps(asdict(score)))
        scores.append(score)
    return scores


def real_ct_scores(model, data: Path, log=print) -> list[CaseScore]:
    from ..anatomy import vertebra_name
    from ..io import load_volume

    scores = []
    cases = []
    a6 = data / "A6_tptbox_sample_ct"
    if a6.is_dir():
        cases.append(("A6 L3 crop", load_volume(a6 / "sub-ct_label-22_ct.nii.gz"),
                      sitk.ReadImage(str(a6 / "sub-ct_seg-vert_label-22_msk.nii.gz")), None, False))
    a3 = data / "A3_ts_example_ct_dicom"
    if a3.is_dir():  # TotalSegmentator: 32 = T12, 33 = T11
        cases.append(("A3 T11-T12 slab", load_volume(a3 / "dicom"), sitk.ReadImage(str(a3 / "seg_total_v2.nii.gz")),
                      {32: "T12", 33: "T11"}, False))
    a5 = data / "A5_ts_aorta_ct_cropped"
    if a5.is_dir():
        cases.append(("A5 T12 (only T12 labelled)", load_volume(a5 / "ct.nii.gz"),
                      sitk.ReadImage(str(a5 / "vertebrae_T12.nii.gz")), {1: "T12"}, True))
    for name, image, reference, names, only_labelled in cases:
        reference = sitk.Resample(reference, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        array = sitk.GetArrayFromImage(reference)
        if names is None:
            names = {int(v): vertebra_name(int(v)) for v in np.unique(array) if v}
        array[~np.isin(array, list(names))] = 0
        clean = sitk.GetImageFromArray(array)
        clean.CopyInformation(reference)
        touching = _border_touching(array)
        started, cpu = time.perf_counter(), time.process_time()
        result, complete = _run(model, image)
        score = score_case(name, result.label_image, complete, clean, names,
                           {v: v not in touching for v in names}, only_labelled)
        score.seconds, score.steps = round(time.perf_counter() - started, 2), sum(result.steps.values())
        score.cpu_seconds = round(time.process_time() - cpu, 2)
        log(json.dumps(asdict(score)))
        scores.append(score)
    return scores


def evaluate_model(model, synthetic: str | None, data: str | None, log=print) -> dict:
    torch.set_num_threads(1)
    summary = {}
    if synthetic:
        first, last = (int(x) for x in synthetic.split(":"))
        summary["synthetic"] = summarise(synthetic_scores(model, first, last, log))
        log("synthetic: " + json.dumps(summary["synthetic"]))
    if data:
        scores = real_ct_scores(model, Path(data), log)
        summary["real_ct"] = {s.case: asdict(s) for s in scores}
    return summary
