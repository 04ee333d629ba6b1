"""Training data for the heatmap detector (:mod:`.heatmap`): real MR, their contrast randomised, and generated scans.

Each case becomes a sagittal *volume* on the detector's grid (2 mm pixels, slices 2 mm apart across
R, :func:`prepare_case`) with its body centres in that grid. A training sample
(:class:`HeatmapSamples`) is one slice of it with its neighbours, cut to a window along the spine
(sometimes tightly, like the real crops, so the sacrum and with it the L5 anchor is often out of
view: a hard negative for the anchor), contrast-randomised in the SynthSeg manner (a random
intensity curve over the whole image, a random offset on the bodies, bias field, gamma, blur,
noise, thick-slice blur across R) and deformed (rotation, scale), with its targets and weights:

* vertebra target -- Gaussians at the body centres, S1 included (not S2 and below); where a real
  set leaves visible bodies unmasked (A10 masks L1-L5 only, yet shows T11-T12 and S1) the weight
  is 0 above the topmost masked body and, without an S1 mask, below L5, so those are neither
  taught as bodies nor as background;
* anchor target -- the Gaussian of L5 only when the sacrum is in view at least ``0.8`` vertebra
  steps below it; weight 0 where the crop cuts between (ambiguous), else a plain negative.

The engine (MONAI ``SupervisedTrainer`` / ``SupervisedEvaluator``) is built in
:func:`build_engines`; :mod:`spinebrain.spinelabel.heatmap_recipe` runs it end to end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import (Compose, RandAdjustContrastd, RandAffined, RandBiasFieldd, RandGaussianNoised,
                              RandGaussianSmoothd, RandHistogramShiftd)

from ..anatomy import VERTEBRA_NAMES_BY_LABEL
from ..errors import InputError
from ..turn import A_P, TILT_GROW, Turn
from .heatmap import gaussian_heatmap, looks_like_ct, normalise_slab, slice_stack
from .metrics import reference_centroids
from .slices import extract_sagittal_slab

PIXEL_MM, SLICE_STEP_MM = 2.0, 2.0
SIGMA_MM, SIGMA_R_MM = 4.0, 6.0
#: The anchor is taught as present only with this much of a vertebra step of sacrum in view below L5.
ANCHOR_SACRUM_STEPS = 0.8
#: Half-width (mm) of the R band kept around the spine per case.
BAND_MM = 50.0
#: Not bodies for the vertebra heatmap (see module text): the sacrum below S1.
NOT_BODIES = {"S2", "S3", "S4", "S5", "Co"}
#: Level classes of the dense level output: every body above T8 is "upper"; T13 / L6 have none.
LEVEL_CLASSES = ("upper", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
_UPPER = {f"C{k}" for k in range(1, 8)} | {f"T{k}" for k in range(1, 8)}
#: A level target covers the pixels within this share of a vertebra step of a centre (in-plane), and
#: slices within LEVEL_R_MM of it: the body's core, so neighbouring levels never overlap.
LEVEL_RADIUS_STEPS, LEVEL_R_MM = 0.3, 12.0
#: L5's neighbours, where the anchor answers nearly as strongly as on L5 itself (naming every body one
#: level off); ``anchor_neighbour_weight`` > 1 makes a false anchor answer there cost that much more.
ANCHOR_NEIGHBOURS = ("L4", "S1")
#: The same for the C2 anchor of a whole-spine model.
C2_NEIGHBOURS = ("C1", "C3")
#: Where a whole-spine model's anchor channels answer for each other (the C2 channel on L5 and S1, the L5
#: channel on C2, measured): ``cross_anchor_weight`` > 1 makes each a hard negative of the other channel.
CROSS_NEGATIVES = {"L5": ("C1", "C2", "C3"), "C2": ("L4", "L5", "S1")}
#: S2 lies about this share of the L5-S1 step below S1 (sacral segments are shorter); the generator and
#: the real sets name no S2, so its centre is extrapolated along the L5 -> S1 direction.
S2_STEP_SHARE = 0.9


def level_class(name: str) -> int | None:
    """Index of a vertebra name in :data:`LEVEL_CLASSES` (None for T13, L6, the sacrum below S1)."""
    return 0 if name in _UPPER else (LEVEL_CLASSES.index(name) if name in LEVEL_CLASSES else None)


@dataclass
class PreparedCase:
    """One case on the detector grid: raw slab (slices, rows, cols), body mask, centres (slice, row, col)."""

    arrays: np.ndarray
    bodies: np.ndarray  # uint8 mask of the labelled bodies on the same grid (for per-structure contrast)
    centres: np.ndarray  # (N, 3) continuous slab indices
    names: list[str]
    ct: bool
    top_row: float = -np.inf  # vertebra weight 0 above this row (unmasked bodies above the masked ones)
    name: str = ""
    anchor_known: bool = True  # False where transitional anatomy makes "L5" ambiguous
    info: dict = field(default_factory=dict)
    bottom_row: float = np.inf  # vertebra weight 0 below this row (an unmasked S1 below a masked L5)

    @property
    def step_px(self) -> float:
        """Median distance (pixels, in-plane) between successive centres: one vertebra step."""
        order = np.argsort(self.centres[:, 1])
        rows_cols = self.centres[order][:, 1:]
        gaps = np.linalg.norm(np.diff(rows_cols, axis=0), axis=1)
        return float(np.median(gaps)) if len(gaps) else 15.0


def prepare_case(image: sitk.Image, points: dict[str, np.ndarray], labels: sitk.Image | None = None,
                 name: str = "", partial_top: bool = False, anchor_known: bool = True) -> PreparedCase:
    """Resample a scan (and its label map) onto the detector grid around the spine's R; centres from RAS points.

    ``partial_top``: the set labels only some of the bodies in view (real A10-A12), so nothing above
    the topmost labelled one is a negative.
    """
    if not points:
        raise InputError(f"Case {name!r} has no vertebra centres to train on.")
    centre_r = float(np.mean([p[0] for p in points.values()]))
    each = int(round(BAND_MM / SLICE_STEP_MM))
    slab = extract_sagittal_slab(image, PIXEL_MM, each, SLICE_STEP_MM, center_r=centre_r)
    bodies = np.zeros(slab.arrays.shape, np.uint8)
    if labels is not None:
        resampled = sitk.Resample(labels, slab.image(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        bodies = (sitk.GetArrayFromImage(resampled) > 0).astype(np.uint8)
    names = list(points)
    centres = slab.ras_to_pixel(np.array([points[n] for n in names], float)).reshape(-1, 3)
    top_row, bottom_row = -np.inf, np.inf
    if partial_top:
        rows = centres[:, 1]
        gaps = np.diff(np.sort(rows))
        step = float(np.median(gaps)) if len(gaps) else 15.0
        top_row = float(rows.min() - 0.6 * step)
        if "L5" in names and "S1" not in names:
            bottom_row = float(rows[names.index("L5")] + 0.5 * step)
    return PreparedCase(slab.arrays.astype(np.float32), bodies, centres, names, looks_like_ct(slab.arrays),
                        top_row, name, anchor_known, {"points": {n: np.asarray(points[n], float) for n in names}},
                        bottom_row)


def read_real_case(folder: str | Path, tilt_deg: float = 0.0) -> PreparedCase:
    """A case of ../shared/data A10-A12: image.nii.gz, vertebrae.nii.gz (VerSe values, 26 = S1 body).

    ``tilt_deg``: turn the patient by that angle about A-P first (:func:`tilted`).
    """
    folder = Path(folder)
    image = sitk.ReadImage(str(folder / "image.nii.gz"), sitk.sitkFloat32)
    labels = sitk.ReadImage(str(folder / "vertebrae.nii.gz"))
    centres = reference_centroids(labels, VERTEBRA_NAMES_BY_LABEL)
    image, labels, centres = tilted(image, labels, centres, tilt_deg)
    name = folder.name + (f"-tilt{tilt_deg:+.0f}" if tilt_deg else "")
    case = prepare_case(image, centres, labels, name=name, partial_top=True)
    case.info["tilt_deg"] = tilt_deg
    return case


def tilted(image: sitk.Image, labels: sitk.Image, points: dict[str, np.ndarray], degrees: float):
    """(image, labels, points) turned by ``degrees`` about A-P through the points' mean: a coronal tilt.

    The grid grows by :data:`~spinebrain.turn.TILT_GROW` on each side so the turned spine stays in view. 0 degrees:
    unchanged.
    """
    if not degrees:
        return image, labels, points
    turn = Turn(degrees, A_P, np.mean(list(points.values()), axis=0))
    return (turn.image(image, grow=TILT_GROW), turn.image(labels, is_label=True, grow=TILT_GROW),
            {name: turn.point(ras) for name, ras in points.items()})


def real_split(data_dir: str | Path, part: str = "train") -> list[Path]:
    """Case folders of ``splits.json`` part ('train' or 'validation') in A10-A12."""
    data_dir = Path(data_dir)
    splits = json.loads((data_dir / "splits.json").read_text())
    return [data_dir / dataset / case for dataset, entry in splits.items() if isinstance(entry, dict)
            for case in entry.get(part, [])]


def generated_case(seed: int, view: str, modality: str, max_voxels: int = 900_000,
                   tilt_deg: float = 0.0) -> PreparedCase:
    """A generator scan (spinebrain.synth.spine) on the detector grid; every body in view is named.

    ``tilt_deg``: turn the patient by that angle about A-P first (:func:`tilted`).
    """
    from ..synth.spine import generate_spine
    from ..synth.spine_anatomy import SpineOptions

    spine = generate_spine(seed, modality=modality, view=view, orientation="random",
                           options=SpineOptions(max_voxels=max_voxels))
    points = {p.label: np.asarray(p.ras, float) for p in spine.points}
    transitional = "L6" in points or spine.metadata["transitional"].get("lumbar_count", 5) != 5
    image, labels, points = tilted(spine.image, spine.labels, points, tilt_deg)
    case = prepare_case(image, points, labels, name=f"synthetic-{seed}", anchor_known=not transitional)
    case.info.update(seed=seed, view=view, modality=spine.metadata["modality"], tilt_deg=tilt_deg)
    return case


# ---------------------------------------------------------------------------------------- samples


def sample_targets(case: PreparedCase, slice_index: int, rows: slice, cols: slice, in_view_bottom: float,
                   channels: int = 2, anchor_neighbour_weight: float = 1.0, sacrum_weight: float = 1.0,
                   third: str = "S1", cross_anchor_weight: float = 1.0):
    """(targets (C, H, W), weights (C, H, W)) of one slice window; see the module text for the rules.

    ``channels`` 2: vertebra, L5 anchor; 3: also ``third``, the S1 body (:func:`_s1_target`) or the C2
    anchor of a whole-spine model (:func:`_c2_target`).
    ``anchor_neighbour_weight``: the anchor's weight at the centres of L5's neighbours (a Gaussian bump
    from 1 up to this), where a taught anchor weight is not 0 (hard negatives).
    ``sacrum_weight``: the vertebra channel's weight at S2 (a Gaussian bump from 1 up to this): a body
    found there makes the chain one level too long at the bottom, and every name shifts up by one.
    ``cross_anchor_weight`` (whole-spine models, ``third`` "C2"): the same bump at :data:`CROSS_NEGATIVES`.
    """
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    offset = np.array([rows.start, cols.start], float)
    r_mm = (case.centres[:, 0] - slice_index) * SLICE_STEP_MM
    inside = ((case.centres[:, 1] >= rows.start) & (case.centres[:, 1] < rows.stop)
              & (case.centres[:, 2] >= cols.start) & (case.centres[:, 2] < cols.stop))
    body = inside & np.array([n not in NOT_BODIES for n in case.names])
    vertebra = _heat_at(case, body, offset, r_mm, shape)
    anchor = np.zeros(shape, np.float32)
    anchor_weight = 1.0
    if "L5" in case.names:
        k = case.names.index("L5")
        below_px = in_view_bottom - case.centres[k, 1]
        if not case.anchor_known:
            anchor_weight = 0.0
        elif inside[k] and below_px >= ANCHOR_SACRUM_STEPS * case.step_px:
            anchor = _heat_at(case, slice(k, k + 1), offset, r_mm, shape)
        elif inside[k] and below_px > 0.25 * case.step_px:
            anchor_weight = 0.0  # the crop cuts through L5's lower neighbour: neither clearly there nor gone
    weights = np.ones((channels, *shape), np.float32)
    weights[1] *= anchor_weight
    if anchor_weight > 0 and anchor_neighbour_weight != 1.0:
        near = inside & np.isin(case.names, ANCHOR_NEIGHBOURS)
        weights[1] *= _bump(case, near, offset, r_mm, shape, anchor_neighbour_weight)
    cross = cross_anchor_weight if channels >= 3 and third == "C2" else 1.0
    if anchor_weight > 0 and cross != 1.0:
        weights[1] *= _bump(case, inside & np.isin(case.names, CROSS_NEGATIVES["L5"]), offset, r_mm, shape, cross)
    if sacrum_weight != 1.0 and {"L5", "S1"} <= set(case.names):
        s2 = _s2_centre(case)
        bump = gaussian_heatmap(shape, s2[None, 1:] - offset, np.array([(s2[0] - slice_index) * SLICE_STEP_MM]),
                                PIXEL_MM, 1.5 * SIGMA_MM, SIGMA_R_MM)
        weights[0] *= 1.0 + (sacrum_weight - 1.0) * bump
    top = int(np.clip(np.ceil(case.top_row - rows.start), 0, shape[0])) if np.isfinite(case.top_row) else 0
    weights[0, :top] = 0.0
    if np.isfinite(case.bottom_row):
        weights[0, int(np.clip(np.floor(case.bottom_row - rows.start), 0, shape[0])):] = 0.0
    targets = [vertebra, anchor]
    if channels >= 3 and third == "C2":
        c2, weights[2] = _c2_target(case, slice_index, rows, cols, shape, anchor_neighbour_weight)
        if cross != 1.0:
            weights[2] *= _bump(case, inside & np.isin(case.names, CROSS_NEGATIVES["C2"]), offset, r_mm, shape, cross)
        targets.append(c2)
    elif channels >= 3:
        s1, weights[2] = _s1_target(case, slice_index, rows, cols, in_view_bottom, shape)
        targets.append(s1)
    return np.stack(targets), weights


def _c2_target(case: PreparedCase, slice_index: int, rows: slice, cols: slice, shape, neighbour_weight: float = 1.0):
    """(target, weight) of the C2 anchor: C2's Gaussian where the axis (C2) and the atlas above it are in view.

    The mirror of the L5 rule: C2 is taught as present only with :data:`ANCHOR_SACRUM_STEPS` of a vertebra
    step in view above it (C1 and the skull base tell it from C3); a window top between a quarter step and
    that cuts the atlas off (weight 0); C1 and C3 are hard negatives (``neighbour_weight``).
    """
    target, weight = np.zeros(shape, np.float32), np.ones(shape, np.float32)
    if "C2" not in case.names:
        return target, weight
    k = case.names.index("C2")
    offset = np.array([rows.start, cols.start], float)
    row, col = case.centres[k, 1:]
    inside = rows.start <= row < rows.stop and cols.start <= col < cols.stop
    above_px = row - rows.start
    r_mm = (case.centres[:, 0] - slice_index) * SLICE_STEP_MM
    if inside and above_px >= ANCHOR_SACRUM_STEPS * case.step_px:
        target = _heat_at(case, slice(k, k + 1), offset, r_mm, shape)
    elif inside and above_px > 0.25 * case.step_px:
        return target, np.zeros(shape, np.float32)
    if neighbour_weight != 1.0:
        near = np.isin(case.names, C2_NEIGHBOURS)
        weight *= _bump(case, near, offset, r_mm, shape, neighbour_weight)
    return target, weight


def _bump(case: PreparedCase, chosen, offset: np.ndarray, r_mm: np.ndarray, shape, weight: float) -> np.ndarray:
    """A weight map of 1 rising to ``weight`` at the ``chosen`` centres (hard negatives)."""
    return 1.0 + (weight - 1.0) * _heat_at(case, chosen, offset, r_mm, shape)


def _heat_at(case: PreparedCase, chosen, offset: np.ndarray, r_mm: np.ndarray, shape) -> np.ndarray:
    """The body-centre Gaussians of the ``chosen`` centres (a mask or a slice) on a window at ``offset``."""
    return gaussian_heatmap(shape, case.centres[chosen, 1:] - offset, r_mm[chosen], PIXEL_MM, SIGMA_MM, SIGMA_R_MM)


def _s2_centre(case: PreparedCase) -> np.ndarray:
    """S2's centre (slice, row, col) on the case grid: named, or extrapolated from L5 -> S1."""
    if "S2" in case.names:
        return case.centres[case.names.index("S2")]
    l5, s1 = case.centres[case.names.index("L5")], case.centres[case.names.index("S1")]
    return s1 + S2_STEP_SHARE * (s1 - l5)


