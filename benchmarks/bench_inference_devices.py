"""Warm inference time of each module's default model, per device (GPU against CPU).

Usage: python benchmarks/bench_inference_devices.py [--devices cuda cpu] [--repeats 3] [--threads 2]
       [--only spine-label spine-segment-2d spine-segment-3d brain-tissue]

Inputs are generated, so the script runs anywhere without data: a lumbar CT (seed 5, 1x1x2 mm), a
lumbar T2 MR (seed 7, 1x1x1 mm sagittal-ish grid of the generator) and a 1 mm T1 brain (seed 3).
Each model is loaded once per device and run once to warm up (CUDA kernels, caches), then
``--repeats`` times; the median wall time is reported, with the peak GPU memory where on CUDA.
Reading files and loading the model are not timed. Prints one table (seconds, GiB).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import SimpleITK as sitk
import torch

from spinebrain.errors import InputError

CASES = ("spine-label", "spine-segment-2d", "spine-segment-3d", "brain-tissue")


def spine_scan(modality: str, seed: int, spacing):
    from spinebrain.synth.spine import generate_spine

    return generate_spine(seed, modality=modality, view="lumbar", spacing=spacing).image


def middle_sagittal_slices(image, count: int):
    """The ``count`` middle slices across left-right (the index axis closest to x), as a real lumbar MR has."""
    axis = int(np.argmax(np.abs(np.array(image.GetDirection()).reshape(3, 3)[0])))
    middle, size = image.GetSize()[axis] // 2, list(image.GetSize())
    start = [0, 0, 0]
    start[axis], size[axis] = middle - count // 2, count
    return sitk.RegionOfInterest(image, size, start)


def runner(case: str, device: str):
    """A no-argument function running ``case``'s default model on its generated input on ``device``."""
    if case == "spine-label":
        from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model

        model, image = load_spine_label_model("lumbar", device=device), spine_scan("ct", 5, (1.0, 1.0, 2.0))
        return lambda: label_spine(image, model)
    if case == "spine-segment-2d":
        from spinebrain.spinesegment.pipeline2d import load_model_2d, segment_bodies

        model, image = load_model_2d(device=device), middle_sagittal_slices(spine_scan("t2", 7, (1.0, 1.0, 1.0)), 80)
        return lambda: segment_bodies(image, model)
    if case == "spine-segment-3d":
        from spinebrain.spinesegment.pipeline3d import load_model_3d, segment_vertebrae

        model, image = load_model_3d(device=device), spine_scan("ct", 5, (1.0, 1.0, 2.0))
        return lambda: segment_vertebrae(image, model)
    if case == "brain-tissue":
        from spinebrain.brainseg.pipeline import load_tissue_model, segment_tissue
        from spinebrain.synth.brain import generate_brain

        model, image = load_tissue_model(device=device), generate_brain(3).images["t1"]
        return lambda: segment_tissue(image, model, device=device)
    raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")


def time_case(case: str, device: str, repeats: int) -> tuple[float, float]:
    """Median seconds of ``repeats`` warm runs, and peak GPU memory (GiB, 0 on the CPU)."""
    run = runner(case, device)
    run()  # warm-up: kernel selection, allocator, first-touch caches
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
    return statistics.median(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    parser.add_argument("--only", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, as on the CI machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if any(d.startswith("cuda") for d in args.devices) and torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"{'model':<18} {'device':<7} {'seconds':>8} {'GPU GiB':>8}")
    for case in args.only:
        for device in args.devices:
            if device.startswith("cuda") and not torch.cuda.is_available():
                print(f"{case:<18} {device:<7} {'n/a':>8} {'':>8}  (no CUDA device)")
                continue
            try:
                seconds, peak = time_case(case, device, args.repeats)
            except InputError as error:  # e.g. the brain generator without nilearn's template
                print(f"{case:<18} {device:<7} {'n/a':>8} {'':>8}  ({error})")
                continue
            print(f"{case:<18} {device:<7} {seconds:8.2f} {peak:8.2f}", flush=True)


if __name__ == "__main__":
    main()
