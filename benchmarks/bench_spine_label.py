"""Speed of a full SpineLabel run on the CPU: warm (in-process, model loaded) and cold (CLI wall time).

Usage: python benchmarks/bench_spine_label.py [--region lumbar] [--scans A.nii.gz ...] [--large] [--repeats 3] [--threads 2]

Without ``--scans`` a generated lumbar CT (seed 5, 1x1x2 mm) and cervical T2 (seed 6, 0.8x0.8x3 mm) are used. Warm: the
model is loaded once, then ``label_spine`` runs ``--repeats`` times per scan (median reported;
reading the file is not timed). Cold: ``python -m spinebrain spine-label SCAN --out X.mrk.json``
in a fresh interpreter, timed from start to exit (imports, model loading, reading, writing).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def generated_scans(folder: Path) -> list[tuple[str, Path]]:
    from spinebrain.io import write_image
    from spinebrain.synth.spine import generate_spine

    scans = []
    for region, modality, seed, spacing in (("lumbar", "ct", 5, (1.0, 1.0, 2.0)), ("cervical", "t2", 6, (0.8, 0.8, 3.0))):
        case = generate_spine(seed, modality=modality, view=region, spacing=spacing)
        scans.append((region, write_image(case.image, folder / f"{region}_{modality}.nii.gz")))
    return scans


def large_ct(folder: Path) -> Path:
    """The issue's size: a generated lumbar CT (seed 5) placed in a 512 x 512 x 300 grid of 0.8 x 0.8 x 1.5 mm
    (a 410 x 410 x 450 mm abdominal field of view; air and body outside the generated field stay -1000 HU)."""
    import SimpleITK as sitk

    from spinebrain.io import write_image
    from spinebrain.synth.spine import generate_spine

    case = generate_spine(5, modality="ct", view="lumbar", spacing=(1.0, 1.0, 2.0))
    spacing, size = (0.8, 0.8, 1.5), (512, 512, 300)
    centre = case.image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in case.image.GetSize()])
    direction = case.image.GetDirection()
    half = [(n - 1) / 2 * d for n, d in zip(size, spacing)]
    axes = [direction[0::3], direction[1::3], direction[2::3]]
    origin = [c - sum(half[k] * axes[k][i] for k in range(3)) for i, c in enumerate(centre)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    grid.SetOrigin(origin)
    grid.SetDirection(direction)
    large = sitk.Resample(sitk.Cast(case.image, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, -1000.0)
    return write_image(sitk.Cast(large, sitk.sitkInt16), folder / "large_lumbar_ct_512x512x300.nii.gz")


def warm_seconds(path: Path, region: str, repeats: int) -> tuple[float, int]:
    from spinebrain.io import load_volume
    from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model

    model = load_spine_label_model(region, device="cpu")
    image = load_volume(path)
    label_spine(image, model)  # first call warms torch's kernels
    times, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = len(label_spine(image, model).points)
        times.append(time.perf_counter() - start)
    return statistics.median(times), count


def cold_seconds(path: Path, region: str, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "spinebrain", "--quiet", "spine-label", str(path), "--region", region,
                    "--device", "cpu", "--out", str(out)], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", nargs="*", type=Path, help="scans to time (default: two generated ones)")
    parser.add_argument("--region", default="lumbar", help="region of --scans (default lumbar)")
    parser.add_argument("--large", action="store_true",
                        help="also time a 512 x 512 x 300 CT (the issue's cold-start size), region lumbar")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per scan (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        scans = [(args.region, p) for p in args.scans] if args.scans else generated_scans(folder)
        if args.large:
            scans.append(("lumbar", large_ct(folder)))
        print(f"{'scan':<36} {'region':<9} {'points':>6} {'warm (s)':>9} {'cold CLI (s)':>13}")
        for region, path in scans:
            warm, count = warm_seconds(path, region, args.repeats)
            cold = cold_seconds(path, region, folder / f"{path.name}.mrk.json")
            print(f"{path.name:<36} {region:<9} {count:>6} {warm:>9.3f} {cold:>13.2f}")
    print(f"torch threads: {args.threads}; CPU only")


if __name__ == "__main__":
    main()
