"""Synthetic spine scans with exact vertebra labels: the training data of SpineLabel / SpineSegment.

``generate_spine(seed, ...)`` draws an anatomy (:mod:`spine_anatomy`), an acquisition
(:mod:`spine_acquisition`), draws tissues and vertebrae on the grid (:mod:`spine_render`) and turns
tissues into CT, T1, T2 or randomised contrast here. ``synthesize_from_labels`` does the last step
for a real (deformed) vertebra mask. Every random draw comes from one ``numpy.random.Generator``
seeded by ``seed``, so a case is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spinebrain import geometry
from spinebrain.anatomy import PELVIS_LABELS, VERTEBRA_LABELS, vertebra_index, vertebra_name
from spinebrain.errors import InputError
from spinebrain.points import LabelledPoint
from spinebrain.synth import spine_render as rnd
from spinebrain.synth.spine_acquisition import (VIEWS, Grid, enlarge_to_spine, plan_grid, sample_direction,
                                                sample_spacing, view_range)
from spinebrain.synth.spine_anatomy import SpineAnatomy, SpineOptions, sample_anatomy

MODALITIES = ("ct", "t1", "t2", "random")
COMPLETE_MAX_OUTSIDE = 0.03  # SPEC: complete when at most 3 % of the vertebra lies outside the field of view


@dataclass
class VertebraRecord:
    name: str
    label: int
    body_centre_ras: tuple[float, float, float]
    centroid_ras: tuple[float, float, float]  # of the labelled voxels in the image
    volume_mm3: float  # labelled volume inside the image
    complete: bool
    fraction_outside: float | None  # None where the full vertebra is unknown (real masks)


@dataclass
class SpineCase:
    image: sitk.Image
    labels: sitk.Image  # vertebra instances, VerSe values, 0 background
    tissue: sitk.Image  # spine_render.TISSUE_NAMES classes
    vertebrae: list[VertebraRecord]
    points: list[LabelledPoint]
    metadata: dict = field(default_factory=dict)
    # vertebrae (VerSe values) plus the bones around them: sacrum S2-S5, coccyx, ilia
    # (anatomy.PELVIS_LABELS); None where not generated (label-map-driven cases)
    structures: sitk.Image | None = None

    def label_names(self) -> dict[int, str]:
        """Label value -> vertebra name for the values present in ``labels``."""
        return {r.label: r.name for r in self.vertebrae}


TISSUE_NAMES = rnd.TISSUE_NAMES

# ----------------------------------------------------------------------------------------------
# contrast


def _marrow(modality: str, age: float, rng) -> float:
    """Cancellous bone signal for an age: CT density falls and MR marrow fat (T1 and TSE-T2 signal)
    rises with age. CT: about 230-280 HU in young adults, 100-150 past 70, under 100 when osteoporotic."""
    years = age - 20.0
    if modality == "ct":
        return float(np.clip(265.0 - 2.4 * years + rng.normal(0, 40), 40, 340))
    if modality == "t1":  # relative to fat
        return float(np.clip(0.45 + 0.006 * years + rng.normal(0, 0.07), 0.3, 0.95))
    return float(np.clip(0.3 + 0.004 * years + rng.normal(0, 0.06), 0.18, 0.7))  # T2 TSE, relative to CSF


def _tissue_table(modality: str, rng, age: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean signal and texture SD per tissue class (index = tissue code), one person and scanner.

    The drawn cortex (``CORTEX_MM`` thick) is thicker than a real vertebral shell (0.3-1 mm), so its
    signal is that of cortex mixed with marrow at the voxel scale: 500-1200 HU on CT (real masks read
    p95 of 680-900 HU), a darkened marrow signal on MR rather than black.
    """
    j = lambda x, sd=0.12: x * (1 + sd * rng.standard_normal())  # noqa: E731
    u = rng.uniform
    if modality == "ct":
        vessel = u(150, 350) if rng.random() < 0.5 else rng.normal(42, 6)  # contrast-enhanced or plain blood
        mean = [-1000, rng.normal(-100, 12), rng.normal(50, 8), rng.normal(38, 10), rng.normal(-840, 40),
                u(500, 1200), _marrow("ct", age, rng), rng.normal(85, 10), rng.normal(8, 4), rng.normal(35, 5), vessel]
        tex = [5, 15, 12, 15, 40, 80, 30, 10, 5, 5, 8]
    elif modality == "t1":  # fat bright, marrow bright-ish (fatty), disc intermediate, CSF dark
        marrow = _marrow("t1", age, rng)
        mean = [0, j(1.0, 0.05), u(0.25, 0.4), u(0.35, 0.55), 0.03, marrow * u(0.15, 0.4), marrow, u(0.3, 0.45),
                u(0.08, 0.2), u(0.4, 0.55), u(0.03, 0.4)]  # vessel: flow void to slow-flow signal
        tex = [0.0, 0.04, 0.03, 0.05, 0.01, 0.02, 0.05, 0.03, 0.02, 0.02, 0.03]
    elif modality == "t2":  # TSE: CSF very bright, fat bright, marrow intermediate, muscle dark
        marrow = _marrow("t2", age, rng)
        mean = [0, u(0.55, 0.9), u(0.08, 0.2), u(0.2, 0.45), 0.02, marrow * u(0.15, 0.4), marrow, u(0.6, 0.95),
                1.0, u(0.3, 0.5), u(0.02, 0.15)]  # vessel: flow void
        tex = [0.0, 0.04, 0.02, 0.05, 0.01, 0.01, 0.04, 0.04, 0.02, 0.02, 0.02]
    else:  # domain randomisation (SynthSeg-style): any contrast, one draw per tissue
        mean = rng.uniform(0, 1, len(rnd.TISSUE_NAMES))
        tex = rng.uniform(0, 0.08, len(rnd.TISSUE_NAMES))
    return np.asarray(mean, np.float32), np.asarray(tex, np.float32)