def level_targets(case: PreparedCase, slice_index: int, rows: slice, cols: slice) -> np.ndarray:
    """One-hot level maps (K, H, W) over the cores of the named bodies; 0 everywhere else (not taught).

    Nothing is taught where the level names are uncertain (transitional anatomy in a generated scan).
    """
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    out = np.zeros((len(LEVEL_CLASSES), *shape), np.float32)
    if not case.anchor_known:
        return out
    radius2 = (LEVEL_RADIUS_STEPS * case.step_px) ** 2
    grid_r, grid_c = np.arange(rows.start, rows.stop)[:, None], np.arange(cols.start, cols.stop)[None, :]
    for name, (slice_c, row, col) in zip(case.names, case.centres):
        k = level_class(name)
        if k is None or abs(slice_c - slice_index) * SLICE_STEP_MM > LEVEL_R_MM:
            continue
        out[k][(grid_r - row) ** 2 + (grid_c - col) ** 2 <= radius2] = 1.0
    return out


def _s1_target(case: PreparedCase, slice_index: int, rows: slice, cols: slice, in_view_bottom: float, shape):
    """(target, weight) of the S1 channel: the S1 body's Gaussian where S1 is labelled and in view.

    Where the set does not mask S1 although it is in view (A10, A11: masks end at L5), nothing
    below ``bottom_row`` is taught (weight 0). A window border within half a step of the S1 centre
    cuts the body: neither clearly there nor gone (weight 0).
    """
    target, weight = np.zeros(shape, np.float32), np.ones(shape, np.float32)
    if "S1" not in case.names:
        if np.isfinite(case.bottom_row):
            weight[int(np.clip(np.floor(case.bottom_row - rows.start), 0, shape[0])):] = 0.0
        return target, weight
    k = case.names.index("S1")
    row, col = case.centres[k, 1:]
    half = 0.5 * case.step_px
    near = rows.start - half <= row < in_view_bottom + half and cols.start - half <= col < cols.stop + half
    inside = rows.start + half <= row < in_view_bottom - half and cols.start + half <= col < cols.stop - half
    if near and not inside:
        return target, np.zeros(shape, np.float32)
    if inside:
        r_mm = (case.centres[k:k + 1, 0] - slice_index) * SLICE_STEP_MM
        target = gaussian_heatmap(shape, case.centres[k:k + 1, 1:] - np.array([rows.start, cols.start], float),
                                  r_mm, PIXEL_MM, SIGMA_MM, SIGMA_R_MM)
    return target, weight


