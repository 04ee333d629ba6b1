"""Training patches for the iterative instance network (seed 002's sampling and augmentation).

Each sample is one patch of a prepared case (:mod:`.data3d`):

* its centre: random in the scan (1 in 6, the paper's share) or inside the bounding box of a
  randomly chosen vertebra (forced to contain bone);
* a traversal direction: top-down, or bottom-up by flipping the patch along the spine axis and
  reversing the order, so one network serves both directions ("segment the first vertebra from the
  top of the patch that is not in memory");
* the instance memory from the reference: every vertebra before a chosen one in traversal order
  (the forced vertebra, a random one, or none: an empty memory teaches the search);
* the target: the first vertebra in traversal order that is not in memory and shows at least
  ``min_voxels`` voxels in the patch (none: an empty target);
* completeness: complete in the scan *and* at most 3 % of its voxels outside the patch;
* augmentation (MONAI): random cropping along z (the scan's end moved into the patch: image set to
  air, labels removed, completeness re-judged), elastic deformation, Gaussian noise and smoothing,
  plus small intensity scaling/shifting for scanner differences.

The label handed to the loss is ``[3, D, H, W]``: target mask, surface weights, completeness flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai import transforms as mt

from .data3d import PreparedCase
from .loss3d import surface_weights

COMPLETE_MAX_OUTSIDE = 0.03


@dataclass
class SamplerSettings:
    patch: int = 32
    min_voxels: int = 16  # the paper's n_min (1000 voxels at 1 mm = 1000 mm^3) at 4 mm
    random_share: float = 1 / 6
    empty_memory_share: float = 0.2
    flip_share: float = 0.5
    z_crop_probability: float = 0.25
    elastic_probability: float = 0.15
    centred_share: float = 0.5  # forced patches near the vertebra's box centre, where the traversal converges
    centred_jitter: float = 3.0  # voxels (sd)


def extract(array: np.ndarray, centre, size: int, fill=0) -> np.ndarray:
    """The ``size``^3 block of ``array`` centred on ``centre`` (voxel index), padded with ``fill`` outside."""
    out = np.full((size,) * 3, fill, dtype=array.dtype)
    starts = [int(c) - size // 2 for c in centre]
    source, target = [], []
    for start, extent in zip(starts, array.shape, strict=True):
        lo, hi = max(start, 0), min(start + size, extent)
        if hi <= lo:
            return out
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    out[tuple(target)] = array[tuple(source)]
    return out


def choose_target(ranks: np.ndarray, memory_ranks: set[int], order: list[int], min_voxels: int) -> int:
    """The first rank in ``order`` not in memory with at least ``min_voxels`` voxels in the patch (0: none)."""
    counts = np.bincount(ranks.ravel(), minlength=max(order, default=0) + 1)
    for rank in order:
        if rank not in memory_ranks and counts[rank] >= min_voxels:
            return rank
    return 0


def is_complete(case: PreparedCase, rank: int, voxels_in_patch: int) -> bool:
    """The ≤ 3 % rule: complete in the scan and at most 3 % of its voxels outside the patch."""
    if rank == 0:
        return False
    return bool(case.complete[rank - 1]) and voxels_in_patch >= (1 - COMPLETE_MAX_OUTSIDE) * case.voxels[rank - 1]


def pack_label(target: np.ndarray, complete: bool) -> np.ndarray:
    """The loss's label layout: target, its surface weights, completeness broadcast."""
    return np.stack([target.astype(np.float32), surface_weights(target),
                     np.full(target.shape, float(complete), np.float32)])


