"""Intensity preprocessing: N4 bias-field correction, normalisation, windowing, Nyúl standardisation.

Every function takes and returns a SimpleITK image and keeps its geometry (spacing, origin,
direction); results are float32. A ``mask`` (any integer image on the same grid, non-zero =
inside) restricts where statistics are measured; the whole image is always transformed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .geometry import same_grid

#: Nyúl landmarks: the 1st and 99th percentiles bound the range, the deciles shape the histogram.
DEFAULT_NYUL_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)


# --------------------------------------------------------------------------------------------
# helpers


def _float_array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).astype(np.float32, copy=False)


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """float32 image from a [k, j, i] array on the grid of ``reference``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.CopyInformation(reference)
    return image


def _mask_array(image: sitk.Image, mask: sitk.Image | None) -> np.ndarray | None:
    """Boolean [k, j, i] array of ``mask`` (None when no mask), checked to be on the image grid."""
    if mask is None:
        return None
    if not same_grid(image, mask):
        raise InputError(
            "The mask is on a different grid than the image; resample it onto the image "
            "(nearest neighbour) and run again."
        )
    inside = sitk.GetArrayViewFromImage(mask) != 0
    if not inside.any():
        raise InputError("The mask is empty (no non-zero voxel); give a mask that covers the anatomy.")
    return inside


def _values(image: sitk.Image, mask: sitk.Image | None) -> np.ndarray:
    """The voxel values statistics are taken from: inside the mask, or all of them."""
    inside = _mask_array(image, mask)
    array = sitk.GetArrayViewFromImage(image)
    return (array[inside] if inside is not None else array.ravel()).astype(np.float64)


# --------------------------------------------------------------------------------------------
# bias field


