"""Training the 2D MR vertebral-body model on real scans (seed 001), with MONAI engines.

Cases are read once, normalised and kept in memory as slice stacks (numpy), so an epoch costs only
the network. Each training sample is a random slice (mostly ones that show a body) with its
neighbours as channels, cropped and augmented with the thesis augmentations as MONAI transforms
(flip, blur, noise, elastic, rotate ±20°, scale ±10 %, shift) plus intensity randomisation (bias
field, gamma, histogram shift) so contrast is a nuisance. Loss: MONAI Dice + cross-entropy.
Validation: Dice of whole slices of held-out *training* patients (early stopping, best checkpoint).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai import transforms as mt

from .slices2d import mask_slices, prepare_volume, stack

#: MR sets of ``splits.json`` and the label values of a body in their masks (all non-zero values).
MR_SETS = ("A10_vb3_lumbar_mr", "A11_vb2_t2_lumbar", "A12_vb1_thoracolumbar_pathology")


@dataclass
class TrainOptions:
    data_root: str
    out_dir: str
    architecture: str = "unet"
    plane: str = "sagittal"
    context: int = 1  # slices either side -> 2 * context + 1 input channels
    spacing_mm: float = 1.0
    n4: bool = False
    crop: int = 160
    batch_size: int = 8
    samples_per_epoch: int = 800
    max_epochs: int = 200
    learning_rate: float = 1e-3
    patience: int = 12
    body_slice_fraction: float = 0.85
    seed: int = 0
    threads: int = 1
    stop_at: float | None = None  # unix time: stop cleanly at the end of the iteration after it
    limit_cases: int | None = None  # tiny runs (tests): at most this many training cases
    validation_cases: list[str] = field(default_factory=list)  # held-out train cases (early stopping)


@dataclass
class CachedCase:
    name: str
    image: np.ndarray  # [slice, rows, cols] float32 in [0, 1]
    mask: np.ndarray  # [slice, rows, cols] uint8 body (1) / background (0)
    body_slices: np.ndarray  # indices of slices that show a body


def split_cases(data_root: str | Path, part: str) -> list[tuple[str, Path]]:
    """(name, case folder) of one part ('train' / 'validation') of ``splits.json``, per MR set."""
    root = Path(data_root)
    splits = json.loads((root / "splits.json").read_text(encoding="utf-8"))
    return [(f"{dataset}/{case}", root / dataset / case)
            for dataset in MR_SETS if dataset in splits for case in splits[dataset][part]]


def load_case(name: str, folder: Path, options: TrainOptions) -> CachedCase:
    import SimpleITK as sitk

    volume = prepare_volume(sitk.ReadImage(str(folder / "image.nii.gz")), options.plane, options.spacing_mm, options.n4)
    mask = (mask_slices(sitk.ReadImage(str(folder / "vertebrae.nii.gz")), volume) > 0).astype(np.uint8)
    image = volume.array.astype(np.float16)  # half the memory; the network gets float32 back
    return CachedCase(name, image, mask, np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)))


def augmentations(options: TrainOptions) -> mt.Compose:
    keys = ("image", "label")
    crop = (options.crop, options.crop)
    return mt.Compose([
        mt.SpatialPadd(keys, crop),
        mt.RandCropByPosNegLabeld(keys, "label", crop, pos=3, neg=1, num_samples=1),
        mt.RandAffined(keys, prob=0.8, rotate_range=math.radians(20), scale_range=(0.1, 0.1),
                       translate_range=(12, 12), mode=("bilinear", "nearest"), padding_mode="zeros"),
        mt.Rand2DElasticd(keys, spacing=(24, 24), magnitude_range=(0.5, 2.0), prob=0.2,
                          mode=("bilinear", "nearest"), padding_mode="zeros"),
        mt.RandFlipd(keys, prob=0.5, spatial_axis=1),  # superior-inferior: bodies look alike upside down
        mt.RandBiasFieldd("image", coeff_range=(0.0, 0.3), prob=0.3),
        mt.RandAdjustContrastd("image", gamma=(0.6, 1.7), prob=0.3),
        mt.RandHistogramShiftd("image", num_control_points=(5, 10), prob=0.2),
        mt.RandScaleIntensityd("image", factors=0.2, prob=0.3),
        mt.RandShiftIntensityd("image", offsets=0.1, prob=0.3),
        mt.RandGaussianSmoothd("image", sigma_x=(0.4, 1.2), sigma_y=(0.4, 1.2), prob=0.15),
        mt.RandGaussianNoised("image", std=0.03, prob=0.2),
        mt.EnsureTyped(keys, dtype=torch.float32, track_meta=False),
    ])


class RandomSliceDataset(torch.utils.data.Dataset):
    """``length`` random (case, slice) draws per epoch, mostly slices that show a body."""

    def __init__(self, cases: list[CachedCase], options: TrainOptions, transform):
        self.cases, self.options, self.transform = cases, options, transform
        self.rng = np.random.default_rng(options.seed)

    def __len__(self) -> int:
        return self.options.samples_per_epoch

    def __getitem__(self, _index: int):
        case = self.cases[self.rng.integers(len(self.cases))]
        if len(case.body_slices) and self.rng.random() < self.options.body_slice_fraction:
            index = int(self.rng.choice(case.body_slices))
        else:
            index = int(self.rng.integers(case.image.shape[0]))
        sample = {"image": stack(case.image, index, self.options.context).astype(np.float32),
                  "label": case.mask[index][None].astype(np.float32)}
        return self.transform(sample)


def validation_items(cases: list[CachedCase], context: int, step: int = 2) -> list[dict]:
    """Whole slices (every ``step``-th one showing a body, plus two empty ones) of held-out cases."""
    items = []
    for case in cases:
        empty = np.setdiff1d(np.arange(case.image.shape[0]), case.body_slices)
        picks = list(case.body_slices[::step]) + list(empty[:: max(1, len(empty) // 2)][:2])
        for index in picks:
            items.append({"image": stack(case.image, int(index), context).astype(np.float32),
                          "label": case.mask[int(index)][None].astype(np.float32)})
    return items


def options_to_dict(options: TrainOptions) -> dict:
    return {key: value for key, value in asdict(options).items() if key not in ("data_root", "out_dir", "stop_at")}


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)
