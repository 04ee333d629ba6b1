"""Throughput of the synthetic spine generator in output voxels per second on one CPU core.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_spine_generator.py`` (the script also pins torch
to one thread). Each row averages several seeds; the first call is a warm-up.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from spinebrain.synth import generate_spine  # noqa: E402

CASES = [  # (modality, view, spacing i, j, k)
    ("ct", "lumbar", (1.0, 1.0, 1.0)),
    ("ct", "lumbar", (0.7, 0.7, 2.0)),
    ("ct", "whole", (1.5, 1.5, 1.5)),
    ("t2", "lumbar", (1.0, 1.0, 1.0)),
    ("t1", "cervical", (0.6, 0.6, 3.0)),
    ("random", "thoracic", (1.0, 1.0, 1.0)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generate_spine(0, "ct", "short", spacing=(2.0, 2.0, 2.0))  # warm-up (imports, caches)
    print(f"{'modality':8} {'view':9} {'spacing (mm)':16} {'voxels':>11} {'s/case':>7} {'Mvox/s/core':>12}")
    for modality, view, spacing in CASES:
        voxels, seconds = 0, 0.0
        for seed in range(1, args.seeds + 1):
            start = time.perf_counter()
            case = generate_spine(seed, modality, view, spacing=spacing, orientation="sagittal")
            seconds += time.perf_counter() - start
            voxels += int(np.prod(case.image.GetSize()))
        print(f"{modality:8} {view:9} {str(spacing):16} {voxels // args.seeds:>11,} {seconds / args.seeds:>7.2f}"
              f" {voxels / seconds / 1e6:>12.2f}")


if __name__ == "__main__":
    main()
