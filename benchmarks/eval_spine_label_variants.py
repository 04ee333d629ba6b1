"""SpineLabel on one CT and its variants: resampled, thick slices, stored sagittally, rotated, noisy.

Usage: python benchmarks/eval_spine_label_variants.py [--seeds 170001 ...] [--model ID] [--threads 2]

The issue's kept-back test: a real lumbar CT with the sacrum in view, and variants of it; every
complete lumbar vertebra must be named right within 5 mm, unchanged across the variants. No such CT is
in ``../shared/data``, so this runs on generated lumbar CTs with the pelvis in view, stored axially as a
routine abdominal CT is (1 x 1 x 3 mm; seeds 170001 and up, never used in training or selection).
Each variant moves image and reference labels together (rotation: the reference points too), so the
reference stays exact. A case passes when every complete L1-L5 is named right within 5 mm.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import SimpleITK as sitk
import torch

from spinebrain.resample import reorient, resample_to_spacing
from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model
from spinebrain.synth.spine import generate_spine
from spinebrain.turn import turn_scan

LUMBAR = ("L1", "L2", "L3", "L4", "L5")
TOLERANCE_MM = 5.0


def _rotated(degrees: float, axis_ras: tuple[float, float, float]):
    """A variant turning the scan by ``degrees`` about ``axis_ras`` through the volume centre (same grid)."""
    return lambda image, labels, points: turn_scan(image, labels, points, degrees, axis_ras)


def _thick_slices(image, labels, points):
    """5 mm slices along the scan's slice axis (k), blurred over the slice width first."""
    spacing = list(image.GetSpacing())
    variance = [0.0, 0.0, max(5.0**2 - spacing[2] ** 2, 0.0) / 12.0]  # a 5 mm box, as a Gaussian
    blurred = sitk.DiscreteGaussian(sitk.Cast(image, sitk.sitkFloat32), variance, 32, 0.01, True)
    thick = resample_to_spacing(sitk.Cast(blurred, image.GetPixelID()), spacing[:2] + [5.0])
    return thick, resample_to_spacing(labels, spacing[:2] + [5.0], is_label=True), points


def _noisy(image, labels, points):
    noise = np.random.default_rng(0).normal(0.0, 40.0, sitk.GetArrayViewFromImage(image).shape)
    noisy = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) + noise).astype(np.float32))
    noisy.CopyInformation(image)
    return sitk.Cast(noisy, image.GetPixelID()), labels, points


VARIANTS = {
    "as generated (axial, 1 x 1 x 3 mm)": lambda image, labels, points: (image, labels, points),
    "resampled to 1.5 mm": lambda image, labels, points: (resample_to_spacing(image, 1.5),
                                                            resample_to_spacing(labels, 1.5, is_label=True), points),
    "5 mm slices": _thick_slices,
    "stored LPS": lambda image, labels, points: (reorient(image, "LPS"), reorient(labels, "LPS"), points),
    "stored sagittally (PIR)": lambda image, labels, points: (reorient(image, "PIR"), reorient(labels, "PIR"), points),
    "rotated +12 deg about R-L": _rotated(12.0, (1.0, 0.0, 0.0)),
    "rotated -12 deg about A-P": _rotated(-12.0, (0.0, 1.0, 0.0)),
    "noise sigma 40 HU": _noisy,
}


def score(model, image, labels, points, complete: set[str]) -> dict:
    result = label_spine(image, model)
    reference = {p.label: np.asarray(p.ras, float) for p in points if p.label in complete and p.label in LUMBAR}
    found = {p.label: np.asarray(p.ras, float) for p in result.points}
    right = [name for name, centre in reference.items()
             if name in found and np.linalg.norm(found[name] - centre) <= TOLERANCE_MM]
    errors = [float(np.linalg.norm(found[name] - centre)) for name, centre in reference.items() if name in found]
    return {"lumbar_complete": len(reference), "named_right_within_5mm": len(right),
            "mean_error_mm": round(float(np.mean(errors)), 2) if errors else None,
            "anchored": bool(result.labelling.anchored), "points": [p.label for p in result.points],
            "passes": len(right) == len(reference) > 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[170001, 170002, 170003, 170004])
    parser.add_argument("--model", default=None, help="lumbar model id or package (default: the bundled default)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_spine_label_model("lumbar", args.model, device="cpu")
    passes = {name: 0 for name in VARIANTS}
    rows = []
    for seed in args.seeds:
        case = generate_spine(seed, modality="ct", view="lumbar", spacing=(1.0, 1.0, 3.0), orientation="axial")
        complete = {r.name for r in case.vertebrae if r.complete}
        for name, variant in VARIANTS.items():
            started = time.perf_counter()
            image, labels, points = variant(case.image, case.labels, case.points)
            row = {"seed": seed, "variant": name, **score(model, image, labels, points, complete),
                   "seconds": round(time.perf_counter() - started, 1)}
            passes[name] += row["passes"]
            rows.append(row)
            print(f"seed {seed}  {name:36s} {row['named_right_within_5mm']}/{row['lumbar_complete']} lumbar right "
                  f"within 5 mm  error {row['mean_error_mm']} mm  anchored {row['anchored']}  "
                  f"| {' '.join(row['points'])}", flush=True)
    print(f"\n{'variant':36s} cases passing (every complete L1-L5 right within 5 mm), of {len(args.seeds)}")
    for name, count in passes.items():
        print(f"{name:36s} {count}")
    print(json.dumps({"model": model.card.id, "passes": passes, "cases": rows}, indent=1))


if __name__ == "__main__":
    main()
