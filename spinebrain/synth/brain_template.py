"""The MNI152 2009a template the brain generator deforms: read from the ``nilearn`` wheel, cached per process."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spinebrain.errors import InputError
from spinebrain.geometry import image_from_array

_TEMPLATE_FILES = {name: f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz" for name in ("t1", "gm", "wm")}
MAP_NAMES = ("gm", "wm", "csf", "ventricles", "brain", "deep")  # components of load_template()


def template_folder() -> Path:
    """Folder of the MNI152 files inside the installed nilearn package."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("The brain generator needs the MNI152 template from nilearn: run `pip install nilearn`.")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    missing = [name for name in _TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise InputError(f"The nilearn installation lacks {missing[0]}: reinstall it with `pip install --force-reinstall nilearn`.")
    return folder


@functools.lru_cache(maxsize=1)
def load_template() -> sitk.Image:
    """MNI152 maps as one 6-component float image: GM, WM, CSF, ventricles, brain, deep (0..1).

    ``deep`` rises from 0 at 20 mm to 1 at 30 mm inside the brain, where grey matter is the basal
    ganglia and thalamus rather than folded cortex. Cropped to the brain plus a margin. Cached
    for the life of the process (each DataLoader worker loads it once).
    """
    folder = template_folder()
    raw = {name: sitk.ReadImage(str(folder / file), sitk.sitkFloat32) for name, file in _TEMPLATE_FILES.items()}
    brain_image = sitk.BinaryFillhole(sitk.Cast(raw["t1"] > 0, sitk.sitkUInt8))
    brain_image = sitk.BinaryMorphologicalOpening(brain_image, [1, 1, 1], sitk.sitkCross)
    brain = sitk.GetArrayFromImage(brain_image).astype(bool)
    gm = sitk.GetArrayFromImage(raw["gm"]) / 255.0 * brain
    wm = sitk.GetArrayFromImage(raw["wm"]) / 255.0 * brain
    total = gm + wm
    over = total > 1.0
    gm[over], wm[over] = gm[over] / total[over], wm[over] / total[over]
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    depth = _inside_depth_mm(brain_image)
    ventricles = _template_ventricles(csf, depth)
    deep = np.clip((depth - 20.0) / 10.0, 0.0, 1.0)
    maps = [gm, wm, csf, ventricles, brain.astype(np.float32), deep]
    image = sitk.Compose([image_from_array(m.astype(np.float32), raw["t1"]) for m in maps])
    return _crop_to(image, brain, margin_voxels=4)


@functools.lru_cache(maxsize=1)
def template_icv_ml() -> float:
    """Brain mask volume of the template (mL): the reference for scaling each case's size."""
    template = load_template()
    # a copy, not a view: a view of the temporary image would read freed memory once the image is gone
    brain = sitk.GetArrayFromImage(sitk.VectorIndexSelectionCast(template, MAP_NAMES.index("brain")))
    return float(np.count_nonzero(brain > 0.5) * np.prod(template.GetSpacing()) / 1000.0)


def _inside_depth_mm(mask: sitk.Image) -> np.ndarray:
    """Distance (mm) of every voxel inside ``mask`` to its border; 0 outside."""
    distance = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=True, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(distance), 0.0).astype(np.float32)


def _template_ventricles(csf: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Ventricle probability: CSF deep inside the brain, in components larger than 1 mL."""
    core = sitk.GetImageFromArray(((csf > 0.5) & (depth > 12)).astype(np.uint8))
    components = sitk.RelabelComponent(sitk.ConnectedComponent(core), minimumObjectSize=1000)
    region = sitk.BinaryDilate(components > 0, [2, 2, 2], sitk.sitkBall)
    return (csf * sitk.GetArrayViewFromImage(region)).astype(np.float32)


def _crop_to(image: sitk.Image, mask: np.ndarray, margin_voxels: int) -> sitk.Image:
    nonzero = np.nonzero(mask)
    lower = [max(0, int(n.min()) - margin_voxels) for n in nonzero]  # k, j, i
    upper = [min(s, int(n.max()) + 1 + margin_voxels) for n, s in zip(nonzero, mask.shape)]
    return image[lower[2]:upper[2], lower[1]:upper[1], lower[0]:upper[0]]


@functools.lru_cache(maxsize=4)
def template_at(spacing: float) -> sitk.Image:
    """Template smoothed against aliasing when sampled at a coarser ``spacing``."""
    template = load_template()
    if spacing <= 1.2:
        return template
    sigma = 0.4 * spacing
    return sitk.Compose([sitk.SmoothingRecursiveGaussian(sitk.VectorIndexSelectionCast(template, c), sigma)
                         for c in range(template.GetNumberOfComponentsPerPixel())])
