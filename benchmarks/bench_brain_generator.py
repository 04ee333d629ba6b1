"""Throughput of the synthetic brain generator, in output voxels per second per CPU core.

Usage: python benchmarks/bench_brain_generator.py [--spacing 2 1] [--cases 4] [--threads 1]

The template is loaded once before timing (warm, as in a training stream). With --threads 1
SimpleITK runs single-threaded and numpy/scipy are single-threaded anyway, so the figure is per
core; with more threads it is divided by the thread count.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import SimpleITK as sitk

from spinebrain.synth.brain import CONTRASTS, generate_brain, load_template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=float, nargs="+", default=[2.0, 1.0], help="working spacing(s) in mm")
    parser.add_argument("--cases", type=int, default=4, help="cases per spacing")
    parser.add_argument("--threads", type=int, default=1, help="SimpleITK threads (cores used)")
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)

    started = time.perf_counter()
    load_template()
    print(f"template load (cold): {time.perf_counter() - started:.2f} s")
    kinds = (None, "ms", "tumour")
    for spacing in args.spacing:
        generate_brain(0, CONTRASTS, "ms", spacing=spacing)  # warm the per-spacing template cache
        times, voxels = [], []
        for seed in range(1, args.cases + 1):
            started = time.perf_counter()
            case = generate_brain(seed, CONTRASTS, kinds[seed % 3], skull=bool(seed % 2), spacing=spacing)
            times.append(time.perf_counter() - started)
            voxels.append(int(np.prod(case.tissue.GetSize())))
        rate = sum(voxels) / sum(times) / args.threads
        print(f"spacing {spacing:g} mm, {len(CONTRASTS)} contrasts: {np.mean(times):.2f} s/case "
              f"(median {np.median(times):.2f}), {np.mean(voxels) / 1e6:.2f} Mvoxel/case, "
              f"{rate / 1e6:.3f} Mvoxel/s/core ({args.threads} thread(s))")


if __name__ == "__main__":
    main()
