"""Lesions for the synthetic brain generator: MS-like white-matter lesions and tumours.

Both work on label arrays of the generator's working grid (``[k, j, i]``, tissue values from
``brain.TISSUE_NAMES``) and return a lesion label array on the same grid. Shapes are
noise-perturbed ellipsoids built in a small crop around each centre, so the cost does not
depend on the size of the whole image.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

CSF, GM, WM = 1, 2, 3
MS_LESION = 1
NECROSIS, ENHANCING, OEDEMA = 1, 2, 3


def distance_mm(mask: np.ndarray, spacing_kji) -> np.ndarray:
    """Euclidean distance (mm) of every voxel to the nearest voxel of ``mask`` (0 inside it)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_kji)))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return np.maximum(sitk.GetArrayViewFromImage(distance), 0).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape, spacing_kji, scale_mm: float) -> np.ndarray:
    """Zero-mean, unit-variance (float32) random field varying smoothly over about ``scale_mm``."""
    # smoothed white noise on a grid 4x finer than the scale (but never finer than the output),
    # then trilinear upsampling: the coarse field is well sampled, so the linear interpolation
    # shows no creases, and the cost is a few operations per output voxel whatever the scale
    step = max(scale_mm / 4.0, min(spacing_kji))
    coarse = [max(4, int(np.ceil(n * s / step)) + 1) for n, s in zip(shape, spacing_kji)]
    field = ndimage.gaussian_filter(rng.standard_normal(coarse, dtype=np.float32), scale_mm / 2.0 / step, mode="wrap")
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    if all(c - n <= 1 for n, c in zip(shape, coarse)):  # already at the output spacing
        return _fit_shape(field, shape)
    out = ndimage.zoom(field, [n / c for n, c in zip(shape, coarse)], order=1, grid_mode=True,
                       mode="grid-mirror")
    return _fit_shape(out, shape)


def _fit_shape(array: np.ndarray, shape) -> np.ndarray:
    """Crop or edge-pad ``array`` to ``shape`` (zoom can be off by one voxel)."""
    array = array[tuple(slice(0, n) for n in shape)]
    pad = [(0, n - m) for n, m in zip(shape, array.shape)]
    return np.pad(array, pad, mode="edge") if any(p[1] for p in pad) else array


def _crop_around(center, half_mm, spacing_kji, shape):
    """Slices of a box of half-size ``half_mm`` around a voxel, clipped to the image."""
    half = [int(np.ceil(half_mm / s)) + 1 for s in spacing_kji]
    return tuple(slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(center, half, shape))


def _offsets_mm(box, center, spacing_kji):
    """Per-axis coordinate grids (mm) of a crop, relative to the centre voxel (broadcastable)."""
    axes = [(np.arange(b.start, b.stop) - c) * s for b, c, s in zip(box, center, spacing_kji)]
    return np.meshgrid(*axes, indexing="ij", sparse=True)


def _pick_voxel(rng: np.random.Generator, *candidate_masks: np.ndarray):
    """A random voxel of the first non-empty mask (None when all are empty)."""
    for mask in candidate_masks:
        indices = np.flatnonzero(mask)
        if indices.size:
            return np.unravel_index(rng.choice(indices), mask.shape)
    return None


