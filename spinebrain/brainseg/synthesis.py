"""Training images drawn from label maps in the SynthSeg manner (Billot et al.): contrast is a nuisance.

Source: FreeSurfer-style whole-head label maps (``B7_synthseg_label_maps``: brain structures plus
extra-cerebral "generation" labels >= 500 for skull, scalp, eyes...). Each map is resampled once to
the model spacing (nearest neighbour) and kept as compact label indices (uint8).

One draw (:meth:`LabelMapSynthesiser.draw`) is a crop around a random brain voxel, then:

1. spatial: MONAI ``RandAffine`` (rotation, scale, shear, translation) and, sometimes,
   ``Rand3DElastic`` on the label crop, nearest neighbour, so the labels stay exact;
   Then a random permutation and flips of the three axes, so the network learns no orientation (the
   inference block feeds scans in their stored axis order, whatever it is);
2. contrast: a random mean and spread per label. Usually the structures of one tissue class share a
   class mean (with a small per-structure jitter). The three class means are random and kept apart;
   their order follows ``contrast_orders`` (T1-like CSF < GM < WM, T2-like WM < GM < CSF, FLAIR-like
   CSF < WM < GM, or any order), weighted towards the orders of real MR contrasts because a CPU-sized
   training budget cannot also learn every arbitrary order well; with ``p_random_contrast`` every
   label is drawn independently as SynthSeg does. Non-brain labels always draw their own means;
3. skull kept or stripped at random (stripped: zero outside the brain, as in skull-stripped scans);
4. blur, random slice thickness (average down along one axis, linear back up), MONAI
   ``RandBiasField``, Gaussian noise, a random gamma;
5. z-score within the mask the inference pipeline would use (:func:`zscore_in_mask`): the brain
   when stripped, the head otherwise.

Targets are 4 classes: 0 background (everything not brain tissue, including skull), 1 CSF, 2 GM,
3 WM, grouped as the data README's ``tissue3_rule`` says (vessels count as background).
Hand-written here: the per-label intensity draw and the thickness simulation (no MONAI transform
draws an image from a label map); every geometric and bias step is MONAI's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from ..errors import InputError
from .preprocess import zscore_in_mask

#: output classes, in channel order
CLASSES = ("background", "CSF", "GM", "WM")
BACKGROUND, CSF, GM, WM = range(4)


def tissue_rule(labels_json: Path) -> dict[int, int]:
    """FreeSurfer label value -> tissue class (CSF / GM / WM; anything else is background)."""
    rule = json.loads(Path(labels_json).read_text())["tissue3_rule"]
    return {int(v): cls for name, cls in (("CSF", CSF), ("GM", GM), ("WM", WM)) for v in rule[name]}


@dataclass
class LabelMap:
    """One map on the model grid: compact label indices (k, j, i) and the brain voxels to centre crops on."""

    name: str
    indices: np.ndarray  # uint8
    brain_points: np.ndarray  # (n, 3) sample of brain voxel positions


class LabelMapBank:
    """Label maps on one grid with one shared compact labelling (index -> value, tissue, brain or not)."""

    def __init__(self, maps: Sequence[LabelMap], values: Sequence[int], rule: dict[int, int]):
        self.maps, self.values = list(maps), list(values)
        self.tissue = np.array([rule.get(v, BACKGROUND) for v in self.values], np.uint8)
        self.brain = self.tissue > 0
        self.outside = np.array([v == 0 for v in self.values])  # air around the head

    @classmethod
    def from_folder(cls, folder: str | Path, spacing: float, names: Sequence[str] | None = None,
                    seed: int = 0) -> LabelMapBank:
        """Read ``training_seg_*.nii.gz`` (or ``names``) from a B7-style folder, resampled to ``spacing`` mm."""
        folder = Path(folder)
        paths = [folder / n for n in names] if names else sorted(folder.glob("training_seg_*.nii.gz"))
        if not paths or not (folder / "labels.json").is_file():
            raise InputError(f"No label maps with labels.json in {folder}; give the B7_synthseg_label_maps folder.")
        rule = tissue_rule(folder / "labels.json")
        images = [_resampled(sitk.ReadImage(str(p), sitk.sitkInt32), spacing) for p in paths]
        arrays = [sitk.GetArrayViewFromImage(image) for image in images]
        values = sorted(set().union(*(np.unique(a).tolist() for a in arrays)))
        if len(values) > 255:
            raise InputError("More than 255 distinct labels in the label maps; they cannot be indexed in uint8.")
        rng = np.random.default_rng(seed)
        maps = []
        for path, array in zip(paths, arrays):
            compact = np.searchsorted(values, array).astype(np.uint8)
            brain = np.argwhere(np.isin(array, [v for v in values if rule.get(v, 0) > 0]))
            pick = rng.choice(len(brain), min(len(brain), 20000), replace=False)
            maps.append(LabelMap(path.name.split(".")[0], compact, brain[pick]))
        return cls(maps, values, rule)


def bank_from_tissue_maps(tissue_maps: Sequence[sitk.Image], spacing: float, seed: int = 0) -> LabelMapBank:
    """A bank from tissue maps (0 background, 1 CSF, 2 GM, 3 WM), e.g. the brain generator's
    (:func:`spinebrain.synth.brain.generate_brain`); they have no skull labels, so every draw is brain only."""
    rng = np.random.default_rng(seed)
    maps = []
    for number, tissue in enumerate(tissue_maps):
        array = sitk.GetArrayFromImage(_resampled(sitk.Cast(tissue, sitk.sitkInt32), spacing)).astype(np.uint8)
        brain = np.argwhere(array > 0)
        if not len(brain):
            raise InputError(f"Tissue map {number + 1} holds no brain voxel; give maps with CSF, GM and WM labels.")
        maps.append(LabelMap(f"tissue_map_{number + 1}", array, brain[rng.choice(len(brain), min(len(brain), 20000))]))
    return LabelMapBank(maps, [0, 1, 2, 3], {1: CSF, 2: GM, 3: WM})


def _resampled(image: sitk.Image, spacing: float) -> sitk.Image:
    size = [int(round(n * s / spacing)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkNearestNeighbor, image.GetOrigin(),
                         (spacing,) * 3, image.GetDirection(), 0, image.GetPixelID())


@dataclass
class SynthesisSettings:
    patch: int = 64
    p_strip: float = 0.5
    p_random_contrast: float = 0.1
    min_class_separation: float = 0.15  # between the CSF, GM and WM means (intensities span 0..1)
    #: (weight, order of CSF, GM, WM from dark to bright; None = any order) of the tissue-class means
    contrast_orders: tuple = ((0.45, (CSF, GM, WM)), (0.2, (WM, GM, CSF)), (0.15, (CSF, WM, GM)), (0.2, None))
    p_reorient: float = 1.0  # random axis permutation and flips
    p_elastic: float = 0.3
    p_thick: float = 0.5
    max_thickness: float = 3.0  # in voxels of the model grid
    max_blur: float = 1.0  # Gaussian sigma in voxels
    max_noise: float = 0.06
    max_bias: float = 0.15  # MONAI RandBiasField coefficients; over a 7 cm crop larger ones swamp the tissue contrast


class LabelMapSynthesiser:
    """Draws (image (1, i, j, k) float32, target (1, i, j, k) int64) pairs from a bank of label maps."""

    def __init__(self, bank: LabelMapBank, settings: SynthesisSettings | None = None):
        from monai.transforms import Rand3DElastic, RandAffine, RandBiasField

        self.bank, self.settings = bank, settings or SynthesisSettings()
        p = self.settings.patch
        self.affine = RandAffine(prob=1.0, rotate_range=(0.3,) * 3, scale_range=(0.15,) * 3, shear_range=(0.05,) * 3,
                                 translate_range=(4,) * 3, spatial_size=(p,) * 3, mode="nearest", padding_mode="zeros")
        self.elastic = Rand3DElastic(sigma_range=(6, 9), magnitude_range=(40, 120), prob=1.0, mode="nearest",
                                     padding_mode="zeros")
        self.bias = RandBiasField(degree=3, coeff_range=(0.0, self.settings.max_bias), prob=1.0)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        labels = self._labels(rng)
        image = self.render(labels, rng, strip=rng.random() < self.settings.p_strip)
        target = self.bank.tissue[labels].astype(np.int64)
        return image[None], target[None]

    def render(self, labels: np.ndarray, rng: np.random.Generator, strip: bool, normalise: bool = True) -> np.ndarray:
        """An image of compact ``labels`` (any shape, e.g. a whole head): contrast, acquisition, skull
        stripped or kept, z-scored within the brain (stripped) or the head (kept) unless ``normalise`` is False."""
        image = self._acquisition(self._intensities(labels, rng), rng)
        brain = self.bank.brain[labels]
        if strip:
            image[~brain] = 0.0  # skull-stripped scans are exactly zero outside the brain
        if not normalise:
            return image
        mask = brain if strip else ~self.bank.outside[labels]
        return zscore_in_mask(image, mask)

    # -- steps -----------------------------------------------------------------------------------
    def _labels(self, rng: np.random.Generator) -> np.ndarray:
        source = self.bank.maps[rng.integers(len(self.bank.maps))]
        big = int(self.settings.patch * 1.4)
        centre = source.brain_points[rng.integers(len(source.brain_points))]
        crop = _crop(source.indices, centre, big)
        tensor = torch.from_numpy(crop[None].astype(np.float32))
        self.affine.set_random_state(int(rng.integers(2**31)))
        tensor = self.affine(tensor)
        if rng.random() < self.settings.p_elastic:
            self.elastic.set_random_state(int(rng.integers(2**31)))
            tensor = self.elastic(tensor)
        labels = np.asarray(tensor[0]).round().astype(np.uint8)
        if rng.random() < self.settings.p_reorient:
            labels = _reoriented(labels, rng)
        return labels

    def _intensities(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(self.bank.values)
        means = rng.uniform(0.0, 1.0, n)
        if rng.random() >= self.settings.p_random_contrast:  # one mean per tissue class, small jitter per structure
            class_means = _ordered_class_means(rng, self.settings)
            brain = self.bank.brain
            means[brain] = class_means[self.bank.tissue[brain]] + rng.normal(0, 0.03, brain.sum())
        means[self.bank.outside] = rng.uniform(0.0, 0.15)
        spreads = rng.uniform(0.005, 0.06, n)
        image = means[labels] + spreads[labels] * rng.standard_normal(labels.shape)
        return np.clip(image, 0.0, None).astype(np.float32)

    def _acquisition(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = acquire(image, rng, self.settings, self.bias) ** np.exp(rng.normal(0, 0.25))  # then a random gamma
        return image.astype(np.float32)


def _reoriented(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``array`` with its axes in a random order, each flipped or not (a contiguous copy)."""
    array = array.transpose(rng.permutation(3))
    flips = tuple(axis for axis in range(3) if rng.random() < 0.5)
    return np.ascontiguousarray(np.flip(array, flips) if flips else array)


