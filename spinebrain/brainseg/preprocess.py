"""BrainSeg preprocessing steps beyond the brain mask: intensity normalisation and extra sequences on one grid.

Normalisation (``--normalise``), applied within the brain mask (the network never sees the rest):

* ``zscore`` (default): (x - mean) / sd over the mask, as every training image is normalised
  (:func:`zscore_in_mask`, which the synthesis uses), so it is the one that matches the models.
* ``nyul``: Nyúl & Udupa's piecewise-linear histogram standardisation. Its standard scale is
  usually learned from a training set of real scans; ours are synthetic, so the standard scale is
  fixed here to the landmarks of a standard normal distribution (:data:`NYUL_PERCENTILES` mapped to
  the normal quantiles). The result has the z-score's scale but a histogram shape that no longer
  depends on outliers or skewed tails (bright lesions, a heavy CSF tail). Hand-written: neither
  SimpleITK nor MONAI has Nyúl's landmark mapping.

Extra sequences (FLAIR, T2, ... beside the reference) are brought onto the reference's grid:

* same grid: used as they are;
* another grid, ``register`` on (default): rigid registration (SimpleITK ``Euler3DTransform``,
  Mattes mutual information, centre-of-mass initialisation, 3 resolution levels), then linear
  resampling onto the reference grid;
* another grid, ``register`` off: resampled by their world coordinates alone (scans of one session
  in scanner coordinates are already aligned) -- but only when the two overlap in space, else the
  sequences are refused as unregistered.

Scans that still do not match after this (little brain overlap, or a mutual information of
intensities inside the brain far below what two sequences of one head give) are refused as belonging to
different patients or unregistered: :func:`check_same_head`.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

NORMALISATIONS = ("zscore", "nyul")
NYUL_PERCENTILES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
MIN_OVERLAP = 0.5  # of the smaller foreground, for scans resampled by world coordinates alone
MIN_NMI = 1.05  # normalised mutual information of two sequences inside one brain (see check_same_head)


def zscore_in_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(image - mean) / sd over the mask's voxels, applied to every voxel (float32)."""
    inside = image[mask] if mask.any() else image.ravel()
    mean, sd = float(inside.mean()), float(inside.std())
    return ((image - mean) / max(sd, 1e-6)).astype(np.float32)


def normalise(array: np.ndarray, mask: np.ndarray, method: str = "zscore") -> np.ndarray:
    """``array`` (any shape) normalised within ``mask`` by ``method`` (:data:`NORMALISATIONS`), float32."""
    if method == "zscore":
        return zscore_in_mask(array, mask)
    if method == "nyul":
        return nyul_standardise(array, mask)
    raise InputError(f"Unknown normalisation {method!r}; use {' or '.join(NORMALISATIONS)}.")


def nyul_standardise(array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Piecewise-linear map of the mask's percentile landmarks onto the standard normal's quantiles."""
    from statistics import NormalDist

    inside = array[mask] if mask.any() else array.ravel()
    landmarks = np.percentile(inside, NYUL_PERCENTILES).astype(np.float64)
    standard = np.array([NormalDist().inv_cdf(p / 100.0) for p in NYUL_PERCENTILES])
    landmarks = np.maximum.accumulate(landmarks + np.arange(len(landmarks)) * 1e-6)  # strictly increasing
    # inside the landmarks: linear between them; outside: the slope of the outer segments continues
    result = np.interp(array, landmarks, standard)
    low_slope = (standard[1] - standard[0]) / max(landmarks[1] - landmarks[0], 1e-6)
    high_slope = (standard[-1] - standard[-2]) / max(landmarks[-1] - landmarks[-2], 1e-6)
    below, above = array < landmarks[0], array > landmarks[-1]
    result[below] = standard[0] + (array[below] - landmarks[0]) * low_slope
    result[above] = standard[-1] + (array[above] - landmarks[-1]) * high_slope
    return result.astype(np.float32)


def on_reference_grid(moving: sitk.Image, reference: sitk.Image, register: bool, name: str,
                      reference_name: str) -> sitk.Image:
    """``moving`` on ``reference``'s grid, registered rigidly first when ``register`` (see the module docstring)."""
    from ..geometry import same_grid
    from ..resample import resample_like

    if moving.GetDimension() != 3:
        raise InputError(f"The {name} is not a 3D volume; give the 3D scan.")
    if same_grid(moving, reference):
        return sitk.Cast(moving, sitk.sitkFloat32)
    if register:
        transform = rigid_registration(reference, moving)
        return sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), reference, transform, sitk.sitkLinear, 0.0,
                             sitk.sitkFloat32)
    if _world_overlap(moving, reference) < MIN_OVERLAP:
        raise InputError(f"The {name} does not lie where the {reference_name} lies and is not on its grid; turn "
                         "registration on, or give sequences registered to each other.")
    return sitk.Cast(resample_like(moving, reference, default_value=0.0), sitk.sitkFloat32)