def insert_ms_lesions(rng: np.random.Generator, tissue: np.ndarray, ventricles: np.ndarray,
                      spacing_kji, count: int, radius_mm: tuple[float, float]):
    """MS-like lesions in white matter: periventricular, juxtacortical and deep.

    Returns ``(labels, contrast)``: labels has 1 in lesion voxels; contrast (0..1.3 in lesions,
    0 elsewhere) scales how far each lesion's intensity departs from white matter, so lesions
    differ from one another as real ones do. Every lesion voxel lies in white matter or within
    one voxel of it, never in CSF.
    """
    wm = tissue == WM
    labels = np.zeros(tissue.shape, dtype=np.uint8)
    contrast = np.zeros(tissue.shape, dtype=np.float32)
    if not wm.any() or count <= 0:
        return labels, contrast
    allowed = ndimage.binary_dilation(wm) & (tissue > 0) & (tissue != CSF)
    near_ventricle = wm & (distance_mm(ventricles, spacing_kji) <= 8.0)
    near_cortex = wm & (distance_mm(tissue == GM, spacing_kji) <= max(3.0, 1.5 * max(spacing_kji)))
    deep = wm & ~near_ventricle & ~near_cortex
    pools = (near_ventricle, near_cortex, deep)
    for _ in range(count):
        pool = pools[rng.choice(3, p=(0.5, 0.25, 0.25))]
        center = _pick_voxel(rng, pool, wm)
        radius = float(np.exp(rng.uniform(np.log(radius_mm[0]), np.log(radius_mm[1]))))
        semi_axes = radius * rng.uniform(0.6, 1.5, size=3)
        box = _crop_around(center, semi_axes.max() * 1.4, spacing_kji, tissue.shape)
        offsets = _offsets_mm(box, center, spacing_kji)
        rho = np.sqrt(sum((o / a) ** 2 for o, a in zip(offsets, semi_axes)))
        rough = smooth_noise(rng, rho.shape, spacing_kji, max(radius, 2.0))
        local_center = tuple(c - b.start for c, b in zip(center, box))
        blob = (rho + 0.25 * rough < 1.0) & allowed[box]
        blob[local_center] = True  # never an empty lesion
        blob = _component_at(blob, local_center)  # clipping to WM must not leave specks
        labels[box][blob] = MS_LESION
        contrast[box][blob] = rng.uniform(0.5, 1.2)
    return labels, contrast


def insert_tumour(rng: np.random.Generator, tissue: np.ndarray, ventricles: np.ndarray,
                  spacing_kji, radius_mm: tuple[float, float], oedema_mm: tuple[float, float]):
    """One tumour: necrotic core (1) inside an enhancing rim (2) inside oedema (3).

    The rim is at least 2.5 voxels thick and the oedema wraps the whole rim (at least 2 voxels,
    extending much further along white matter, as vasogenic oedema does) wherever the
    neighbouring tissue is brain and not CSF. Returns the label array.
    """
    brain = tissue > 0
    labels = np.zeros(tissue.shape, dtype=np.uint8)
    step = max(spacing_kji)
    radius = rng.uniform(*radius_mm)
    rim = max(radius * rng.uniform(0.25, 0.5), 2.5 * step)
    core = radius - rim
    depth = distance_mm(~brain, spacing_kji)
    wm = tissue == WM
    for shrink in (1.0, 0.75, 0.5, 0.35):  # small brains / coarse grids: shrink until it fits
        fits = wm & (depth > shrink * radius + 2 * step) & (distance_mm(ventricles, spacing_kji) > 2 * step)
        center = _pick_voxel(rng, fits)
        if center is not None:
            core, radius = core * shrink, core * shrink + rim
            break
    else:
        center = _pick_voxel(rng, wm, brain)
        if center is None:
            return labels
    oedema_extent = rng.uniform(*oedema_mm)
    thin_oedema = 2.0 * step
    box = _crop_around(center, radius + 1.5 * oedema_extent + 2 * step, spacing_kji, tissue.shape)
    offsets = _offsets_mm(box, center, spacing_kji)
    stretch = rng.uniform(0.8, 1.25, size=3)
    r = np.sqrt(sum((o / a) ** 2 for o, a in zip(offsets, stretch)))
    r = r + 0.2 * radius * smooth_noise(rng, r.shape, spacing_kji, max(0.7 * radius, 4.0))
    local = tissue[box]
    inside = (local > 0) & (local != CSF)
    spread = oedema_extent * (1.0 + 0.5 * smooth_noise(rng, r.shape, spacing_kji, 8.0))
    reach = np.where(local == WM, np.maximum(spread, thin_oedema), thin_oedema)
    target = labels[box]
    target[(r >= radius) & (r < radius + reach) & inside] = OEDEMA
    target[(r < radius) & (local > 0)] = ENHANCING
    target[(r < core) & (local > 0)] = NECROSIS
    # oedema following WM can leave islands behind thin cortex: a tumour is one connected lesion
    target[~_component_at(target > 0, tuple(c - b.start for c, b in zip(center, box)))] = 0
    return labels


def _component_at(mask: np.ndarray, index) -> np.ndarray:
    """The connected component (face connectivity) of ``mask`` containing ``index``."""
    components, _ = ndimage.label(mask)
    value = components[index]
    return components == value if value else np.zeros_like(mask)