def _ordered_class_means(rng: np.random.Generator, settings: SynthesisSettings) -> np.ndarray:
    """Means for (background, CSF, GM, WM), kept apart, the tissues in an order drawn from ``contrast_orders``."""
    means = _separated_class_means(rng, settings.min_class_separation)
    weights = np.array([w for w, _ in settings.contrast_orders], float)
    order = settings.contrast_orders[rng.choice(len(weights), p=weights / weights.sum())][1]
    if order is not None:
        means[list(order)] = np.sort(means[1:])
    return means


def _separated_class_means(rng: np.random.Generator, separation: float) -> np.ndarray:
    """Means for (background, CSF, GM, WM): the three tissues in any order, at least ``separation`` apart,
    so the tissues stay tellable apart in every image (tissues of equal brightness teach nothing)."""
    while True:
        means = rng.uniform(0.05, 1.0, 4)
        if np.min(np.abs(np.subtract.outer(means[1:], means[1:]))[np.triu_indices(3, 1)]) >= separation:
            return means


def _crop(array: np.ndarray, centre: np.ndarray, size: int) -> np.ndarray:
    """A ``size``³ block of ``array`` centred on ``centre``, zero-padded past the edges."""
    out = np.zeros((size,) * 3, array.dtype)
    lo = np.asarray(centre) - size // 2
    src = tuple(slice(max(0, l), min(n, l + size)) for l, n in zip(lo, array.shape))
    dst = tuple(slice(s.start - l, s.stop - l) for s, l in zip(src, lo))
    out[dst] = array[src]
    return out