def rigid_registration(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """Rigid (6 degrees of freedom) transform mapping ``fixed`` points into ``moving`` (Mattes MI, 3 levels)."""
    fixed_f, moving_f = sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(fixed_f, moving_f, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.05, seed=1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=100,
                                                    relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed_f, moving_f)


def _world_overlap(a: sitk.Image, b: sitk.Image) -> float:
    """Fraction of the smaller image's world bounding box that lies inside the other's."""
    def box(image):
        corners = [image.TransformContinuousIndexToPhysicalPoint([c * (n - 1) for c, n in zip(corner, image.GetSize())])
                   for corner in np.ndindex(2, 2, 2)]
        return np.min(corners, 0), np.max(corners, 0)

    (alo, ahi), (blo, bhi) = box(a), box(b)
    common = np.prod(np.clip(np.minimum(ahi, bhi) - np.maximum(alo, blo), 0, None))
    smaller = min(np.prod(ahi - alo), np.prod(bhi - blo))
    return float(common / smaller) if smaller > 0 else 0.0


def check_same_head(reference: sitk.Image, other: sitk.Image, brain: sitk.Image, name: str,
                    reference_name: str) -> None:
    """Refuse ``other`` (on the reference grid) when it does not show the reference's head at the same place.

    Two sequences of one head share the anatomy, so inside the brain each tells much about the other:
    their normalised mutual information (NMI, (H(a) + H(b)) / H(a, b), 32 bins) was 1.08-1.11 for
    the T1 / T2 / FLAIR of B2 and 1.16-1.20 for a generated brain's, but 1.00-1.01 for B2's FLAIR
    against another patient's scan, even after rigid registration (B5, B6), and 1.03 for two
    generated brains. Below :data:`MIN_NMI` the sequences are refused.
    """
    inside = sitk.GetArrayViewFromImage(brain).astype(bool)
    a = sitk.GetArrayViewFromImage(reference)[inside].astype(np.float64)
    b = sitk.GetArrayViewFromImage(other)[inside].astype(np.float64)
    if a.size < 100 or np.mean(b != 0) < MIN_OVERLAP:
        raise InputError(f"The {name} hardly covers the brain of the {reference_name}; give sequences of the same "
                         "patient and session, registered (or turn registration on).")
    value = normalised_mutual_information(a, b)
    if value < MIN_NMI:
        raise InputError(f"The {name} does not match the anatomy of the {reference_name} (normalised mutual "
                         f"information {value:.3f} inside the brain); give sequences of the same patient, registered "
                         "to each other (or turn registration on).")


def normalised_mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """(H(a) + H(b)) / H(a, b) of two samples (1: independent, 2: one determines the other)."""
    joint, _, _ = np.histogram2d(a, b, bins=bins)
    p = joint / max(joint.sum(), 1.0)

    def entropy(q):
        q = q[q > 0]
        return float(-np.sum(q * np.log(q)))

    together = entropy(p.ravel())
    return (entropy(p.sum(1)) + entropy(p.sum(0))) / together if together > 0 else 1.0
