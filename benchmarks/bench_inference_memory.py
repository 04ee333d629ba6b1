"""Peak memory (RSS) of the 3D inference block on a large CT, CPU only, with a tiny network.

Usage: python benchmarks/bench_inference_memory.py [--size 512 512 600] [--spacing 0.8 0.8 1.0]
       [--model-spacing 0.8 0.8 1.0] [--patch 96 96 96] [--output labels] [--max-slab-voxels N]

Makes an int16 CT-like volume (a soft-tissue cylinder with a bright "spine" inside, HU), a model
card with a CT window and the given spacing and patch, and a two-layer 3D network (conv 3x3x3 -> 4
channels -> 1x1x1 -> 2 classes), then runs :func:`spinebrain.inference.run_inference` once.
With the model spacing equal to the scan's (the default) the whole 512x512x600 grid is inferred:
the worst case. Prints the peak resident memory of the process (``getrusage``; includes Python,
torch, the input scan and the results), the peak before inference, and the wall time.
``--max-slab-voxels`` larger than the volume runs MONAI on the whole volume at once, for comparison.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import SimpleITK as sitk
import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; NaN elsewhere)."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * resource.getpagesize() / 2**20


def ct_like(size, spacing) -> sitk.Image:
    """Air around a water cylinder along k with a bone rod inside: int16 HU, built slice by slice."""
    i, j = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="xy")
    radius = np.hypot(i - size[0] / 2, j - size[1] / 2)
    plane = np.where(radius < 0.4 * size[0], 40, -1000).astype(np.int16)
    plane[np.hypot(i - size[0] / 2, j - 0.65 * size[1]) < 0.05 * size[0]] = 700
    array = np.empty(size[::-1], np.int16)
    array[:] = plane
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 600))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.8, 0.8, 1.0))
    parser.add_argument("--model-spacing", type=float, nargs=3, default=None, help="default: the scan's spacing")
    parser.add_argument("--patch", type=int, nargs=3, default=(96, 96, 96))
    parser.add_argument("--output", default="labels", choices=("labels", "probabilities", "both"))
    parser.add_argument("--max-slab-voxels", type=int, default=None)
    parser.add_argument("--sw-batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from spinebrain.inference import run_inference
    from spinebrain.models import ModelCard

    image = ct_like(args.size, args.spacing)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1))
    card = ModelCard(id="bench", task="spine-segment", version="1", labels={"0": "background", "1": "bone"},
                     modalities=["CT"], spacing=list(args.model_spacing or args.spacing), patch_size=list(args.patch),
                     normalisation={"method": "window", "center": 400, "width": 1800},
                     network={"architecture": "BasicUNet", "kwargs": {}})
    before, resident = peak_rss_mb(), current_rss_mb()
    started = time.perf_counter()
    result = run_inference(image, network, card, output=args.output, max_slab_voxels=args.max_slab_voxels,
                           sw_batch_size=args.sw_batch_size)
    seconds = time.perf_counter() - started
    bone = int(sitk.GetArrayViewFromImage(result.labels).sum()) if result.labels is not None else -1
    voxels = int(np.prod(args.size))
    print(f"scan {args.size[0]}x{args.size[1]}x{args.size[2]} int16 ({voxels * 2 / 2**20:.0f} MB), model spacing "
          f"{card.spacing}, patch {args.patch}, output {args.output}, max_slab_voxels {args.max_slab_voxels or 'default'}")
    print(f"RSS just before inference {resident:.0f} MB (peak so far {before:.0f} MB); peak RSS overall {peak_rss_mb():.0f} MB; "
          f"{result.windows or 'n/a'} windows; {seconds:.1f} s on {result.device} with {args.threads} thread(s); "
          f"labelled voxels {bone}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