def acquire(image: np.ndarray, rng: np.random.Generator, settings, bias) -> np.ndarray:
    """The scanner's part of a synthetic image: blur, thick slices along a random axis, bias field, noise.

    ``settings`` has ``max_blur``, ``p_thick``, ``max_thickness`` and ``max_noise``; ``bias`` is a MONAI
    RandBiasField seeded from ``rng``. Non-negative, not yet cast.
    """
    sigma = rng.uniform(0, settings.max_blur)
    if sigma > 0.2:
        image = ndimage.gaussian_filter(image, sigma)
    if rng.random() < settings.p_thick:
        image = _thick_slices(image, int(rng.integers(3)), rng.uniform(1.5, settings.max_thickness))
    bias.set_random_state(int(rng.integers(2**31)))
    image = np.asarray(bias(image[None]))[0]
    image = image + rng.uniform(0, settings.max_noise) * rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(image, 0.0, None)


def _thick_slices(image: np.ndarray, axis: int, thickness: float) -> np.ndarray:
    """Thick slices along ``axis``: area-average down by ``thickness``, linear back up to the same size."""
    tensor = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    size = list(image.shape)
    low = list(size)
    low[axis] = max(2, int(round(size[axis] / thickness)))
    down = torch.nn.functional.interpolate(tensor, size=low, mode="area")
    up = torch.nn.functional.interpolate(down, size=size, mode="trilinear", align_corners=False)
    return up[0, 0].numpy()


