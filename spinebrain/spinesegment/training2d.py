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
    init_weights: str | None = None  # start from these weights (package folder or .safetensors)
    span_mask: bool = True  # loss only within each scan's labelled superior-inferior span (+ margin)
    span_margin_mm: float = 2.0
    balance_sets: bool = True  # draw each MR set equally often (A12, the hardest, has the fewest scans)
    validation_step: int = 2  # every n-th body slice of the early-stopping cases is validated
    remap_probability: float = 0.3  # random non-monotonic intensity curve (contrast randomisation)
    # device runs (see engine2d's --device / --workers / --seconds and cache2d)
    cache_dir: str | None = None  # read the cases from a cache2d folder instead of data_root's NIfTI
    device: str = "cpu"
    workers: int = 0  # DataLoader worker processes (each with one torch thread)
    epoch_seconds: float | None = None  # end an epoch (validate + checkpoint) after this long
    export_dir: str | None = None  # copy best weights, history and metrics here after every epoch
    lr_schedule: str = "epochs"  # "epochs": cosine over max_epochs; "time": warm-up + cosine until stop_at


@dataclass
class CachedCase:
    name: str
    image: np.ndarray  # [slice, rows, cols] float32 in [0, 1]
    mask: np.ndarray  # [slice, rows, cols] uint8 body (1) / background (0)
    body_slices: np.ndarray  # indices of slices that show a body
    span: tuple[int, int]  # first and last superior-inferior index (columns, or slices when axial) labelled
    plane: str = "sagittal"

    @property
    def dataset(self) -> str:
        return self.name.split("/")[0]

    def ignore(self, index: int, margin: int) -> np.ndarray:
        """[1, rows, cols] 1 where slice ``index`` lies outside the labelled span (+ ``margin`` voxels)."""
        ignore = np.zeros((1,) + self.mask.shape[1:], dtype=np.float32)
        low, high = self.span[0] - margin, self.span[1] + margin
        if self.si_in_columns:
            ignore[..., : max(low, 0)] = 1.0
            ignore[..., high + 1:] = 1.0
        elif not low <= index <= high:
            ignore[:] = 1.0
        return ignore

    @property
    def si_in_columns(self) -> bool:
        return self.plane != "axial"


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
    body_slices = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    # superior-inferior runs along the slice columns (sagittal, coronal) or across slices (axial)
    along = np.flatnonzero(mask.any(axis=(0, 1))) if options.plane != "axial" else body_slices
    span = (int(along[0]), int(along[-1])) if len(along) else (0, mask.shape[-1] - 1)
    return CachedCase(name, image, mask, body_slices, span, options.plane)


class RandContrastRemapd(mt.RandomizableTransform, mt.MapTransform):
    """Replace the image's intensities by a random smooth, not necessarily monotonic, curve.

    The SynthSeg idea (random contrast per structure) for scans that have only body masks: a piecewise
    linear lookup through 4-8 random points on [0, 1] gives bright or dark bodies, inverted fat and
    fluid, flat or strong contrast, so T1, T2, TIRM and water-fat scans all look like members of one
    family. Hand-written because MONAI's RandHistogramShift is monotonic only and RandIntensityRemap
    samples a curve over every distinct value, which for a float image is noise, not a contrast.
    All channels (neighbouring slices) share one curve.
    """

    def __init__(self, keys, prob: float = 0.3, points: tuple[int, int] = (4, 8)):
        mt.MapTransform.__init__(self, keys)
        mt.RandomizableTransform.__init__(self, prob)
        self.points = points
        self.curve = (np.array([0.0, 1.0]), np.array([0.0, 1.0]))

    def randomize(self, data=None) -> None:
        super().randomize(None)
        count = int(self.R.randint(self.points[0], self.points[1] + 1))
        self.curve = (np.linspace(0.0, 1.0, count), self.R.uniform(0.0, 1.0, count))

    def __call__(self, data):
        self.randomize()
        if not self._do_transform:
            return data
        data = dict(data)
        for key in self.key_iterator(data):
            image = np.asarray(data[key], dtype=np.float32)
            remapped = np.interp(np.clip(image, 0.0, 1.0), *self.curve).astype(np.float32)
            low, high = float(remapped.min()), float(remapped.max())
            data[key] = (remapped - low) / (high - low) if high - low > 1e-3 else remapped
        return data


