"""A compact on-disk copy of the 2D MR training cases, for training where the NIfTI files are not.

What :func:`.training2d.load_case` computes (scan in the working frame at the card spacing,
normalised to [0, 1], body mask, body slices, labelled span) is written once per case as a
compressed ``.npz``: the image quantised to 64 levels of [0, 1] (rounding error SD 0.005, below
the scans' own noise and far below the augmentations'; a fixed uniform dither on reading fills the
gaps between levels), stored as differences between neighbouring slices (uint8, wrapping; deflate
has no predictor and neighbouring sagittal slices are alike: about half the bytes of the plain
array) and cropped to what training needs: the bodies' box plus 32 voxels superior-inferior, 64
anterior-posterior (posterior elements, back muscles and retroperitoneum stay in view as
negatives; at run time the network sees the box of what its quick pass found plus
``roi_margin_px`` = 40) and the body slices plus 4 (the inference ROI adds at most two coarse
steps of 4). That keeps the 30 'train' scans within the device's 28 MB (24.8 MB).
``index.json`` records the cases and the options they were made with, and :func:`read_cache`
refuses a cache made with another spacing, plane or N4.

Prep (CPU, where the data are)::

    python -m spinebrain.spinesegment.cache2d --data ../shared/data --out .gpu/dataB/seg2d

Training then reads it with ``engine2d --cache .gpu/dataB/seg2d`` instead of ``--data``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from .training2d import CachedCase, TrainOptions, log

INDEX = "index.json"
#: Intensity levels of the stored image (0 … LEVELS).
LEVELS = 63
#: Options a cache is tied to (a trainer with other values must not read it).
CACHE_KEYS = ("plane", "spacing_mm", "n4")


def encode_slices(codes: np.ndarray) -> np.ndarray:
    """uint8 codes -> first slice, then each slice minus the one before (modulo 256)."""
    return np.diff(codes, axis=0, prepend=np.zeros_like(codes[:1])).astype(np.uint8)


def decode_slices(delta: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_slices` (a running sum modulo 256)."""
    return np.cumsum(delta, axis=0, dtype=np.uint8)


def crop_case(case: CachedCase, in_plane_margin: int, slice_margin: int, row_margin: int | None = None) -> CachedCase:
    """``case`` cut to its bodies' box plus margins (``row_margin`` along the rows, anterior-posterior
    in the sagittal plane, when given); the span and body slices follow the cut."""
    if not len(case.body_slices):
        return case
    row_margin = in_plane_margin if row_margin is None else row_margin
    rows = np.flatnonzero(case.mask.any(axis=(0, 2)))
    cols = np.flatnonzero(case.mask.any(axis=(0, 1)))
    keep = [slice(max(0, int(case.body_slices[0]) - slice_margin), int(case.body_slices[-1]) + slice_margin + 1),
            slice(max(0, int(rows[0]) - row_margin), int(rows[-1]) + row_margin + 1),
            slice(max(0, int(cols[0]) - in_plane_margin), int(cols[-1]) + in_plane_margin + 1)]
    mask = case.mask[tuple(keep)]
    body_slices = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    # the span runs along columns (sagittal / coronal) or slices (axial): shift it by that axis' cut
    shift = keep[2].start if case.si_in_columns else keep[0].start
    span = (case.span[0] - shift, case.span[1] - shift)
    return CachedCase(case.name, case.image[tuple(keep)], mask, body_slices, span, case.plane)