class PatchSampler:
    """Draws training samples (dicts with ``image`` [2, P, P, P] and ``label`` [3, P, P, P])."""

    def __init__(self, settings: SamplerSettings, rng: np.random.Generator):
        self.settings, self.rng = settings, rng
        keys = ("image", "memory", "target")
        self.elastic = mt.Rand3DElasticd(keys, sigma_range=(5, 7), magnitude_range=(20, 60),
                                         prob=settings.elastic_probability, mode=("bilinear", "nearest", "nearest"),
                                         padding_mode="zeros")
        self.intensity = mt.Compose([
            mt.RandGaussianNoised("image", std=0.02, prob=0.3),
            mt.RandGaussianSmoothd("image", sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0), prob=0.2),
            mt.RandScaleIntensityd("image", factors=0.1, prob=0.3),
            mt.RandShiftIntensityd("image", offsets=0.03, prob=0.3),
        ])
        seed = int(rng.integers(2 ** 31))
        self.elastic.set_random_state(seed)
        self.intensity.set_random_state(seed + 1)

    def centre(self, case: PreparedCase) -> tuple[np.ndarray, int]:
        """A patch centre (voxel index) and the forced rank (0 for a random patch)."""
        present = np.flatnonzero(case.voxels > 0) + 1  # a tiny cut vertebra may vanish on a coarser grid
        if len(present) == 0 or self.rng.random() < self.settings.random_share:
            return np.array([self.rng.integers(n) for n in case.ranks.shape]), 0
        rank = int(self.rng.choice(present))
        where = np.argwhere(case.ranks == rank)
        lo, hi = where.min(0), where.max(0)
        if self.rng.random() < self.settings.centred_share:
            jitter = self.rng.normal(0.0, self.settings.centred_jitter, 3)
            return np.rint((lo + hi) / 2 + jitter).astype(int), rank
        return np.array([self.rng.integers(a, b + 1) for a, b in zip(lo, hi, strict=True)]), rank

    def sample(self, case: PreparedCase) -> dict:
        s = self.settings
        centre, forced = self.centre(case)
        image = extract(case.image, centre, s.patch, 0.0)
        ranks = extract(case.ranks, centre, s.patch, 0)
        n = len(case.names)
        order = list(range(1, n + 1))  # top-down: cranial first; array axis 0 runs inferior -> superior
        if self.rng.random() < s.flip_share:  # bottom-up seen as top-down of the flipped patch
            image, ranks, order = image[::-1].copy(), ranks[::-1].copy(), order[::-1]
        if self.rng.random() < s.z_crop_probability:
            image, ranks = self._crop_along_z(image, ranks)
        memory_ranks = self._memory(order, forced)
        memory = np.isin(ranks, list(memory_ranks)).astype(np.float32)
        target_rank = choose_target(ranks, memory_ranks, order, s.min_voxels)
        target = (ranks == target_rank) if target_rank else np.zeros(ranks.shape, bool)
        complete = is_complete(case, target_rank, int(target.sum()))
        data = {"image": image[None].astype(np.float32), "memory": memory[None],
                "target": target[None].astype(np.float32)}
        data = self.intensity(self.elastic(data))
        as_numpy = lambda x: x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)  # noqa: E731
        target = as_numpy(data["target"])[0] > 0.5
        return {"image": np.concatenate([as_numpy(data["image"]), as_numpy(data["memory"])]).astype(np.float32),
                "label": pack_label(target, complete)}

    def _memory(self, order: list[int], forced: int) -> set[int]:
        if not order or self.rng.random() < self.settings.empty_memory_share:
            return set()
        position = order.index(forced) if forced else int(self.rng.integers(len(order) + 1))
        return set(order[:position])

    def _crop_along_z(self, image: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The scan ends inside the patch: air beyond a random plane, no labels there."""
        plane = int(self.rng.integers(self.settings.patch // 8, self.settings.patch * 7 // 8))
        cut = np.s_[plane:] if self.rng.random() < 0.5 else np.s_[:plane]
        image, ranks = image.copy(), ranks.copy()
        image[cut], ranks[cut] = 0.0, 0
        return image, ranks


class PatchDataset(torch.utils.data.Dataset):
    """``length`` fresh samples per epoch from a list of cases (or a callable giving the current list)."""

    def __init__(self, cases, length: int, settings: SamplerSettings, seed: int = 0):
        self.cases, self.length = cases, int(length)
        self.sampler = PatchSampler(settings, np.random.default_rng(seed))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, _index: int) -> dict:
        cases = self.cases() if callable(self.cases) else self.cases
        return self.sampler.sample(cases[int(self.sampler.rng.integers(len(cases)))])


def fixed_samples(cases: list[PreparedCase], count: int, settings: SamplerSettings, seed: int = 1234) -> list[dict]:
    """A reproducible validation set of patches (no augmentation)."""
    quiet = SamplerSettings(**{**settings.__dict__, "elastic_probability": 0.0})
    sampler = PatchSampler(quiet, np.random.default_rng(seed))
    sampler.intensity = lambda data: data  # validation patches are not augmented
    return [sampler.sample(cases[i % len(cases)]) for i in range(count)]
