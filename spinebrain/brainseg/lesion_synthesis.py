"""Training images for the MS / white-matter lesion model: lesions painted into label maps, multi-sequence.

Source: the whole-head label maps of ``B7_synthseg_label_maps`` (FreeSurfer numbering), read by
:class:`.synthesis.LabelMapBank`. Per map, the white matter is sorted once into lesion *zones*
(:func:`lesion_zones`): periventricular (within ``PERIVENTRICULAR_MM`` of a lateral ventricle),
juxtacortical (within ``JUXTACORTICAL_MM`` of the cortex), deep, and infratentorial (brain stem and
cerebellar white matter). The maps' own lesion labels (25 / 57, white-matter hypointensities) count
as lesions too.

One draw (:meth:`LesionSynthesiser.draw`), in the SynthSeg manner but with sequence-like contrast:

1. a crop centred on a lesion-prone white-matter voxel (or, sometimes, any brain voxel);
2. 0..``max_lesions`` blobs painted into the white matter of the crop, each in a zone drawn with
   the weights of :data:`ZONE_WEIGHTS` (MS lesions are mostly periventricular and juxtacortical):
   noisy ellipsoids of random size and orientation, clipped to the white matter;
3. MONAI ``RandAffine`` / ``Rand3DElastic`` on the labels (nearest neighbour);
4. one image per sequence of :data:`CHANNELS` (FLAIR, T1, T2) with class means drawn around that
   sequence's contrast (:func:`sequence_means`: FLAIR lesions brighter than GM and WM, T1 lesions
   darker than WM, T2 lesions brighter than both), a small jitter per structure, a spread, blur,
   a smooth random brightness change within the tissues (real white matter is not flat: only a
   focal, sharper hyperintensity is a lesion), bias field (MONAI ``RandBiasField``) and noise, each
   sequence independently; in half the draws a thin unlabelled hyperintense rim along the lateral
   ventricles on FLAIR and T2 (the normal periventricular caps and rims, a classic false positive);
5. skull stripped (zero outside the brain) or kept, z-score within the brain (or head);
6. the optional sequences (T1, T2) dropped at random (all zero), so the model runs with FLAIR
   alone or with any of them.

Target: 0 background, 1 lesion. Hand-written here: the zones, the blob painting and the per-sequence
intensity draw (no library paints lesions into label maps); every geometric and bias step is MONAI's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from .preprocess import zscore_in_mask
from .synthesis import LabelMapBank, SynthDataset, _crop, acquire

#: network input channels, in order; FLAIR is required, the others may be all zero (absent)
CHANNELS = ("FLAIR", "T1", "T2")
REQUIRED_CHANNELS = ("FLAIR",)
NONE, PERIVENTRICULAR, JUXTACORTICAL, DEEP, INFRATENTORIAL = range(5)
ZONE_NAMES = {PERIVENTRICULAR: "periventricular", JUXTACORTICAL: "juxtacortical", DEEP: "deep white matter",
              INFRATENTORIAL: "infratentorial"}
ZONE_WEIGHTS = {PERIVENTRICULAR: 0.4, JUXTACORTICAL: 0.25, DEEP: 0.25, INFRATENTORIAL: 0.1}
PERIVENTRICULAR_MM, JUXTACORTICAL_MM = 5.0, 3.0

# FreeSurfer values
LATERAL_VENTRICLES = (4, 5, 43, 44)
CORTEX = (3, 42)
CEREBRAL_WM = (2, 41, 85)
INFRATENTORIAL_WM = (7, 16, 46)
MAP_LESIONS = (25, 57)


def lesion_zones(labels: np.ndarray, spacing_mm: float, tissue_map: bool = False) -> np.ndarray:
    """Zone of every voxel of a FreeSurfer label array (uint8, :data:`ZONE_NAMES`; 0 outside the white matter).

    ``tissue_map``: ``labels`` are tissue classes (1 CSF, 2 GM, 3 WM, e.g. the brain generator's): the
    ventricles are then the CSF that does not reach the brain's surface, and nothing is infratentorial.
    """
    if tissue_map:
        ventricles, cortex, cerebral = inner_csf(labels), labels == 2, labels == 3
    else:
        ventricles, cortex = np.isin(labels, LATERAL_VENTRICLES), np.isin(labels, CORTEX)
        cerebral = np.isin(labels, CEREBRAL_WM + MAP_LESIONS)
    ventricle_mm = _distance_mm(ventricles, spacing_mm)
    cortex_mm = _distance_mm(cortex, spacing_mm)
    zones = np.zeros(labels.shape, np.uint8)
    zones[cerebral] = DEEP
    zones[cerebral & (cortex_mm <= JUXTACORTICAL_MM)] = JUXTACORTICAL
    zones[cerebral & (ventricle_mm <= PERIVENTRICULAR_MM)] = PERIVENTRICULAR  # wins where both are near
    if not tissue_map:
        zones[np.isin(labels, INFRATENTORIAL_WM)] = INFRATENTORIAL
    return zones


def inner_csf(tissue: np.ndarray) -> np.ndarray:
    """Ventricular CSF: CSF components that do not touch the outside of the brain (sulcal CSF does)."""
    from scipy import ndimage

    csf = tissue == 1
    labelled, count = ndimage.label(csf)
    if not count:
        return csf
    brain = tissue > 0
    border = brain & ~ndimage.binary_erosion(brain, iterations=2)
    outer = set(np.unique(labelled[border & csf]).tolist()) - {0}
    inner = [n for n in range(1, count + 1) if n not in outer]
    return np.isin(labelled, inner) if inner else np.zeros_like(csf)


def _distance_mm(mask: np.ndarray, spacing_mm: float) -> np.ndarray:
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing((spacing_mm,) * 3)
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayViewFromImage(distance), 0).astype(np.float32)


def sequence_means(sequence: str, rng: np.random.Generator) -> dict[str, float]:
    """Class means (0..~1.3) of one sequence, drawn around its usual contrast (wide ranges: scanners differ)."""
    if sequence == "FLAIR":
        wm = rng.uniform(0.3, 0.55)
        gm = wm + rng.uniform(0.03, 0.2)
        return dict(csf=rng.uniform(0.0, 0.2), gm=gm, wm=wm, lesion=max(gm, wm) + rng.uniform(0.08, 0.45))
    if sequence == "T1":
        gm = rng.uniform(0.35, 0.6)
        wm = gm + rng.uniform(0.12, 0.35)
        csf = rng.uniform(0.05, 0.3)
        return dict(csf=csf, gm=gm, wm=wm, lesion=rng.uniform(csf + 0.05, wm - 0.08))
    if sequence == "T2":
        wm = rng.uniform(0.2, 0.4)
        gm = wm + rng.uniform(0.05, 0.2)
        csf = rng.uniform(0.8, 1.1)
        return dict(csf=csf, gm=gm, wm=wm, lesion=rng.uniform(gm + 0.08, csf - 0.1))
    raise ValueError(f"unknown sequence {sequence!r}")


@dataclass
class LesionSettings:
    patch: int = 48
    max_lesions: int = 10
    p_no_lesion: float = 0.1
    p_zone_centre: float = 0.85  # crops centred on lesion-prone white matter (else any brain voxel)
    # log-uniform per axis; below ~1 mm a blob is a voxel or two, under the 3 mm diameter that defines an MS
    # lesion and under the product's minimum lesion size: such specks only taught the net to mark noise
    radius_mm: tuple[float, float] = (1.0, 5.0)
    p_strip: float = 0.8
    p_drop_optional: float = 0.4  # per optional sequence
    p_elastic: float = 0.3
    p_thick: float = 0.25
    max_thickness: float = 3.0
    max_blur: float = 0.8
    max_noise: float = 0.05
    max_bias: float = 0.12
    max_texture: float = 0.1  # smooth within-tissue brightness changes (real FLAIR white matter is not flat)
    texture_mm: tuple[float, float] = (6.0, 20.0)
    # normal periventricular "caps and rims": a thin, smooth FLAIR / T2 hyperintensity along the lateral
    # ventricles (ependyma, interstitial fluid; Sze et al. 1986), not a lesion, drawn unlabelled so the net
    # learns that a thin bright ventricle lining is not MS
    p_rim: float = 0.5
    rim_mm: tuple[float, float] = (1.0, 2.5)
    rim_gain: tuple[float, float] = (0.05, 0.35)  # relative brightening of the rim


class LesionBank:
    """A :class:`.synthesis.LabelMapBank` plus each map's zones, lesion-prone centre points and a lesion index."""

    def __init__(self, bank: LabelMapBank, spacing_mm: float, seed: int = 0, tissue_maps: bool = False,
                 zones: list[np.ndarray] | None = None):
        """``zones``: each map's :func:`lesion_zones`, when computed beforehand (the GPU data folder keeps them)."""
        self.bank = bank
        values = np.asarray(bank.values)
        self.lesion_index = len(values)  # painted lesions get one new compact label
        self.is_lesion = np.zeros(len(values) + 1, bool)
        if not tissue_maps:  # FreeSurfer's lesion labels; in a tissue map 2 and 3 are GM and WM
            self.is_lesion[:-1] = np.isin(values, MAP_LESIONS)
        self.is_lesion[self.lesion_index] = True
        self.tissue = np.append(bank.tissue, 3)  # painted lesions replace white matter
        self.brain = self.tissue > 0
        self.outside = np.append(bank.outside, False)
        self.is_wm = self.tissue == 3
        self.is_ventricle = np.zeros(len(values) + 1, bool)
        if not tissue_maps:
            self.is_ventricle[:-1] = np.isin(values, LATERAL_VENTRICLES)
        rng = np.random.default_rng(seed)
        zones_given = zones
        self.zones, self.zone_points = [], []
        for number, source in enumerate(bank.maps):
            zones = zones_given[number] if zones_given else lesion_zones(values[source.indices], spacing_mm, tissue_maps)
            points = np.argwhere(zones > 0)
            if not len(points):
                points = source.brain_points
            self.zones.append(zones)
            self.zone_points.append(points[rng.choice(len(points), min(len(points), 20000), replace=False)])

    @classmethod
    def from_folder(cls, folder, spacing_mm: float, names=None, seed: int = 0) -> LesionBank:
        return cls(LabelMapBank.from_folder(folder, spacing_mm, names, seed), spacing_mm, seed)

    @classmethod
    def from_tissue_maps(cls, tissue_maps, spacing_mm: float, seed: int = 0) -> LesionBank:
        """From tissue maps (0 background, 1 CSF, 2 GM, 3 WM), e.g. the brain generator's."""
        from .synthesis import bank_from_tissue_maps

        return cls(bank_from_tissue_maps(tissue_maps, spacing_mm, seed), spacing_mm, seed, tissue_maps=True)


class LesionSynthesiser:
    """Draws (image (3, i, j, k) float32 FLAIR/T1/T2, target (1, i, j, k) int64 lesion) pairs."""

    def __init__(self, bank: LesionBank, settings: LesionSettings | None = None, spacing_mm: float = 1.0):
        from monai.transforms import Rand3DElastic, RandAffine, RandBiasField

        self.bank, self.settings, self.spacing_mm = bank, settings or LesionSettings(), spacing_mm
        p = self.settings.patch
        self.affine = RandAffine(prob=1.0, rotate_range=(0.3,) * 3, scale_range=(0.12,) * 3, shear_range=(0.05,) * 3,
                                 translate_range=(4,) * 3, spatial_size=(p,) * 3, mode="nearest", padding_mode="zeros")
        self.elastic = Rand3DElastic(sigma_range=(6, 9), magnitude_range=(30, 90), prob=1.0, mode="nearest",
                                     padding_mode="zeros")
        self.bias = RandBiasField(degree=3, coeff_range=(0.0, self.settings.max_bias), prob=1.0)

    def draw(self, rng: np.random.Generator, at_least_one: bool = False) -> tuple[np.ndarray, np.ndarray]:
        labels = self._labels(rng, at_least_one)
        strip = rng.random() < self.settings.p_strip
        brain = self.bank.brain[labels]
        mask = brain if strip else ~self.bank.outside[labels]
        rim = self._rim(labels, rng)
        channels = []
        for number, sequence in enumerate(CHANNELS):
            if number > 0 and rng.random() < self.settings.p_drop_optional:
                channels.append(np.zeros(labels.shape, np.float32))
                continue
            image = self._intensities(labels, sequence, rng)
            if rim is not None and sequence in ("FLAIR", "T2"):
                image[rim] *= 1.0 + rng.uniform(*self.settings.rim_gain)
            image = self._acquisition(image, rng)
            if strip:
                image[~brain] = 0.0
            channels.append(zscore_in_mask(image, mask))
        target = self.bank.is_lesion[labels].astype(np.int64)
        return np.stack(channels), target[None]

    # -- steps -----------------------------------------------------------------------------------
    def _labels(self, rng: np.random.Generator, at_least_one: bool) -> np.ndarray:
        s = self.settings
        number = int(rng.integers(len(self.bank.bank.maps)))
        source, zones = self.bank.bank.maps[number], self.bank.zones[number]
        points = self.bank.zone_points[number] if rng.random() < s.p_zone_centre else source.brain_points
        centre = points[rng.integers(len(points))]
        big = int(s.patch * 1.4)
        crop, crop_zones = _crop(source.indices, centre, big), _crop(zones, centre, big)
        count = 0 if (rng.random() < s.p_no_lesion and not at_least_one) else int(rng.integers(1, s.max_lesions + 1))
        for _ in range(count):
            self._paint_lesion(crop, crop_zones, rng)
        tensor = torch.from_numpy(crop[None].astype(np.float32))
        self.affine.set_random_state(int(rng.integers(2**31)))
        tensor = self.affine(tensor)
        if rng.random() < s.p_elastic:
            self.elastic.set_random_state(int(rng.integers(2**31)))
            tensor = self.elastic(tensor)
        return np.asarray(tensor[0]).round().astype(np.uint8)

    def _paint_lesion(self, crop: np.ndarray, zones: np.ndarray, rng: np.random.Generator) -> None:
        """One noisy ellipsoid in a zone drawn by :data:`ZONE_WEIGHTS`, clipped to the white matter (in place)."""
        present = [z for z in ZONE_WEIGHTS if np.any(zones == z)]
        if not present:
            return
        weights = np.array([ZONE_WEIGHTS[z] for z in present])
        zone = present[rng.choice(len(present), p=weights / weights.sum())]
        candidates = np.argwhere(zones == zone)
        centre = candidates[rng.integers(len(candidates))]
        low, high = np.log(self.settings.radius_mm[0]), np.log(self.settings.radius_mm[1])
        radii = np.exp(rng.uniform(low, high)) * np.exp(rng.normal(0, 0.25, 3)) / self.spacing_mm
        half = int(np.ceil(radii.max() * 1.5)) + 1
        box = tuple(slice(max(0, c - half), min(n, c + half + 1)) for c, n in zip(centre, crop.shape))
        grid = np.stack(np.meshgrid(*[np.arange(b.start, b.stop) - c for b, c in zip(box, centre)], indexing="ij"),
                        -1).astype(np.float32)
        rotation = _random_rotation(rng)
        local = grid @ rotation.T / radii
        distance = np.sqrt((local**2).sum(-1))
        roughness = ndimage.gaussian_filter(rng.standard_normal(distance.shape).astype(np.float32), 1.0)
        blob = distance + 0.6 * roughness < 1.0
        region = crop[box]
        region[blob & self.bank.is_wm[region]] = self.bank.lesion_index

    def _rim(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """The unlabelled brain tissue within a thin random width of a lateral ventricle (or None)."""
        if rng.random() >= self.settings.p_rim:
            return None
        ventricle = self.bank.is_ventricle[labels]
        if not ventricle.any():
            return None
        width = max(1, int(round(rng.uniform(*self.settings.rim_mm) / self.spacing_mm)))
        near = ndimage.binary_dilation(ventricle, iterations=width)
        return near & ~ventricle & self.bank.brain[labels] & ~self.bank.is_lesion[labels]

    def _intensities(self, labels: np.ndarray, sequence: str, rng: np.random.Generator) -> np.ndarray:
        n = len(self.bank.tissue)
        classes = sequence_means(sequence, rng)
        class_means = np.array([0.0, classes["csf"], classes["gm"], classes["wm"]])
        means = class_means[self.bank.tissue] + rng.normal(0, 0.02, n)
        non_brain = ~self.bank.brain
        means[non_brain] = rng.uniform(0.0, 0.9, non_brain.sum())  # skull, scalp, eyes: anything
        means[self.bank.outside] = rng.uniform(0.0, 0.1)
        lesion_means = classes["lesion"] + rng.normal(0, 0.03, n)
        means[self.bank.is_lesion] = lesion_means[self.bank.is_lesion]
        spreads = rng.uniform(0.005, 0.05, n)
        image = means[labels] + spreads[labels] * rng.standard_normal(labels.shape)
        image *= 1.0 + self._texture(labels.shape, rng)
        return np.clip(image, 0.0, None).astype(np.float32)

    def _texture(self, shape, rng: np.random.Generator) -> np.ndarray:
        """A smooth random relative brightness change (a few mm to 2 cm): not every bright patch is a lesion."""
        from ..synth.brain_lesions import smooth_noise

        amplitude = rng.uniform(0.0, self.settings.max_texture)
        if amplitude < 0.01:
            return np.zeros(shape, np.float32)
        scale = rng.uniform(*self.settings.texture_mm)
        return amplitude * smooth_noise(rng, shape, (self.spacing_mm,) * 3, scale)

    def _acquisition(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return acquire(image, rng, self.settings, self.bias).astype(np.float32)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


class LesionDataset(SynthDataset):
    """``length`` draws: fresh every epoch, or fixed (``fixed=True``, each with at least one painted lesion)."""

    def _draw(self, index: int) -> dict:
        image, label = self.synthesiser.draw(self._rng(index), at_least_one=self.fixed)
        return {"image": torch.from_numpy(image), "label": torch.from_numpy(label)}