def write_cache(options: TrainOptions, out_dir: str | Path, in_plane_margin: int, slice_margin: int,
                only: list[str] | None = None, row_margin: int | None = None) -> dict:
    """Prepare every 'train' case of ``options.data_root`` (or those named in ``only``) and write
    them to ``out_dir``; returns the index."""
    from tqdm import tqdm

    from .training2d import load_case, split_cases

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = [case for case in split_cases(options.data_root, "train") if only is None or case[0] in only]
    if not cases:
        raise InputError(f"No 'train' MR cases in {options.data_root}/splits.json; give the folder with the A10-A12 sets.")
    index = {"options": {key: getattr(options, key) for key in CACHE_KEYS}, "in_plane_margin": in_plane_margin,
             "row_margin": row_margin,
             "slice_margin": slice_margin, "cases": {}}
    for name, folder in tqdm(cases, desc="caching cases", unit="case"):
        case = crop_case(load_case(name, folder, options), in_plane_margin, slice_margin, row_margin)
        file_name = name.replace("/", "__") + ".npz"
        image = np.round(np.clip(case.image.astype(np.float32), 0.0, 1.0) * LEVELS).astype(np.uint8)
        np.savez_compressed(out_dir / file_name, image_slice_delta=encode_slices(image), mask=case.mask.astype(np.uint8),
                            span=np.array(case.span, dtype=np.int64))
        index["cases"][name] = {"file": file_name, "shape": list(image.shape)}
    (out_dir / INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
    return index


def read_cache(cache_dir: str | Path, options: TrainOptions, names: list[str] | None = None) -> list[CachedCase]:
    """The cached cases (all, or ``names`` in that order) as :class:`CachedCase`, image back to float16 [0, 1]."""
    cache_dir = Path(cache_dir)
    if not (cache_dir / INDEX).is_file():
        raise InputError(f"{cache_dir} holds no 2D training cache ({INDEX}); make one with "
                         "python -m spinebrain.spinesegment.cache2d --data DATA --out DIR.")
    index = json.loads((cache_dir / INDEX).read_text(encoding="utf-8"))
    differing = [key for key in CACHE_KEYS if index["options"][key] != getattr(options, key)]
    if differing:
        raise InputError(f"The cache in {cache_dir} was made with other {', '.join(differing)} "
                         f"({', '.join(str(index['options'][k]) for k in differing)}); make it again with these options.")
    cases = []
    for name in names if names is not None else list(index["cases"]):
        with np.load(cache_dir / index["cases"][name]["file"]) as arrays:
            codes = decode_slices(arrays["image_slice_delta"]).astype(np.float32)
            # a fixed uniform dither fills the gaps between the levels (no staircase histogram)
            dither = np.random.default_rng(len(cases)).uniform(-0.5, 0.5, codes.shape).astype(np.float32)
            image = np.clip((codes + dither) / LEVELS, 0.0, 1.0).astype(np.float16)
            mask = arrays["mask"]
            span = tuple(int(v) for v in arrays["span"])
        body_slices = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        cases.append(CachedCase(name, image, mask, body_slices, span, options.plane))
    return cases


def cached_names(cache_dir: str | Path) -> list[str]:
    return list(json.loads((Path(cache_dir) / INDEX).read_text(encoding="utf-8"))["cases"])


def main(argv: list[str] | None = None) -> None:
    """``python -m spinebrain.spinesegment.cache2d --data DATA --out DIR``: cache the 'train' MR cases."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", required=True, help="folder with splits.json and the A10-A12 MR sets")
    parser.add_argument("--out", required=True, help="cache folder (index.json + one .npz per case)")
    parser.add_argument("--margin", type=int, default=32,
                        help="voxels kept around the bodies' box in each slice")
    parser.add_argument("--row-margin", type=int, default=64,
                        help="voxels kept in front of and behind the bodies (rows of a sagittal slice)")
    parser.add_argument("--slice-margin", type=int, default=4, help="slices kept either side of the bodies")
    parser.add_argument("--spacing", type=float, default=1.0)
    args = parser.parse_args(argv)
    started = time.time()
    options = TrainOptions(data_root=args.data, out_dir=args.out, spacing_mm=args.spacing)
    index = write_cache(options, args.out, args.margin, args.slice_margin, row_margin=args.row_margin)
    size = sum(path.stat().st_size for path in Path(args.out).iterdir())
    log(f"{len(index['cases'])} cases, {size / 1e6:.1f} MB in {args.out}, {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
