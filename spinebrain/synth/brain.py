"""Synthetic brain MR scans with exact tissue and lesion labels, for training BrainSeg.

Anatomy comes from the MNI152 2009a template (T1 + GM/WM probability maps) shipped in the
``nilearn`` wheel. Each seed gives a different subject: an atrophy level (young adult .. elderly)
that sets the tissue fractions and ventricle size, an intracranial volume drawn from the adult
range (the template brain, 1.9 L, is scaled down to it), a random affine plus a smooth elastic
B-spline deformation, and its own cortical folding. The template is a population average whose
cortex is a blur, so the folds are made per case: the zero set of a random field forms sheets
(sulci); CSF fills them, grey matter lines them and white matter runs into the gyral cores.
Labels are then cut from these scores by rank, so each tissue gets exactly its drawn volume.
Then optional MS-like or tumour lesions, per-contrast intensities drawn around realistic values
(T1, T2, FLAIR, T1c; fully random contrasts on request) with a partial-volume border of about
one voxel, deep grey matter between GM and WM in brightness, fine and coarse texture, a bias
field, optional thick slices, Rician noise and an optional skull/scalp shell.

Label maps (uint8, same grid as every image):

* tissue: 0 background, 1 CSF, 2 GM, 3 WM (``TISSUE_NAMES``). Lesion voxels keep the tissue
  they replaced, so GM + WM + CSF is exactly the intracranial volume (the brain mask).
* lesions, ``lesions="ms"``: 0 none, 1 lesion (``MS_LESION_NAMES``).
* lesions, ``lesions="tumour"``: 0 none, 1 necrosis, 2 enhancing tumour ("Neoplasm"), 3 oedema
  (``TUMOUR_NAMES``).

Names are those of ``spinebrain.anatomy`` so segments get the project's codes and colours.
Volumes are voxel counts times the voxel volume, in mL. A lesion is one connected component
(face connectivity) of the lesion map; for tumours the whole tumour (all three labels) counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spinebrain.errors import InputError
from spinebrain.geometry import image_from_array
from spinebrain.synth import brain_appearance as appearance
from spinebrain.synth import brain_lesions as bl
from spinebrain.synth.brain_template import (  # noqa: F401 -- load_template, template_folder: public here too
    MAP_NAMES, load_template, template_at, template_folder, template_icv_ml,
)

CSF, GM, WM = bl.CSF, bl.GM, bl.WM
TISSUE_NAMES = {CSF: "Cerebrospinal fluid", GM: "Grey matter", WM: "White matter"}
MS_LESION_NAMES = {bl.MS_LESION: "Lesion"}
TUMOUR_NAMES = {bl.NECROSIS: "Necrosis", bl.ENHANCING: "Neoplasm", bl.OEDEMA: "Oedema"}
CONTRASTS = ("t1", "t2", "flair", "t1c")
LESION_KINDS = (None, "ms", "tumour")


@dataclass(frozen=True)
class BrainOptions:
    """Ranges the generator draws from; defaults give plausible adult clinical scans."""

    # Anatomical variety only; pose (large rotations, flips) is the training augmentation's job.
    rotation_deg: float = 3.0  # max rotation about each axis
    scale: float = 0.05  # max relative scaling per axis
    elastic_mm: float = 2.0  # std of the B-spline control point displacements
    elastic_grid_mm: float = 35.0  # control point spacing of the elastic deformation
    ventricle_growth_mm: tuple[float, float] = (0.0, 4.0)  # ventricles widened by up to this (x atrophy)
    # 0 young adult .. 1 elderly: less GM and WM, more CSF (tissue fractions below), wider ventricles
    atrophy: tuple[float, float] = (0.0, 1.0)
    icv_ml: tuple[float, float] = (1450.0, 130.0)  # mean, std of the intracranial (brain mask) volume
    # fraction of the intracranial volume at atrophy 0 and at atrophy 1; each case adds a little jitter.
    # Adult references: GM 550-750 mL, WM 450-550 mL, CSF growing from ~15 % to ~25 % with age.
    gm_fraction: tuple[float, float] = (0.475, 0.39)
    wm_fraction: tuple[float, float] = (0.385, 0.345)
    folding_mm: tuple[float, float] = (5.0, 7.0)  # size scale of the random gyri and sulci
    folding: float = 0.45  # how strongly the folds override the blurred template in the cortex
    ms_count: tuple[int, int] = (3, 25)
    ms_radius_mm: tuple[float, float] = (1.5, 6.0)
    tumour_radius_mm: tuple[float, float] = (10.0, 25.0)
    oedema_mm: tuple[float, float] = (5.0, 20.0)
    intensity_jitter: float = 0.08  # relative std of each class mean
    random_contrast_probability: float = 0.0  # chance of fully random class means (domain randomisation)
    texture: float = 0.05  # relative amplitude of smooth within-tissue variation (~1 cm)
    fine_texture: float = 0.02  # relative amplitude of fine within-tissue variation (~2 mm)
    deep_gm_shift: tuple[float, float] = (0.25, 0.5)  # deep GM brightness, 0 = GM .. 1 = WM
    bias_strength: tuple[float, float] = (0.0, 0.25)  # std of the log bias field
    noise: tuple[float, float] = (0.01, 0.04)  # Rician sigma relative to the brightest tissue
    thick_slice_probability: float = 0.3  # chance of thick slices along one random axis
    slice_thickness_mm: tuple[float, float] = (3.0, 6.0)
    margin_mm: float = 25.0  # room around the brain for deformation and the skull


@dataclass
class BrainCase:
    """One generated case. Images and label maps share one grid (sitk, LPS)."""

    images: dict[str, sitk.Image]  # contrast name -> float32 image
    tissue: sitk.Image  # uint8, TISSUE_NAMES
    lesions: sitk.Image  # uint8, lesion_names
    brain_mask: sitk.Image  # uint8, 1 = brain (= tissue > 0)
    lesion_names: dict[int, str]
    volumes: dict  # see compute_volumes
    metadata: dict
    tissue_names: dict[int, str] = field(default_factory=lambda: dict(TISSUE_NAMES))


# ---------------------------------------------------------------- public API


def generate_brain(seed: int, contrasts=("t1",), lesions: str | None = None, skull: bool = False,
                   spacing=None, options: BrainOptions = BrainOptions()) -> BrainCase:
    """Generate one synthetic brain case; the same arguments always give the same case.

    ``spacing``: None (1 mm) or one number = isotropic working grid in mm, with thick slices
    drawn at random per ``options``; three numbers (x, y, z mm) = the acquired grid itself,
    simulated from an isotropic grid at the finest of them.
    """
    contrasts = _check_contrasts(contrasts)
    if lesions not in LESION_KINDS:
        raise InputError(f"Unknown lesion kind {lesions!r}: use None, 'ms' or 'tumour'.")
    base, acquired = _check_spacing(spacing)
    rng = np.random.default_rng(seed)
    acquired = acquired or _random_acquisition(rng, base, options)

    subject = _draw_subject(rng, options)
    reference = _output_grid(base, options.margin_mm)
    probs = _deformed_probabilities(rng, reference, base, options, subject)
    spacing_kji = (base,) * 3
    _grow_ventricles(rng, probs, spacing_kji, options, subject)
    tissue = _tissue_labels(rng, probs, spacing_kji, options, subject)
    ventricles = (probs["ventricles"] > 0.5) & (tissue == CSF)

    lesion_map, lesion_contrast = _insert_lesions(rng, lesions, tissue, ventricles, spacing_kji, options)
    weights = appearance.class_weights(rng, probs, tissue, lesion_map, lesion_contrast, lesions, options)
    if skull:
        weights.update(appearance.skull_weights(rng, tissue > 0, spacing_kji))
    means = {c: appearance.draw_means(rng, c, options) for c in contrasts}
    texture = (1.0 + options.texture * bl.smooth_noise(rng, tissue.shape, spacing_kji, 10.0)
               + options.fine_texture * bl.smooth_noise(rng, tissue.shape, spacing_kji, 2.0))

    images = {}
    for contrast in contrasts:
        clean = appearance.synthesise(weights, means[contrast], texture)
        clean *= appearance.bias_field(rng, clean.shape, spacing_kji, options)
        images[contrast] = image_from_array(clean, reference)
    images, label_images = appearance.acquire(images, tissue, lesion_map, reference, acquired)
    mask_array = (sitk.GetArrayViewFromImage(label_images["tissue"]) > 0)
    for contrast in contrasts:
        array = appearance.rician(rng, sitk.GetArrayFromImage(images[contrast]), options)
        if not skull:
            array *= mask_array  # skull-stripped: nothing outside the brain, as after BET
        images[contrast] = image_from_array(array.astype(np.float32) * 1000.0, images[contrast])

    brain_mask = image_from_array(mask_array.astype(np.uint8), label_images["tissue"])
    lesion_names = {"ms": MS_LESION_NAMES, "tumour": TUMOUR_NAMES}.get(lesions, {})
    metadata = dict(seed=int(seed), contrasts=list(contrasts), lesions=lesions, skull=bool(skull),
                    spacing=tuple(label_images["tissue"].GetSpacing()), working_spacing=base,
                    atrophy=round(subject.atrophy, 4),
                    class_means={c: {k: round(v, 4) for k, v in m.items()} for c, m in means.items()})
    return BrainCase(images=images, tissue=label_images["tissue"], lesions=label_images["lesions"],
                     brain_mask=brain_mask, lesion_names=dict(lesion_names),
                     volumes=compute_volumes(label_images["tissue"], label_images["lesions"], lesion_names),
                     metadata=metadata)


def compute_volumes(tissue: sitk.Image, lesions: sitk.Image, lesion_names: dict[int, str]) -> dict:
    """Tissue and lesion volumes in mL from label maps (voxel count x voxel volume).

    Keys: gm_ml, wm_ml, csf_ml, icv_ml (= brain mask), lesion_count, lesion_load_ml,
    lesion_volumes_ml (one per connected component, largest first) and lesion_label_ml
    (name -> mL for each lesion label).
    """
    voxel_ml = float(np.prod(tissue.GetSpacing())) / 1000.0
    t = sitk.GetArrayViewFromImage(tissue)
    les = sitk.GetArrayViewFromImage(lesions)
    components, count = ndimage.label(les > 0)
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    return {
        "gm_ml": float(np.count_nonzero(t == GM) * voxel_ml),
        "wm_ml": float(np.count_nonzero(t == WM) * voxel_ml),
        "csf_ml": float(np.count_nonzero(t == CSF) * voxel_ml),
        "icv_ml": float(np.count_nonzero(t > 0) * voxel_ml),
        "lesion_count": int(count),
        "lesion_load_ml": float(sizes.sum() * voxel_ml),
        "lesion_volumes_ml": [float(s * voxel_ml) for s in sorted(sizes, reverse=True)],
        "lesion_label_ml": {name: float(np.count_nonzero(les == value) * voxel_ml)
                            for value, name in lesion_names.items()},
    }


# ---------------------------------------------------------------- argument checks


def _check_contrasts(contrasts) -> tuple[str, ...]:
    if isinstance(contrasts, str):
        contrasts = (contrasts,)
    contrasts = tuple(str(c).lower() for c in contrasts)
    unknown = [c for c in contrasts if c not in CONTRASTS]
    if not contrasts or unknown:
        raise InputError(f"Unknown contrast {unknown[0] if unknown else '(none given)'}: choose from {', '.join(CONTRASTS)}.")
    return tuple(dict.fromkeys(contrasts))


def _check_spacing(spacing) -> tuple[float, tuple[float, float, float] | None]:
    """(isotropic working spacing, fixed acquired spacing or None)."""
    values = np.atleast_1d(np.asarray(1.0 if spacing is None else spacing, dtype=float))
    if values.size not in (1, 3) or not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values > 10):
        raise InputError(f"Spacing {spacing!r} is not usable: give one number or three numbers of millimetres between 0 and 10.")
    if values.size == 1:
        return float(values[0]), None
    return float(values.min()), tuple(float(v) for v in values)


def _random_acquisition(rng, base: float, options: BrainOptions) -> tuple[float, float, float]:
    spacing = [base] * 3
    if rng.random() < options.thick_slice_probability:
        axis = int(rng.integers(3))
        spacing[axis] = max(base, float(rng.uniform(*options.slice_thickness_mm)))
    return tuple(spacing)


# ---------------------------------------------------------------- anatomy


def _output_grid(base: float, margin_mm: float) -> sitk.Image:
    """Empty isotropic grid around the template brain, with room for the skull."""
    template = load_template()
    extent = np.array(template.GetSize()) * np.array(template.GetSpacing()) + 2 * margin_mm
    size = [int(np.ceil(e / base)) for e in extent]
    direction = np.array(template.GetDirection()).reshape(3, 3)
    centre = template.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in template.GetSize()])
    origin = np.array(centre) - direction @ (np.array(size, dtype=float) - 1) / 2 * base
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing((base,) * 3)
    grid.SetDirection(template.GetDirection())
    grid.SetOrigin(tuple(origin))
    return grid


@dataclass(frozen=True)
class _Subject:
    """Who the case is: atrophy level, head size and tissue fractions of the brain mask."""

    atrophy: float
    icv_ml: float
    gm_fraction: float
    wm_fraction: float


def _draw_subject(rng, options: BrainOptions) -> _Subject:
    atrophy = float(rng.uniform(*options.atrophy))
    mean, std = options.icv_ml
    icv = float(np.clip(rng.normal(mean, std), mean - 2.5 * std, mean + 2.5 * std))
    gm = np.interp(atrophy, (0.0, 1.0), options.gm_fraction) + rng.normal(0.0, 0.012)
    wm = np.interp(atrophy, (0.0, 1.0), options.wm_fraction) + rng.normal(0.0, 0.012)
    return _Subject(atrophy, icv, float(gm), float(wm))


def _random_transform(rng, reference: sitk.Image, options: BrainOptions, subject: _Subject) -> sitk.Transform:
    """Random affine about the brain centre followed by a smooth B-spline deformation.

    The transform maps output points into the template, so shrinking the brain to the
    subject's intracranial volume divides the matrix by the linear scale.
    """
    centre = reference.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in reference.GetSize()])
    angles = np.deg2rad(rng.uniform(-options.rotation_deg, options.rotation_deg, size=3))
    rotation = sitk.Euler3DTransform(centre, *angles)
    size_scale = (subject.icv_ml / template_icv_ml()) ** (1.0 / 3.0)
    jitter = 1 + rng.uniform(-options.scale, options.scale, 3)
    jitter /= np.prod(jitter) ** (1.0 / 3.0)  # shape only: the volume is the subject's
    matrix = np.array(rotation.GetMatrix()).reshape(3, 3) @ np.diag(jitter) / size_scale
    affine = sitk.AffineTransform(matrix.ravel().tolist(), rng.uniform(-2, 2, 3).tolist(), centre)
    extent = np.array(reference.GetSize()) * np.array(reference.GetSpacing())
    mesh = [max(1, int(round(e / options.elastic_grid_mm))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(reference, mesh, 3)
    params = rng.normal(0.0, options.elastic_mm, size=len(bspline.GetParameters()))
    bspline.SetParameters(params.tolist())
    composite = sitk.CompositeTransform([affine, bspline])
    # Sampled on a coarse grid: evaluating the B-spline at every voxel costs ~20x more than
    # interpolating a field that is smooth over tens of millimetres anyway.
    step = 6.0
    size = [int(np.ceil(e / step)) + 2 for e in extent]
    origin = np.array(reference.GetOrigin()) - np.array(reference.GetDirection()).reshape(3, 3) @ np.full(3, step)
    field = sitk.TransformToDisplacementField(composite, sitk.sitkVectorFloat64, size, tuple(origin),
                                              (step,) * 3, reference.GetDirection())
    return sitk.DisplacementFieldTransform(field)


def _deformed_probabilities(rng, reference: sitk.Image, base: float, options: BrainOptions, subject: _Subject) -> dict:
    """Template maps warped into the case, as arrays on the working grid.

    Fine grids warp on a grid twice as coarse and interpolate up: the deformation is the
    costly part, and the folds, not the blurred template, carry the fine detail.
    """
    transform = _random_transform(rng, reference, options, subject)
    step = 2.0 * base if base < 2.0 else base
    grid = _coarser_grid(reference, step) if step > base else reference
    warped = sitk.Resample(template_at(step), grid, transform, sitk.sitkLinear, 0.0)
    if step > base:
        warped = sitk.Resample(warped, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    array = sitk.GetArrayFromImage(warped)  # k, j, i, component
    # clip: the anti-aliasing blur rings slightly below 0
    return {name: np.clip(array[..., c], 0.0, 1.0) for c, name in enumerate(MAP_NAMES)}


def _coarser_grid(reference: sitk.Image, step: float) -> sitk.Image:
    """A grid of spacing ``step`` covering ``reference`` (one voxel beyond each side)."""
    base = np.array(reference.GetSpacing())
    extent = np.array(reference.GetSize()) * base
    size = [int(np.ceil(e / step)) + 2 for e in extent]
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    first = np.array(reference.GetOrigin()) - direction @ (base / 2)  # corner of the first voxel
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing((step,) * 3)
    grid.SetDirection(reference.GetDirection())
    grid.SetOrigin(tuple(first + direction @ np.full(3, step / 2 - step)))
    return grid


def _grow_ventricles(rng, probs: dict, spacing_kji, options: BrainOptions, subject: _Subject) -> None:
    """Widen the ventricles by a random margin that grows with atrophy, as with ageing and disease."""
    grow = rng.uniform(*options.ventricle_growth_mm) * (0.25 + 0.75 * subject.atrophy)
    if grow <= 0.2:
        return
    sigma = [grow / s for s in spacing_kji]
    grown = np.clip(ndimage.gaussian_filter(probs["ventricles"], sigma) * 2.2, 0.0, 1.0)
    probs["ventricles"] = np.maximum(grown, probs["ventricles"]) * probs["brain"]


def _tissue_labels(rng, probs: dict, spacing_kji, options: BrainOptions, subject: _Subject) -> np.ndarray:
    """CSF / GM / WM labels with the subject's tissue fractions and its own cortical folds.

    ``folds`` = |random field|: 0 on the field's zero set, a network of sheets that become the
    sulci, and large in between (the gyral cores). In the cortical mantle (outside deep white
    and deep grey matter) it pushes white matter into the gyral cores; grey matter then forms
    a ribbon around the white matter (scored by the distance to it), and CSF takes what is far
    from white matter, the sulcal sheets and what the template calls CSF. Each tissue takes
    the voxels that score highest for it, as many as its fraction of the brain mask asks.
    """
    brain = probs["brain"] > 0.5
    ventricles = brain & (probs["ventricles"] > 0.5)
    cortex = 1.0 - probs["deep"]
    scale = rng.uniform(*options.folding_mm)
    folds = np.abs(bl.smooth_noise(rng, brain.shape, spacing_kji, scale)) - 0.8  # mean |N(0, 1)| ~ 0.8
    count = int(np.count_nonzero(brain))
    pool = brain & ~ventricles
    # strongest where the template is unsure (w ~ 0.5): gyral cores reach out only where the
    # template has some white matter, and deep white matter keeps no grey holes
    w = probs["wm"]
    wm_score = w + 4.0 * options.folding * cortex * w * (1.0 - w) * folds
    wm = _highest(wm_score, pool, round(subject.wm_fraction * count))
    ribbon = bl.distance_mm(wm, spacing_kji)
    ribbon_mm = rng.uniform(2.3, 3.0)  # cortical thickness scale
    # the ribbon term is +1 next to WM and falls to 0 one thickness away, so that the cortex
    # competes on equal terms with the deep grey matter, where the template alone decides
    gm_score = probs["gm"] - probs["csf"] + cortex * (1.0 + options.folding * folds - ribbon / ribbon_mm)
    gm = _highest(gm_score, pool & ~wm, round(subject.gm_fraction * count))
    tissue = np.zeros(brain.shape, np.uint8)
    tissue[brain] = CSF
    tissue[gm] = GM
    tissue[wm] = WM
    return tissue


def _highest(score: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` voxels of ``mask`` with the highest ``score`` (ties may add a few)."""
    values = score[mask]
    if count >= values.size:
        return mask.copy()
    if count <= 0:
        return np.zerosimage_from_array(mask)
    threshold = np.partition(values, values.size - count)[values.size - count]
    return mask & (score >= threshold)


def _insert_lesions(rng, kind, tissue, ventricles, spacing_kji, options):
    if kind == "ms":
        count = int(rng.integers(options.ms_count[0], options.ms_count[1] + 1))
        return bl.insert_ms_lesions(rng, tissue, ventricles, spacing_kji, count, options.ms_radius_mm)
    if kind == "tumour":
        labels = bl.insert_tumour(rng, tissue, ventricles, spacing_kji, options.tumour_radius_mm, options.oedema_mm)
        return labels, (labels > 0).astype(np.float32)
    return np.zeros(tissue.shape, np.uint8), np.zeros(tissue.shape, np.float32)
