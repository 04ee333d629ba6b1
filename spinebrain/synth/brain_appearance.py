"""How a synthetic brain looks on MR: partial-volume class weights, the skull shell, per-contrast class
means, texture, bias field, thick-slice acquisition and Rician noise (:func:`spinebrain.synth.brain.generate_brain`
draws the anatomy, this module forms the image; the order of random draws is the generator's).
``options`` is the generator's :class:`~spinebrain.synth.brain.BrainOptions` (not imported: brain.py imports this)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spinebrain.geometry import image_from_array
from spinebrain.synth import brain_lesions as bl

CSF, GM, WM = bl.CSF, bl.GM, bl.WM

# Mean intensity of each class per contrast, relative to the brightest brain tissue, read off
# typical clinical 1.5/3 T scans and checked against the B2/B5/B6 reference cases with the
# realism report (T1 GM/WM ~0.63 and CSF/WM ~0.33 in B5; T2 tissue ~0.3 of CSF and oedema about
# twice WM in B6; FLAIR MS lesions ~1.3x the brain in B2). Each case jitters them.
MEANS = {
    "t1": dict(csf=0.25, gm=0.52, wm=0.85, lesion=0.50, necrosis=0.25, enhancing=0.55, oedema=0.55,
               bone=0.05, marrow=0.70, scalp=0.80),
    "t1c": dict(csf=0.25, gm=0.52, wm=0.85, lesion=0.55, necrosis=0.25, enhancing=1.25, oedema=0.55,
                bone=0.05, marrow=0.70, scalp=0.80),
    "t2": dict(csf=1.00, gm=0.42, wm=0.32, lesion=0.65, necrosis=0.90, enhancing=0.55, oedema=0.62,
               bone=0.05, marrow=0.40, scalp=0.55),
    "flair": dict(csf=0.10, gm=0.62, wm=0.48, lesion=0.85, necrosis=0.40, enhancing=0.80, oedema=0.95,
                  bone=0.05, marrow=0.45, scalp=0.60),
}
LESION_CLASSES = {"ms": ("lesion",), "tumour": ("necrosis", "enhancing", "oedema")}


def class_weights(rng, probs, tissue, lesion_map, lesion_contrast, kind, options) -> dict:
    """Soft (partial-volume) weight of each intensity class; they sum to at most 1 per voxel.

    The labels blurred by half a voxel: the partial volume of a real acquisition, so each voxel
    looks like the tissue it is labelled (its weight stays above one half) and borders are as
    sharp as the grid allows.
    """
    sigma = 0.5  # voxels
    weights = {name: _soft(tissue == value, sigma) for name, value in (("csf", CSF), ("gm", GM), ("wm", WM))}
    # basal ganglia and thalamus: between cortical GM and WM in brightness on every contrast
    deep = weights["gm"] * probs["deep"] * rng.uniform(*options.deep_gm_shift)
    weights["gm"] -= deep
    weights["wm"] += deep
    if kind is None:
        return weights
    union = _soft(lesion_map > 0, sigma)
    healthy = 1.0 - union
    for name in ("csf", "gm", "wm"):
        weights[name] *= healthy
    brain = _soft(tissue > 0, sigma)
    classes = LESION_CLASSES[kind]
    for value, name in enumerate(classes, start=1):
        weights[name] = _soft(lesion_map == value, sigma) * brain
    if kind == "ms":  # per-lesion strength: 0 = looks like WM, 1 = full lesion contrast
        strength = np.clip(_soft_values(lesion_contrast, sigma) / np.maximum(union, 1e-3), 0.0, 1.0)
        weights["wm"] += weights["lesion"] * (1.0 - strength)
        weights["lesion"] *= strength
    return weights


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    return _soft_values(mask.astype(np.float32), sigma)


def _soft_values(array: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(array, sigma, truncate=3.0)


def skull_weights(rng, brain: np.ndarray, spacing_kji) -> dict:
    """A simple head shell: CSF gap, inner table, diploe (marrow), outer table, scalp."""
    distance = bl.distance_mm(brain, spacing_kji)
    wobble = bl.smooth_noise(rng, brain.shape, spacing_kji, 30.0)
    d = distance - 1.0 * wobble  # thickness varies smoothly around the head
    layers = [("csf", rng.uniform(0.5, 2.5)), ("bone", rng.uniform(1.5, 3.0)), ("marrow", rng.uniform(1.5, 4.0)),
              ("bone", rng.uniform(1.5, 3.0)), ("scalp", rng.uniform(3.0, 7.0))]
    step = max(spacing_kji)
    weights: dict[str, np.ndarray] = {}
    inner = 0.0
    for name, thickness in layers:
        outer = inner + thickness
        layer = np.clip((d - inner) / step + 0.5, 0, 1) - np.clip((d - outer) / step + 0.5, 0, 1)
        layer[brain] = 0.0
        weights[f"shell_{name}"] = weights.get(f"shell_{name}", 0.0) + layer.astype(np.float32)
        inner = outer
    return weights


def draw_means(rng, contrast: str, options) -> dict:
    base = MEANS[contrast]
    if rng.random() < options.random_contrast_probability:
        return {name: float(rng.uniform(0.02, 1.0)) for name in base}
    return {name: float(value * np.exp(rng.normal(0.0, options.intensity_jitter))) for name, value in base.items()}


def synthesise(weights: dict, means: dict, texture: np.ndarray) -> np.ndarray:
    image = np.zeros(texture.shape, dtype=np.float32)
    for name, weight in weights.items():
        mean = means[name.removeprefix("shell_")]
        image += weight * mean
    return image * texture


def bias_field(rng, shape, spacing_kji, options) -> np.ndarray:
    strength = rng.uniform(*options.bias_strength)
    return np.exp(strength * bl.smooth_noise(rng, shape, spacing_kji, 80.0)).astype(np.float32)


def rician(rng, array: np.ndarray, options) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (Rician), sigma relative to tissue."""
    sigma = rng.uniform(*options.noise) * float(np.percentile(array[array > 0], 99)) if np.any(array > 0) else 0.0
    real = array + rng.normal(0.0, sigma, array.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, array.shape).astype(np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def acquire(images: dict, tissue: np.ndarray, lesions: np.ndarray, reference: sitk.Image, acquired) -> tuple[dict, dict]:
    """Resample to the acquired grid; thick slices are blurred with their slice profile first."""
    base = reference.GetSpacing()[0]
    labels = {"tissue": image_from_array(tissue, reference), "lesions": image_from_array(lesions, reference)}
    if np.allclose(acquired, base):
        return images, labels
    spacing = np.array(acquired, dtype=float)
    size = [max(1, int(n * base // s)) for n, s in zip(reference.GetSize(), spacing)]
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    origin = np.array(reference.GetOrigin()) + direction @ ((spacing - base) / 2)  # slab centres
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(tuple(spacing))
    grid.SetOrigin(tuple(origin))
    grid.SetDirection(reference.GetDirection())
    out = {}
    for name, image in images.items():
        for axis in np.flatnonzero(spacing > base * 1.01):
            # FWHM of the slice profile = slice thickness
            sigma = float(np.sqrt(max(spacing[axis] ** 2 - base ** 2, 0.0)) / 2.355)
            image = sitk.RecursiveGaussian(image, sigma, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, int(axis))
        out[name] = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    labels = {k: sitk.Resample(v, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0) for k, v in labels.items()}
    return out, labels