def augmentations(options: TrainOptions) -> mt.Compose:
    """Crop, geometry and intensity augmentation; the body label and its ignore mask become the
    two channels of ``label`` at the end (:class:`.engine2d.SpanMaskedDiceCE` reads them)."""
    keys = ("image", "label", "ignore")
    crop = (options.crop, options.crop)
    nearest = ("bilinear", "nearest", "nearest")
    return mt.Compose([
        mt.SpatialPadd(keys, crop),
        mt.RandCropByPosNegLabeld(keys, "label", crop, pos=3, neg=1, num_samples=1),
        mt.RandAffined(keys, prob=0.8, rotate_range=math.radians(20), scale_range=(0.1, 0.1),
                       translate_range=(12, 12), mode=nearest, padding_mode="zeros"),
        mt.Rand2DElasticd(keys, spacing=(24, 24), magnitude_range=(0.5, 2.0), prob=0.2,
                          mode=nearest, padding_mode="zeros"),
        mt.RandFlipd(keys, prob=0.5, spatial_axis=1),  # superior-inferior: bodies look alike upside down
        RandContrastRemapd("image", prob=options.remap_probability),
        mt.RandBiasFieldd("image", coeff_range=(0.0, 0.3), prob=0.3),
        mt.RandAdjustContrastd("image", gamma=(0.6, 1.7), prob=0.3),
        mt.RandHistogramShiftd("image", num_control_points=(5, 10), prob=0.2),
        mt.RandScaleIntensityd("image", factors=0.2, prob=0.3),
        mt.RandShiftIntensityd("image", offsets=0.1, prob=0.3),
        mt.RandGaussianSmoothd("image", sigma_x=(0.4, 1.2), sigma_y=(0.4, 1.2), prob=0.15),
        mt.RandGaussianNoised("image", std=0.03, prob=0.2),
        mt.ConcatItemsd(("label", "ignore"), "label"),
        mt.DeleteItemsd("ignore"),
        mt.EnsureTyped(("image", "label"), dtype=torch.float32, track_meta=False),
    ])


class RandomSliceDataset(torch.utils.data.Dataset):
    """``length`` random (case, slice) draws per epoch, mostly slices that show a body."""

    def __init__(self, cases: list[CachedCase], options: TrainOptions, transform):
        self.cases, self.options, self.transform = cases, options, transform
        self.rng = np.random.default_rng(options.seed)
        self._rng_seed = None

    def _worker_rng(self) -> np.random.Generator:
        """Each DataLoader worker draws its own slices: a worker gets a copy of this dataset, rng
        included, so without a reseed every worker (and, without persistent workers, every epoch)
        would repeat the same draws. torch gives each worker of each epoch a distinct seed."""
        info = torch.utils.data.get_worker_info()
        if info is not None and info.seed != self._rng_seed:
            self._rng_seed = info.seed
            self.rng = np.random.default_rng(info.seed % 2**32)
        return self.rng

    def __len__(self) -> int:
        return self.options.samples_per_epoch

    def __getitem__(self, _index: int):
        self._worker_rng()
        case = self._draw_case()
        if len(case.body_slices) and self.rng.random() < self.options.body_slice_fraction:
            index = int(self.rng.choice(case.body_slices))
        else:
            index = int(self.rng.integers(case.image.shape[0]))
        sample = {"image": stack(case.image, index, self.options.context).astype(np.float32),
                  "label": case.mask[index][None].astype(np.float32),
                  "ignore": ignore_channel(case, index, self.options)}
        return self.transform(sample)

    def _draw_case(self) -> CachedCase:
        if not self.options.balance_sets:
            return self.cases[self.rng.integers(len(self.cases))]
        sets = sorted({case.dataset for case in self.cases})
        chosen = sets[self.rng.integers(len(sets))]
        members = [case for case in self.cases if case.dataset == chosen]
        return members[self.rng.integers(len(members))]


def ignore_channel(case: CachedCase, index: int, options: TrainOptions) -> np.ndarray:
    if not options.span_mask:
        return np.zeros((1,) + case.mask.shape[1:], dtype=np.float32)
    return case.ignore(index, int(round(options.span_margin_mm / options.spacing_mm)))


def validation_items(cases: list[CachedCase], options: TrainOptions) -> list[dict]:
    """Whole slices (every ``step``-th one showing a body, plus two empty ones) of held-out cases;
    ``label`` holds the body mask and the ignore mask as two channels, as in training."""
    items = []
    for case in cases:
        empty = np.setdiff1d(np.arange(case.image.shape[0]), case.body_slices)
        picks = list(case.body_slices[:: options.validation_step]) + list(empty[:: max(1, len(empty) // 2)][:2])
        for index in picks:
            body = case.mask[int(index)][None].astype(np.float32)
            items.append({"image": stack(case.image, int(index), options.context).astype(np.float32),
                          "label": np.concatenate([body, ignore_channel(case, int(index), options)])})
    return items


def options_to_dict(options: TrainOptions) -> dict:
    return {key: value for key, value in asdict(options).items() if key not in ("data_root", "out_dir", "stop_at")}


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)