class SynthDataset(torch.utils.data.Dataset):
    """``length`` random draws per epoch (a fresh stream every epoch), or fixed ones with ``fixed=True``.

    Items are MONAI-style dicts ``{"image", "label"}`` for the training engine.
    """

    def __init__(self, synthesiser: LabelMapSynthesiser, length: int, seed: int = 0, fixed: bool = False):
        self.synthesiser, self.length, self.seed, self.fixed = synthesiser, length, seed, fixed
        self.epoch_draws = 0
        self.cache = [self._draw(i) for i in range(length)] if fixed else None

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        key = [self.seed, index, 0 if self.fixed else self.epoch_draws]
        worker = torch.utils.data.get_worker_info()
        if worker is not None and not self.fixed:
            # in a DataLoader worker the copy of epoch_draws restarts each epoch: add the worker's seed,
            # which torch draws afresh for every epoch, so workers never repeat a crop
            key.append(worker.seed % 2**32)
        return np.random.default_rng(key)

    def _draw(self, index: int) -> dict:
        image, label = self.synthesiser.draw(self._rng(index))
        return {"image": torch.from_numpy(image), "label": torch.from_numpy(label)}

    def __getitem__(self, index: int) -> dict:
        if self.cache is not None:
            return self.cache[index]
        self.epoch_draws += 1
        return self._draw(index)
