"""Evaluation of the 2D MR mode on real scans with reference body masks (per case and total).

Used by ``spinebrain evaluate spine-segment`` and ``benchmarks/eval_spine_segment_mr.py``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import SimpleITK as sitk

from .metrics2d import evaluate_case
from .pipeline2d import bodies_from_probability, body_probability


#: Inference settings tried on held-out *training* scans (never 'validation' ones): flip x threshold x
#: smoothing of the stacked slice probabilities. Erosion seeds of 2-4 mm made no difference (1.1's sweep).
SETTING_GRID = tuple({"flip": flip, "threshold": threshold, "smooth_mm": smooth}
                     for flip in (False, True) for threshold in (0.5, 0.6) for smooth in (0.0, 1.0, 1.5))


def evaluate(model, cases, variants: list[dict], log=print) -> dict:
    """Figures per inference variant (dicts of settings overriding the card's); the network runs once
    per case and flip setting, the instance step once per variant."""
    per_variant = {index: [] for index in range(len(variants))}
    for name, folder in cases:
        image = sitk.ReadImage(str(folder / "image.nii.gz"))
        reference = sitk.ReadImage(str(folder / "vertebrae.nii.gz"))
        si_index_axis = int(np.argmax(np.abs(np.array(reference.GetDirection()).reshape(3, 3)[2, :])))
        probabilities = {}
        for index, variant in enumerate(variants):
            settings = {**model.settings, **variant}
            started = time.perf_counter()
            if settings["flip"] not in probabilities:
                probabilities[settings["flip"]] = (body_probability(image, model, flip=settings["flip"])[0],
                                                   time.perf_counter() - started)
            probability, network_seconds = probabilities[settings["flip"]]
            started = time.perf_counter()
            segmentation = bodies_from_probability(image, probability, settings)
            seconds = network_seconds + time.perf_counter() - started
            # superior-inferior numpy axis of the reference: the index axis nearest S, as [k, j, i]
            scores = evaluate_case(reference, segmentation.label_image, segmentation.names, si_axis=2 - si_index_axis)
            scores.update(case=name, seconds=round(seconds, 1))
            per_variant[index].append(scores)
            if index == 0:
                _log_case(scores, log)
    figures = []
    for index, variant in enumerate(variants):
        log(f"variant {json.dumps(variant)}")
        figures.append({"variant": variant, **summarise(per_variant[index], log)})
    return {"variants": figures}


def _log_case(scores: dict, log) -> None:
    dice = [b["dice"] for b in scores["bodies"]]
    asd = [b["surface_mm"] for b in scores["bodies"] if np.isfinite(b["surface_mm"])]
    log(f"{scores['case']:45s} bodies {len(dice):2d}  Dice {np.mean(dice):.3f} (min {np.min(dice):.3f})  "
        f"ASD {np.mean(asd) if asd else float('nan'):.2f} mm  missed {scores['missed']}  false {scores['false']} "
        f"(in labelled span {scores['false_in_span']})  {scores['seconds']:.1f} s")


def summarise(results: list[dict], log=print) -> dict:
    bodies = [b for r in results for b in r["bodies"]]
    dice = np.array([b["dice"] for b in bodies])
    asd = np.array([b["surface_mm"] for b in bodies if np.isfinite(b["surface_mm"])])
    total = {
        "scans": len(results), "bodies": len(bodies),
        "mean_body_dice": round(float(dice.mean()), 4), "median_body_dice": round(float(np.median(dice)), 4),
        "mean_case_dice": round(float(np.mean([np.mean([b["dice"] for b in r["bodies"]]) for r in results])), 4),
        "mean_surface_distance_mm": round(float(asd.mean()), 3) if len(asd) else None,
        "missed": int(sum(r["missed"] for r in results)), "false": int(sum(r["false"] for r in results)),
        "false_in_labelled_span": int(sum(r["false_in_span"] for r in results)),
        "seconds_per_scan": round(float(np.mean([r["seconds"] for r in results])), 1),
    }
    log("TOTAL " + json.dumps(total))
    return {"total": total, "cases": results}