def random_lut(image: np.ndarray, rng: np.random.Generator, points: int = 7) -> np.ndarray:
    """A random, not necessarily monotone intensity curve on [0, 1] (SynthSeg-like contrast as a nuisance).

    Hand-written: MONAI's RandHistogramShift keeps the order of intensities; this one may invert it.
    """
    x = np.linspace(0.0, 1.0, points)
    y = rng.uniform(0.0, 1.0, points)
    y[0] = rng.uniform(0.0, 0.15)  # the padding/air end stays dark, as real backgrounds are
    return np.interp(image, x, y).astype(np.float32)


def _intensity_transforms() -> Compose:
    keys = ["image"]
    return Compose([
        RandHistogramShiftd(keys, num_control_points=(5, 10), prob=0.3),
        RandAdjustContrastd(keys, gamma=(0.6, 1.7), prob=0.4),
        RandBiasFieldd(keys, coeff_range=(0.0, 0.25), prob=0.4),
        RandGaussianSmoothd(keys, sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2), prob=0.25),
        RandGaussianNoised(keys, std=0.04, prob=0.4),
    ])


def _spatial_transform() -> RandAffined:
    return RandAffined(["image", "label"], prob=0.7, rotate_range=0.21, scale_range=0.15,
                       translate_range=(8, 8), mode=("bilinear", "bilinear"), padding_mode="zeros")