def _trabecular(img, tissue, spacing_fine, amplitude: float, rng) -> None:
    """Add a coarse (about 1.5 mm grain) random texture to cancellous bone, in place: trabecular
    structure at CT / MR resolution. Drawn on a coarse grid and gathered at the bone voxels only."""
    where = np.nonzero(tissue == rnd.CANCELLOUS)
    if where[0].size == 0 or amplitude == 0:
        return
    step = [max(1, int(round(1.5 / sp))) for sp in spacing_fine[::-1]]  # array order k, j, i
    shape = [n // st + 1 for n, st in zip(tissue.shape, step)]
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.7, truncate=2.0)
    field *= np.float32(amplitude / max(float(field.std()), 1e-6))
    img[where] += field[tuple(w // st for w, st in zip(where, step))]


def _contrast(tissue, modifier, texture, bias, spacing_fine, n_sub, modality, rng, age: float | None = None) -> np.ndarray:
    """Signal of a tissue map: table lookup, texture, blur (PSF + slice profile), bias, noise.
    ``age`` (years) sets bone density, marrow fat and so on; drawn when None."""
    age = float(18.0 + 70.0 * rng.beta(2.2, 1.6)) if age is None else age
    mean, tex = _tissue_table(modality, rng, age)
    img = mean[tissue]
    if modality == "t1":
        img *= 1 + 0.25 * (modifier - 1)  # disc nucleus / degeneration show weakly on T1
    elif modality != "ct":
        img *= modifier  # and strongly on T2
    img += tex[tissue] * rng.standard_normal(tissue.shape, dtype=np.float32)
    if texture is not None:
        img += tex[tissue] * 0.8 * texture  # smooth organ-scale variation
    # CT grain 40-90 HU: the real L3 corpus of A6 (1.5 mm) reads SD 90 HU inside; 20-60 gave 52-66
    _trabecular(img, tissue, spacing_fine, rng.uniform(40, 90) if modality == "ct" else
                float(mean[rnd.CANCELLOUS]) * rng.uniform(0.04, 0.12), rng)
    psf_mm = rng.uniform(0.3, 0.9) if modality == "ct" else rng.uniform(0.4, 1.2)
    # PSF plus the voxel's own extent (a box of width sp has SD 0.29 sp): partial volume at edges
    sigma = [np.hypot(psf_mm, 0.29 * sp) / sp for sp in spacing_fine[::-1]]  # array order k, j, i
    img = ndimage.gaussian_filter(img, sigma, truncate=2.5)
    if n_sub > 1:  # slice profile: average the sub-slices of each output slice
        img = img.reshape(-1, n_sub, *img.shape[1:]).mean(axis=1)
        bias = None if bias is None else bias[n_sub // 2::n_sub]
    if modality == "ct":
        img += rng.uniform(10, 60) * rng.standard_normal(img.shape, dtype=np.float32)
        return np.clip(img, -1024, 3071)
    img *= np.exp(rng.uniform(0.1, 0.5) * bias)
    if modality == "random":
        img = np.clip(img, 0, None) ** np.float32(np.exp(rng.normal(0, 0.3)))
    sd = rng.uniform(0.02, 0.08) * float(np.percentile(img, 99) or 1.0)
    img = np.sqrt((img + sd * rng.standard_normal(img.shape, dtype=np.float32)) ** 2
                  + (sd * rng.standard_normal(img.shape, dtype=np.float32)) ** 2)  # Rician magnitude
    scale = 1.0 / max(float(img.max()), 1e-6) if modality == "random" else rng.uniform(300, 3000) / max(
        float(np.percentile(img, 99.5)), 1e-6)
    return img * np.float32(scale)


# ----------------------------------------------------------------------------------------------
# records


def _label_stats(labels: sitk.Image) -> dict[int, tuple[np.ndarray, float]]:
    """Label value -> (centroid RAS, volume mm³)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    return {int(v): (geometry.lps_to_ras(stats.GetCentroid(v)), float(stats.GetPhysicalSize(v)))
            for v in stats.GetLabels()}


def _body_centre(anatomy: SpineAnatomy, vert) -> np.ndarray:
    # C1 has no body: its point sits in the anterior arch, inside the bone, where readers place it
    return anatomy.to_ras(np.array([vert.s]), np.array([0.0]), np.array([10.0 if vert.name == "C1" else 0.0]))[0]


def fraction_outside(anatomy: SpineAnatomy, vert, gaps, grid: Grid, step_mm: float = 1.5) -> tuple[float, float]:
    """(fraction of the vertebra's bone outside ``grid``, full volume mm³) by sampling its shapes."""
    lo, hi = rnd._extent(vert, *gaps)
    box = np.array(np.meshgrid(*[np.linspace(l, h, 3) for l, h in zip(lo, hi)], indexing="ij")).reshape(3, -1)
    if grid.contains(anatomy.to_ras(vert.s + box[0], box[1], box[2])).all():
        return 0.0, float("nan")  # the whole (loose) box is in view: nothing can be outside
    axes = [np.arange(l, h, step_mm) for l, h in zip(lo, hi)]
    ds, u, v = (x.ravel() for x in np.meshgrid(*axes, indexing="ij"))
    bone = rnd.vertebra_mask_points(vert, ds, u, v, *gaps)
    pts = anatomy.to_ras(vert.s + ds[bone], u[bone], v[bone])
    inside = grid.contains(pts)
    n = max(int(bone.sum()), 1)
    return float(1.0 - inside.sum() / n), n * step_mm ** 3


def _records(anatomy: SpineAnatomy, labels: sitk.Image, grid: Grid) -> tuple[list[VertebraRecord], list[LabelledPoint]]:
    stats = _label_stats(labels)
    gaps = dict(zip((v.name for v in anatomy.vertebrae), rnd._gaps(anatomy)))
    records, points = [], []
    for vert in anatomy.instances():
        if vert.label not in stats:
            continue
        centroid, volume = stats[vert.label]
        outside, _ = fraction_outside(anatomy, vert, gaps[vert.name], grid)
        centre = _body_centre(anatomy, vert)
        records.append(VertebraRecord(vert.name, vert.label, tuple(map(float, centre)), tuple(map(float, centroid)),
                                      volume, bool(outside <= COMPLETE_MAX_OUTSIDE), outside))
        if grid.contains(centre[None])[0]:
            points.append(LabelledPoint(vert.name, tuple(map(float, centre))))
    return records, points


# ----------------------------------------------------------------------------------------------
# the generator


def _check_choice(value, allowed, what):
    if value != "random" and value not in allowed:
        raise InputError(f"Unknown {what} {value!r}; use one of {', '.join(allowed)} or random.")


def _spacing(spacing, rng, modality) -> tuple[float, float, float]:
    if spacing is None:
        return sample_spacing(rng, modality)
    sp = np.broadcast_to(np.asarray(spacing, float), (3,))
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0.05) or np.any(sp > 20):
        raise InputError(f"Spacing {spacing!r} is not usable; give 0.05-20 mm, one number or three (i, j, k).")
    return tuple(float(x) for x in sp)


def _image(array: np.ndarray, grid: Grid, pixel_id) -> sitk.Image:
    image = sitk.Cast(sitk.GetImageFromArray(array), pixel_id)
    return geometry.set_geometry_from_ijk_to_ras(image, grid.ijk_to_ras())


def generate_spine(seed: int, modality: str = "ct", view: str = "lumbar", spacing=None,
                   orientation: str = "sagittal", options: SpineOptions | None = None) -> SpineCase:
    """One synthetic spine scan. ``spacing``: mm along the image axes (i, j, k); k is the slice axis.

    ``view``: cervical | thoracic | lumbar | whole | short (neither C2 nor S1) | random;
    ``orientation``: sagittal | axial | coronal | oblique | random.
    """
    options = options or SpineOptions()
    _check_choice(modality, MODALITIES, "modality")
    _check_choice(view, VIEWS, "view")
    rng = np.random.default_rng(seed)
    if modality == "random":
        modality = str(rng.choice(MODALITIES))
    if view == "random":
        view = str(rng.choice(VIEWS, p=[0.2, 0.15, 0.3, 0.15, 0.2]))
    anatomy = sample_anatomy(rng, options)
    direction, orientation = sample_direction(rng, orientation)
    sp = _spacing(spacing, rng, modality)
    s_range = view_range(anatomy, view, rng)
    grid = plan_grid(anatomy, s_range, direction, sp, rng, options, short=view == "short")
    draw_grid, offset = enlarge_to_spine(grid, anatomy) if options.render_full_spine else (grid, (0, 0, 0))
    n_sub = 1
    if options.supersample_thick_slices:
        # sub-slices about 1.2 mm apart (odd count, so the label map takes the middle one)
        ratio = grid.spacing[2] / max(min(grid.spacing[:2]), 1.2)
        n_sub = int(min(5, max(1, 2 * round((ratio - 1) / 2) + 1)))
    r = rnd.render(anatomy, draw_grid, rng, options.coarse_mm, n_sub, smooth_fields=modality != "ct")
    fine_spacing = (grid.spacing[0], grid.spacing[1], grid.spacing[2] / n_sub)
    img = _contrast(r.tissue, r.modifier, r.texture, r.bias, fine_spacing, n_sub, modality, rng,
                    age=anatomy.habitus["age"])
    centre = slice(n_sub // 2, None, n_sub)
    structures = _image(r.labels[centre], draw_grid, sitk.sitkUInt8)
    vertebra_values = np.isin(r.labels[centre], list(VERTEBRA_LABELS.values()))
    labels = _image(np.where(vertebra_values, r.labels[centre], 0), draw_grid, sitk.sitkUInt8)
    tissue = _image(r.tissue[centre], draw_grid, sitk.sitkUInt8)
    image = _image(np.rint(img).astype(np.int16) if modality == "ct" else img.astype(np.float32), draw_grid,
                   sitk.sitkInt16 if modality == "ct" else sitk.sitkFloat32)
    records, points = _records(anatomy, labels if not options.render_full_spine else _crop(labels, offset, grid), grid)
    metadata = {
        "seed": int(seed), "modality": modality, "view": view, "orientation": orientation,
        "spacing": list(grid.spacing), "size": list(draw_grid.size), "s_range_mm": [float(x) for x in s_range],
        "slice_subsamples": n_sub, "transitional": {k: anatomy.variants[k] for k in
                                                   ("thoracic_count", "lumbar_count", "lstv")},
        "scoliosis": bool(anatomy.variants.get("scoliosis")), "curvature_deg": anatomy.variants["curvature_deg"],
        "tissue_names": list(TISSUE_NAMES), "synthetic": True,
        "structure_names": {**{r.label: r.name for r in records}, **{v: k for k, v in PELVIS_LABELS.items()}},
    }
    if options.render_full_spine:
        metadata["fov_offset_ijk"], metadata["fov_size_ijk"] = list(offset), list(grid.size)
    return SpineCase(image, labels, tissue, records, points, metadata, structures)


def _crop(image: sitk.Image, offset, grid: Grid) -> sitk.Image:
    """The part of an enlarged image that covers the nominal grid (index offset, size)."""
    return sitk.RegionOfInterest(image, [int(n) for n in grid.size], [int(o) for o in offset])


# ----------------------------------------------------------------------------------------------
# label-map-driven synthesis


def _random_deformation(image: sitk.Image, rng) -> sitk.Transform:
    """Random affine (rotation, scale, shear) about the centre plus a smooth B-spline warp."""
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    affine = sitk.AffineTransform(3)
    affine.SetCenter(centre)
    angles = np.deg2rad(rng.uniform(-8, 8, 3))
    rotation = sitk.Euler3DTransform(centre, *angles).GetMatrix()
    matrix = np.array(rotation).reshape(3, 3) @ (np.diag(rng.uniform(0.9, 1.1, 3)) + rng.uniform(-0.04, 0.04, (3, 3)))
    affine.SetMatrix(matrix.ravel().tolist())
    affine.SetTranslation(rng.uniform(-5, 5, 3).tolist())
    bspline = sitk.BSplineTransformInitializer(image, [4, 4, 4])
    bspline.SetParameters(rng.normal(0, 2.5, len(bspline.GetParameters())).tolist())
    return sitk.CompositeTransform([affine, bspline])


def _tissue_from_vertebrae(lab: np.ndarray, spacing_kji, rng) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes around a vertebra mask: cortex/marrow, disc-like gaps between levels, random soft tissue."""
    bone = lab > 0
    tissue = np.full(lab.shape, rnd.SOFT, np.uint8)
    smooth = ndimage.gaussian_filter(rng.standard_normal(lab.shape).astype(np.float32), [6 / s for s in spacing_kji])
    smooth /= max(float(smooth.std()), 1e-6)
    tissue[smooth > 0.6] = rnd.FAT
    tissue[smooth < -0.4] = rnd.MUSCLE
    size = [max(3, int(round(8 / s)) | 1) for s in spacing_kji]
    hi = ndimage.maximum_filter(lab, size=size)
    lo = ndimage.minimum_filter(np.where(bone, lab, 255).astype(np.uint8), size=size)
    tissue[~bone & (lo < 255) & (hi > lo)] = rnd.DISC  # between two different vertebrae
    core = ndimage.binary_erosion(bone, iterations=1)
    tissue[bone] = rnd.CORTICAL
    tissue[core] = rnd.CANCELLOUS
    return tissue, np.ones(lab.shape, np.float32)


def synthesize_from_labels(label_image: sitk.Image, names: dict | None = None, seed: int = 0,
                           modality: str = "random") -> SpineCase:
    """Deform a real multi-label vertebra mask and synthesise an image of it with random contrast.

    ``names`` maps label values to vertebra names (VerSe values are assumed when None). Records
    mark a vertebra complete when its mask does not touch the image border (SPEC rule for real
    references); ``fraction_outside`` is None because the full vertebra is unknown.
    """
    _check_choice(modality, MODALITIES, "modality")
    if label_image.GetDimension() != 3:
        raise InputError("The label map must be a 3D image.")
    rng = np.random.default_rng(seed)
    if modality == "random":
        modality = str(rng.choice(MODALITIES))
    source = sitk.Cast(label_image, sitk.sitkUInt8)
    if not np.any(sitk.GetArrayViewFromImage(source)):
        raise InputError("The label map holds no vertebra (all voxels are 0); give a multi-label vertebra mask.")
    warped = sitk.Resample(source, source, _random_deformation(source, rng), sitk.sitkNearestNeighbor, 0)
    lab = sitk.GetArrayFromImage(warped)
    spacing_kji = warped.GetSpacing()[::-1]
    tissue, modifier = _tissue_from_vertebrae(lab, spacing_kji, rng)
    bias = ndimage.zoom(rng.standard_normal((4, 4, 4)).astype(np.float32),
                        [n / 4 for n in lab.shape], order=1)[:lab.shape[0], :lab.shape[1], :lab.shape[2]]
    bias = np.pad(bias, [(0, n - b) for n, b in zip(lab.shape, bias.shape)], mode="edge")
    img = _contrast(tissue, modifier, np.zeros(lab.shape, np.float32), bias / max(np.abs(bias).max(), 1e-6),
                    warped.GetSpacing(), 1, modality, rng)
    image = sitk.GetImageFromArray(np.rint(img).astype(np.int16) if modality == "ct" else img.astype(np.float32))
    image.CopyInformation(warped)
    tissue_image = sitk.GetImageFromArray(tissue)
    tissue_image.CopyInformation(warped)
    names = names or {}
    border = np.zeros(lab.shape, bool)
    for axis in range(3):
        border[(slice(None),) * axis + (0,)] = border[(slice(None),) * axis + (-1,)] = True
    touching = set(np.unique(lab[border]).tolist())
    records, points = [], []
    for value, (centroid, volume) in sorted(_label_stats(warped).items()):
        name = names.get(value, vertebra_name(value))
        records.append(VertebraRecord(name, value, tuple(map(float, centroid)), tuple(map(float, centroid)), volume,
                                      value not in touching, None))
        points.append(LabelledPoint(name, tuple(map(float, centroid))))
    metadata = {"seed": int(seed), "modality": modality, "view": "from_labels", "spacing": list(warped.GetSpacing()),
                "tissue_names": list(TISSUE_NAMES), "synthetic": True}
    return SpineCase(image, warped, tissue_image, records, points, metadata)


# ----------------------------------------------------------------------------------------------
# training data


class SyntheticSpineDataset:
    """Map-style dataset (torch / MONAI compatible) of synthetic spines; item ``i`` uses seed ``base_seed + i``.

    Items are dicts: ``image`` float32 and ``label`` int16 arrays, channel first, spatial axes in
    (i, j, k) order like MONAI's image readers, ``affine`` (4x4 IJK-to-RAS), ``points`` (N, 3) RAS,
    ``point_labels`` (N,) VerSe values, ``complete`` (M,) flags of the ``record_labels`` (M,).
    """

    def __init__(self, length: int, base_seed: int = 0, options: SpineOptions | None = None, **generate_kwargs):
        if length < 1:
            raise InputError("A synthetic dataset needs at least one case; give length >= 1.")
        self.length, self.base_seed, self.options, self.kwargs = int(length), int(base_seed), options, generate_kwargs

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        case = generate_spine(self.base_seed + int(index), options=self.options, **self.kwargs)
        ijk = lambda im: np.transpose(sitk.GetArrayFromImage(im))[None]  # noqa: E731  [k,j,i] -> [1,i,j,k]
        return {
            "image": ijk(case.image).astype(np.float32),
            "label": ijk(case.labels).astype(np.int16),
            "affine": geometry.ijk_to_ras_matrix(case.image).astype(np.float32),
            "points": np.array([p.ras for p in case.points], np.float32).reshape(-1, 3),
            "point_labels": np.array([VERTEBRA_LABELS[p.label] for p in case.points], np.int64),
            "record_labels": np.array([r.label for r in case.vertebrae], np.int64),
            "complete": np.array([r.complete for r in case.vertebrae], bool),
            "seed": self.base_seed + int(index),
        }


def sort_craniocaudal(records: list[VertebraRecord]) -> list[VertebraRecord]:
    """Records in anatomical order (C1 first; T13 / L6 between their neighbours)."""
    return sorted(records, key=lambda r: vertebra_index(r.name))
