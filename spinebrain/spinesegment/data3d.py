"""Cases for the 3D instance model: scans on the model grid with vertebrae ranked in spine order.

A prepared case holds the CT on the model's canonical grid (LPS axes, so array axis 0 runs inferior
-> superior, at the card's spacing), the window-normalised image, and an instance map whose values
are *ranks* 1..n in cranio-caudal order (1 = most cranial) with a completeness flag and a voxel
count per rank. The training sampler and the evaluation read these; the cache folder lets a
separate process generate cases while training runs (``python -m spinebrain.spinesegment.data3d``).

Sources: the synthetic spine generator (exact instance maps and the 3 % rule on the full vertebra)
and CT synthesised from real vertebra label maps (random deformation and intensity per structure,
:func:`spinebrain.synth.synthesize_from_labels`; complete = not touching the border).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..anatomy import vertebra_index, vertebra_name
from ..inference.prepare import normalise
from ..resample import reorient, resample_to_spacing

#: CT window of the 3D model (HU): air is 0, dense bone near 1 (what pads outside the scan, too).
CT_WINDOW = {"method": "window", "low": -1000.0, "high": 1500.0}


@dataclass
class PreparedCase:
    name: str
    image: np.ndarray  # [z, y, x] float32 (z inferior -> superior), window-normalised
    ranks: np.ndarray  # [z, y, x] uint8: 0 background, 1..n vertebrae cranial -> caudal
    names: list[str]  # name of rank r at index r - 1
    complete: np.ndarray  # (n,) bool: complete in the scan
    voxels: np.ndarray  # (n,) voxel count of each rank on the model grid
    spacing_mm: float = 2.5


def to_canonical(image: sitk.Image, spacing_mm: float, is_label: bool = False) -> sitk.Image:
    """``image`` with LPS axes (no interpolation) resampled to isotropic ``spacing_mm``."""
    return resample_to_spacing(reorient(image, "LPS"), [spacing_mm] * 3, is_label=is_label)


def prepare_case(name: str, image: sitk.Image, labels: sitk.Image, label_names: dict[int, str],
                 complete: dict[int, bool], spacing_mm: float) -> PreparedCase:
    """A scan and its vertebra label map (any values) as a :class:`PreparedCase`."""
    grid = to_canonical(image, spacing_mm)
    label_grid = sitk.Resample(reorient(labels, "LPS"), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    values = sitk.GetArrayFromImage(label_grid)
    present = [v for v in label_names if np.any(values == v)]
    ordered = sorted(present, key=lambda v: vertebra_index(label_names[v]))
    ranks = np.zeros(values.shape, np.uint8)
    for rank, value in enumerate(ordered, start=1):
        ranks[values == value] = rank
    counts = np.bincount(ranks.ravel(), minlength=len(ordered) + 1)[1:]
    return PreparedCase(name, normalise(grid, CT_WINDOW), ranks, [label_names[v] for v in ordered],
                        np.array([bool(complete[v]) for v in ordered]), counts.astype(np.int64), float(spacing_mm))


def from_spine_case(name: str, case, spacing_mm: float) -> PreparedCase:
    """A :class:`spinebrain.synth.SpineCase` (generated or synthesised from labels) prepared."""
    return prepare_case(name, case.image, case.labels, {r.label: r.name for r in case.vertebrae},
                        {r.label: r.complete for r in case.vertebrae}, spacing_mm)


def save_case(case: PreparedCase, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case.name}.npz"
    partial = path.with_suffix(".tmp.npz")
    np.savez_compressed(partial, image=case.image.astype(np.float16), ranks=case.ranks, complete=case.complete,
                        voxels=case.voxels, names=np.array(case.names), spacing=np.float32(case.spacing_mm))
    partial.replace(path)  # readers never see half a file
    return path


def load_case(path: Path, spacing_mm: float | None = None) -> PreparedCase:
    """A cached case, resampled to ``spacing_mm`` when it was cached at another spacing."""
    with np.load(path) as data:
        case = PreparedCase(path.stem, data["image"].astype(np.float32), data["ranks"],
                            [str(n) for n in data["names"]], data["complete"].astype(bool), data["voxels"],
                            float(data["spacing"]) if "spacing" in data else 2.5)
    if spacing_mm is None or abs(spacing_mm - case.spacing_mm) < 1e-6:
        return case
    return rescale_case(case, spacing_mm)


def rescale_case(case: PreparedCase, spacing_mm: float) -> PreparedCase:
    from scipy import ndimage

    factor = case.spacing_mm / spacing_mm
    image = ndimage.zoom(case.image, factor, order=1)
    ranks = ndimage.zoom(case.ranks, factor, order=0)
    voxels = np.bincount(ranks.ravel(), minlength=len(case.names) + 1)[1:].astype(np.int64)
    return PreparedCase(case.name, image, ranks, case.names, case.complete, voxels, spacing_mm)


def cached_cases(folder: Path, prefix: str = "") -> list[Path]:
    return sorted(p for p in Path(folder).glob(f"{prefix}*.npz") if not p.name.endswith(".tmp.npz"))


def synthetic_case(seed: int, spacing_mm: float):
    """A generated CT spine: half lumbar views (the target use), half any view."""
    from ..synth import generate_spine

    view = "lumbar" if seed % 2 == 0 else "random"
    return generate_spine(seed, modality="ct", view=view)


def label_map_case(path: Path, seed: int, label_convention: str = "verse"):
    """CT synthesised from a real vertebra label map (VerSe values; sacrum 26 and coccyx 27 dropped)."""
    from ..synth import synthesize_from_labels

    labels = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(labels).astype(np.uint8)
    array[(array == 26) | (array == 27) | (array > 28)] = 0  # VerSe 26 is the whole sacrum, not S1
    clean = sitk.GetImageFromArray(array)
    clean.CopyInformation(labels)
    names = {int(v): vertebra_name(int(v)) for v in np.unique(array) if v}
    return synthesize_from_labels(clean, names, seed=seed, modality="ct")


def build_cache(out: Path, seeds: range, spacing_mm: float, prefix: str, label_maps: list[Path], per_map: int) -> None:
    for seed in seeds:
        path = out / f"{prefix}syn{seed:05d}.npz"
        if not path.exists():
            started = time.time()
            save_case(from_spine_case(path.stem, synthetic_case(seed, spacing_mm), spacing_mm), out)
            print(f"{path.name} {time.time() - started:.1f} s", flush=True)
        for index, label_map in enumerate(label_maps):
            if (seed - seeds.start) < per_map:
                name = f"{prefix}map{index}_{seed:05d}"
                if not (out / f"{name}.npz").exists():
                    save_case(from_spine_case(name, label_map_case(label_map, seed), spacing_mm), out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Generate prepared 3D instance-segmentation training cases.")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", default="0:60", help="first:last synthetic seeds")
    parser.add_argument("--spacing", type=float, default=2.5)
    parser.add_argument("--prefix", default="train_")
    parser.add_argument("--label-map", type=Path, action="append", default=[],
                        help="real vertebra label map (VerSe values) to synthesise CT from")
    parser.add_argument("--per-map", type=int, default=20, help="deformed copies per label map")
    args = parser.parse_args(argv)
    first, last = (int(x) for x in args.seeds.split(":"))
    import torch

    torch.set_num_threads(1)
    build_cache(args.out, range(first, last), args.spacing, args.prefix, args.label_map, args.per_map)
    (args.out / f"{args.prefix}done.json").write_text(json.dumps({"seeds": args.seeds}), encoding="utf-8")


if __name__ == "__main__":
    main()