def n4_bias_correction(
    image: sitk.Image,
    mask: sitk.Image | None = None,
    shrink_factor: int = 4,
    iterations: Sequence[int] = (50, 50, 30),
) -> sitk.Image:
    """Remove a smooth multiplicative intensity bias (MR coil shading) with N4.

    N4 runs on a copy shrunk by ``shrink_factor`` (fast: the field is smooth), one fitting
    level per entry of ``iterations``; the fitted field is then evaluated on the full grid and
    divided out. Without a mask, N4 fits on the Otsu foreground. Only positive voxels are used
    (the field is fitted in log space).
    """
    image_f = sitk.Cast(image, sitk.sitkFloat32)
    inside = _mask_array(image, mask)
    if inside is None:
        inside = sitk.GetArrayFromImage(sitk.OtsuThreshold(image_f, 0, 1, 200)) != 0  # a view would outlive the image
    inside = inside & (sitk.GetArrayViewFromImage(image_f) > 0)
    if not inside.any():
        raise InputError(
            "N4 bias correction found no positive voxels inside the mask; check the mask, or turn "
            "bias correction off for this scan."
        )
    fit_mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    fit_mask.CopyInformation(image)

    # Shrink less along short axes so each keeps a few voxels for the B-spline fit.
    shrink = [max(1, min(int(shrink_factor), n // 8)) for n in image.GetSize()]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in iterations])
    corrector.Execute(sitk.Shrink(image_f, shrink), sitk.Shrink(fit_mask, shrink))
    log_field = corrector.GetLogBiasFieldAsImage(image_f)
    corrected = sitk.Cast(image_f / sitk.Exp(sitk.Cast(log_field, sitk.sitkFloat32)), sitk.sitkFloat32)
    corrected.CopyInformation(image)
    return corrected


# --------------------------------------------------------------------------------------------
# simple normalisations


def zscore(image: sitk.Image, mask: sitk.Image | None = None) -> sitk.Image:
    """(x - mean) / sd with mean and sd measured inside ``mask`` (or over the whole image).

    A constant region (sd 0) gives all zeros rather than dividing by zero.
    """
    values = _values(image, mask)
    mean, sd = values.mean(), values.std()
    array = _float_array(image) - np.float32(mean)
    return _like(array / np.float32(sd) if sd > 0 else array * 0, image)


def clip_window(image: sitk.Image, low: float, high: float) -> sitk.Image:
    """Clip intensities to [low, high] (e.g. a CT window in HU)."""
    if not low < high:
        raise ValueError(f"window low {low} must be below high {high}")
    return _like(np.clip(_float_array(image), low, high), image)


def window(image: sitk.Image, center: float, width: float) -> sitk.Image:
    """Clip to the window ``center`` ± ``width`` / 2 (radiology's level/width)."""
    return clip_window(image, center - width / 2.0, center + width / 2.0)


def clip_percentiles(
    image: sitk.Image, low: float = 0.5, high: float = 99.5, mask: sitk.Image | None = None
) -> sitk.Image:
    """Clip to the ``low`` and ``high`` percentiles measured inside ``mask`` (outliers, hot spots)."""
    low_value, high_value = np.percentile(_values(image, mask), [low, high])
    return _like(np.clip(_float_array(image), low_value, high_value), image)


def minmax(image: sitk.Image, mask: sitk.Image | None = None) -> sitk.Image:
    """Rescale linearly so the minimum (inside ``mask``) becomes 0 and the maximum 1.

    A constant image gives all zeros (an empty slice in slice-wise work is not an error).
    """
    values = _values(image, mask)
    low, span = values.min(), values.max() - values.min()
    array = _float_array(image) - np.float32(low)
    return _like(array / np.float32(span) if span > 0 else array * 0, image)


# --------------------------------------------------------------------------------------------
# Nyúl histogram standardisation
#
# Written here (about 60 lines) because MONAI has no Nyúl transform and torchio, which has one,
# would be a large dependency for it. Method: Nyúl, Udupa & Zhang, IEEE TMI 19(2), 2000.


class NyulStandardizer:
    """Piecewise-linear histogram standardisation (Nyúl & Udupa) learnt from training images.

    ``fit`` measures the ``percentiles`` of each training image (inside its mask, or its
    foreground -- voxels above the image mean -- when no mask is given), maps each image's
    first-to-last landmark range linearly onto ``standard_range`` and averages the landmarks:
    those are the standard landmarks. ``transform`` maps a new image's landmarks onto the
    standard ones, linearly between landmarks and beyond the ends. Store it in a model card
    with :meth:`to_dict`; rebuild it with :meth:`from_dict`.
    """

    def __init__(
        self,
        percentiles: Sequence[float] = DEFAULT_NYUL_PERCENTILES,
        standard_range: tuple[float, float] = (0.0, 100.0),
        standard_landmarks: Sequence[float] | None = None,
    ):
        self.percentiles = tuple(float(p) for p in percentiles)
        if len(self.percentiles) < 2 or list(self.percentiles) != sorted(set(self.percentiles)):
            raise ValueError(f"percentiles must be at least two increasing values, got {self.percentiles}")
        self.standard_range = (float(standard_range[0]), float(standard_range[1]))
        self.standard_landmarks = None if standard_landmarks is None else np.asarray(standard_landmarks, float)

    # -- learning ----------------------------------------------------------------------------

    def landmarks(self, image: sitk.Image, mask: sitk.Image | None = None) -> np.ndarray:
        """The image's intensity at each percentile, inside the mask or its foreground."""
        if mask is None:
            values = sitk.GetArrayViewFromImage(image).astype(np.float64)
            values = values[values > values.mean()]
        else:
            values = _values(image, mask)
        return _strictly_increasing(np.percentile(values, self.percentiles))

    def fit(self, images: Iterable[sitk.Image], masks: Iterable[sitk.Image | None] | None = None):
        """Learn the standard landmarks from training images (and their masks); returns self."""
        images = list(images)
        if not images:
            raise InputError("Nyúl standardisation needs at least one training image.")
        masks = [None] * len(images) if masks is None else list(masks)
        low, high = self.standard_range
        scaled = []
        for image, mask in zip(images, masks, strict=True):
            marks = self.landmarks(image, mask)
            scaled.append(low + (marks - marks[0]) / (marks[-1] - marks[0]) * (high - low))
        self.standard_landmarks = np.mean(scaled, axis=0)
        return self

    # -- applying ----------------------------------------------------------------------------

    def transform(self, image: sitk.Image, mask: sitk.Image | None = None) -> sitk.Image:
        """Map ``image`` onto the standard scale (float32, same grid)."""
        if self.standard_landmarks is None:
            raise RuntimeError("NyulStandardizer.transform called before fit (or from_dict)")
        source = self.landmarks(image, mask)
        mapped = _piecewise_linear(_float_array(image), source, self.standard_landmarks)
        return _like(mapped, image)

    # -- storing -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        if self.standard_landmarks is None:
            raise RuntimeError("fit the NyulStandardizer before storing it")
        return {
            "method": "nyul",
            "percentiles": list(self.percentiles),
            "standard_range": list(self.standard_range),
            "standard_landmarks": [float(v) for v in self.standard_landmarks],
        }

    @classmethod
    def from_dict(cls, data: dict) -> NyulStandardizer:
        if data.get("method") != "nyul" or len(data["standard_landmarks"]) != len(data["percentiles"]):
            raise InputError(
                "The stored intensity standardisation is not a valid Nyúl landmark set; re-export the model card."
            )
        return cls(data["percentiles"], tuple(data["standard_range"]), data["standard_landmarks"])


def _strictly_increasing(values: np.ndarray) -> np.ndarray:
    """Nudge tied landmarks (flat histograms, e.g. many zeros) apart so interpolation is defined."""
    values = np.asarray(values, dtype=np.float64).copy()
    step = max(abs(values[-1] - values[0]), 1.0) * 1e-6
    for index in range(1, len(values)):
        values[index] = max(values[index], values[index - 1] + step)
    return values


def _piecewise_linear(array: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """np.interp between landmarks, continued with the end segments' slopes outside them."""
    mapped = np.interp(array, source, target)
    below, above = array < source[0], array > source[-1]
    low_slope = (target[1] - target[0]) / (source[1] - source[0])
    high_slope = (target[-1] - target[-2]) / (source[-1] - source[-2])
    mapped[below] = target[0] + (array[below] - source[0]) * low_slope
    mapped[above] = target[-1] + (array[above] - source[-1]) * high_slope
    return mapped.astype(np.float32)
