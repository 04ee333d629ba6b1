"""SpineLabel on fine-voxel scans with the binned anti-aliasing blur against the Gaussian alone (same names?).

Usage: python benchmarks/eval_spine_label_fine_grid.py [--cases 30] [--first-seed 720001] [--threads 1]

The sagittal slab averages voxels in bins before its Gaussian where they are 2.5 or more times finer than the
model's pixel (``spinelabel.slices._bins``; a 0.8 mm CT or a 0.6 mm MR at the 2 mm lumbar pixel). Generated lumbar
scans on such grids (even cases CT at 0.78 x 0.78 x 1.5 mm, odd cases T2 / T1 at 0.62 x 0.62 x 3 mm, random
orientation; development seeds, never trained on) are named both ways: the paper metrics of each, the cases named
differently, and the time per case.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from spinebrain.spinelabel import slices, training
from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model
from spinebrain.synth.spine import generate_spine
from spinebrain.synth.spine_anatomy import SpineOptions


def fine_cases(count: int, first_seed: int) -> list:
    options = SpineOptions(max_voxels=40_000_000)  # the generator would otherwise coarsen the grid
    cases = []
    for k in range(count):
        if k % 2 == 0:
            modality, spacing = "ct", (0.78, 0.78, 1.5)
        else:
            modality, spacing = ("t2", "t1")[k // 2 % 2], (0.62, 0.62, 3.0)
        spine = generate_spine(first_seed + k, modality=modality, view="lumbar", spacing=spacing,
                               orientation="random", options=options)
        partial = {r.name for r in spine.vertebrae if not r.complete}
        cases.append(training._Case(spine.image, spine.points, spine.labels, partial,
                                    {"seed": first_seed + k, "modality": modality}))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=720_001)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = fine_cases(args.cases, args.first_seed)
    model = load_spine_label_model("lumbar", device="cpu")
    binned_bins, names = slices._bins, {}
    for way, bins in (("gaussian alone", lambda image, pixel_mm: np.ones(3, int)), ("binned", binned_bins)):
        slices._bins = bins
        try:
            names[way] = [[p.label for p in label_spine(case.image, model).points] for case in cases]
            metrics = training.validate(model, cases)
        finally:
            slices._bins = binned_bins
        shown = {k: metrics[k] for k in ("sensitivity", "precision", "localisation_mean_mm", "labeling_accuracy",
                                         "anchored_cases", "cases", "seconds_per_case_mean")}
        print(f"{way}: {json.dumps(shown)}")
    differ = [case.description["seed"] for case, a, b in zip(cases, *names.values()) if a != b]
    print(f"named differently: {len(differ)} of {len(cases)} {differ}")


if __name__ == "__main__":
    main()