class HeatmapSamples(torch.utils.data.Dataset):
    """``length`` random training samples per epoch ({"image": (slices, S, S), "label": (2 C, S, S)}).

    The label stacks the ``channels`` targets and their weight maps (the loss splits them). With
    ``augment`` False the samples are fixed by ``seed`` (a validation set).
    """

    def __init__(self, cases: list[PreparedCase], length: int, size: int = 128, in_slices: int = 3,
                 seed: int = 0, augment: bool = True, tight_crop: float = 0.4, real_share: float = 0.6,
                 channels: int = 2, levels: bool = False, anchor_neighbour_weight: float = 1.0,
                 sacrum_weight: float = 1.0, third: str = "S1", cross_anchor_weight: float = 1.0):
        self.third, self.cross_anchor_weight = third, float(cross_anchor_weight)
        self.cases, self.length, self.size, self.in_slices = cases, int(length), int(size), int(in_slices)
        self.channels, self.levels = int(channels), bool(levels)
        self.anchor_neighbour_weight, self.sacrum_weight = float(anchor_neighbour_weight), float(sacrum_weight)
        self.seed, self.augment, self.tight_crop = int(seed), augment, float(tight_crop)
        real = np.array([not c.name.startswith("synthetic") for c in cases], float)
        share = np.where(real > 0, real_share / max(real.sum(), 1), (1 - real_share) / max((1 - real).sum(), 1))
        self.case_p = share / share.sum()
        self.intensity, self.spatial = _intensity_transforms(), _spatial_transform()
        self.epoch = 0
        self.seed_transforms_per_sample = True  # a DataLoader worker may seed them once instead (faster)
        self._normalised = [None] * len(cases)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch if self.augment else 0, index, *_worker_entropy(self.augment)])
        number = int(rng.choice(len(self.cases), p=self.case_p))
        case = self.cases[number]
        arrays = self._arrays(number, rng)
        slice_index = self._slice(case, rng)
        rows, cols = self._window(case, arrays.shape[1:], rng)
        image = slice_stack(arrays, slice_index, self.in_slices)[:, rows, cols].copy()
        if self.augment:
            image = self._contrast(image, case.bodies[slice_index, rows, cols], rng)
            if rng.random() < 0.2:  # thick sagittal slices: the neighbours blur into the middle one
                image[:] = image.mean(axis=0, keepdims=True)
            if rng.random() < 0.5:  # left-right mirror: the slice order reverses
                image = image[::-1].copy()
        targets, weights = sample_targets(case, slice_index, rows, cols, float(rows.stop), self.channels,
                                          self.anchor_neighbour_weight, self.sacrum_weight, self.third,
                                          self.cross_anchor_weight)
        label = [targets, weights] + ([level_targets(case, slice_index, rows, cols)] if self.levels else [])
        sample = {"image": self._place(image), "label": self._place(np.concatenate(label), self.channels)}
        if self.augment:
            if self.seed_transforms_per_sample:  # reproducible per index; costs ~15 % of a sample (MONAI reseeding)
                self.spatial.set_random_state(int(rng.integers(2**31)))
                self.intensity.set_random_state(int(rng.integers(2**31)))
            sample = self.intensity(self.spatial(sample))
        return {key: torch.as_tensor(np.asarray(value), dtype=torch.float32) for key, value in sample.items()}

    def precompute(self) -> None:
        """Normalise every MR case now, once, so DataLoader workers (forked each epoch) never redo it."""
        for number, case in enumerate(self.cases):
            if not case.ct and self._normalised[number] is None:
                self._normalised[number] = normalise_slab(case.arrays, False)

    def _arrays(self, number: int, rng) -> np.ndarray:
        case = self.cases[number]
        if case.ct and self.augment:  # jitter the HU window a little
            window = (-250.0 + rng.uniform(-150, 100), 1250.0 + rng.uniform(-350, 350))
            return normalise_slab(case.arrays, True, window)
        if self._normalised[number] is None:
            self._normalised[number] = normalise_slab(case.arrays, case.ct)
        return self._normalised[number]

    def _slice(self, case: PreparedCase, rng) -> int:
        """Mostly within a body half-width of the spine's centre R; sometimes anywhere (lateral negatives)."""
        last = len(case.arrays) - 1
        if rng.random() < 0.8:
            centre = float(np.median(case.centres[:, 0]))
            return int(np.clip(round(centre + rng.normal(0.0, 12.0 / SLICE_STEP_MM)), 0, last))
        return int(rng.integers(0, last + 1))

    def _window(self, case: PreparedCase, shape, rng) -> tuple[slice, slice]:
        """A window of at most ``size`` pixels, along the spine; tight (1.8-5 steps, like real crops) at times."""
        rows_n, cols_n = shape
        step = case.step_px
        row_c = float(rng.choice(case.centres[:, 1])) + rng.normal(0, step)
        col_c = float(np.median(case.centres[:, 2])) + rng.normal(0, 0.5 * step)
        if rng.random() < self.tight_crop:
            height = rng.uniform(1.8, 5.0) * step
            width = rng.uniform(2.0, 6.0) * step if rng.random() < 0.6 else self.size
        else:
            height = width = self.size
        height = int(round(max(min(height, self.size, rows_n), 4)))
        width = int(round(max(min(width, self.size, cols_n), 4)))
        top = int(np.clip(round(row_c - height / 2), 0, max(rows_n - height, 0)))  # shifted to stay inside
        left = int(np.clip(round(col_c - width / 2), 0, max(cols_n - width, 0)))
        return slice(top, min(top + height, rows_n)), slice(left, min(left + width, cols_n))

    def _contrast(self, image: np.ndarray, bodies: np.ndarray, rng) -> np.ndarray:
        if rng.random() < 0.35:
            image = random_lut(image, rng)
        if rng.random() < 0.25 and bodies.any():  # the bodies' own random brightness (per-structure intensity)
            image = np.clip(image + rng.uniform(-0.3, 0.4) * bodies[None].astype(np.float32), 0.0, 1.0)
        return image

    def _place(self, array: np.ndarray, weights_from: int | None = None) -> np.ndarray:
        """Centre in a ``size`` x ``size`` frame; the padding is background (image 0, targets 0, weight 1).

        For a label, channels ``weights_from`` ... ``2 weights_from`` are the heatmap weights (1 in the
        padding: outside the image is background, not unknown); level maps stay 0 there (not taught).
        """
        out = np.zeros((array.shape[0], self.size, self.size), np.float32)
        h, w = array.shape[1:]
        top = (self.size - h) // 2
        left = (self.size - w) // 2
        if weights_from is not None:
            out[weights_from:2 * weights_from] = 1.0
        out[:, top:top + h, left:left + w] = array
        return out


def _worker_entropy(augment: bool) -> tuple[int, ...]:
    """Inside a DataLoader worker, its fresh per-iterator seed: workers may be forked before the epoch is set."""
    info = torch.utils.data.get_worker_info()
    return (int(info.seed) % 2**32,) if augment and info is not None else ()


__all__ = ["PreparedCase", "prepare_case", "read_real_case", "real_split", "generated_case", "HeatmapSamples",
           "sample_targets", "random_lut",
           "level_targets", "level_class", "LEVEL_CLASSES"]
