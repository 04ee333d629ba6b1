"""Bringing scans onto a model's grid and intensity scale, exactly as its model card says.

One function for training and inference alike (:mod:`spinebrain.training.datalist` loads cases
through it), so a network never sees differently prepared data at run time than it was trained on.

The card's ``normalisation`` is one JSON object for every channel, or ``{"channels": [..]}`` with
one object per input channel:

* ``{"method": "window", "center": 40, "width": 400}`` (or ``"low"``/``"high"``): a CT window in
  HU, clipped and scaled to [0, 1];
* ``{"method": "percentile", "low": 0.5, "high": 99.5}``: clipped to two percentiles, scaled to [0, 1];
* ``{"method": "zscore"}`` (``"nonzero": true`` measures mean and sd over non-zero voxels only);
* ``{"method": "nyul", ...}``: the Nyúl landmarks :meth:`~spinebrain.preprocess.NyulStandardizer.to_dict` wrote;
* ``{"method": "none"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from .. import preprocess
from ..errors import InputError
from ..geometry import same_grid
from ..resample import resample_like, resample_to_spacing

METHODS = ("window", "percentile", "zscore", "nyul", "none")


def channel_specs(normalisation: dict[str, Any], channels: int) -> list[dict[str, Any]]:
    """One normalisation spec per input channel (a single spec serves every channel)."""
    specs = normalisation.get("channels", [normalisation] * channels)
    if not isinstance(specs, list) or len(specs) != channels:
        raise InputError(
            f"The model card gives {len(specs) if isinstance(specs, list) else 'no list of'} normalisation(s) "
            f"for {channels} input channel(s); give one spec, or one per channel under 'channels'."
        )
    for spec in specs:
        method = spec.get("method") if isinstance(spec, dict) else None
        if method not in METHODS:
            raise InputError(f"The model card's normalisation method {method!r} is unknown; use one of {', '.join(METHODS)}.")
    return specs


def normalise(image: sitk.Image, spec: dict[str, Any]) -> np.ndarray:
    """The normalised voxels of ``image`` as a writable float32 array in (k, j, i) order (SimpleITK's)."""
    method = spec["method"]
    if method == "window":
        # in place on one float32 copy: preprocess.clip_window's image-to-image steps would hold three
        # more full-size copies, about 2 GB on a 512x512x600 CT (same arithmetic, see its docstring)
        low, high = _window_bounds(spec)
        array = sitk.GetArrayViewFromImage(image).astype(np.float32)
        np.clip(array, low, high, out=array)
        return _scale_in_place(array, low, high)
    if method == "percentile":
        clipped = preprocess.clip_percentiles(image, float(spec.get("low", 0.5)), float(spec.get("high", 99.5)))
        return sitk.GetArrayFromImage(preprocess.minmax(clipped))
    if method == "zscore":
        mask = sitk.Cast(image != 0, sitk.sitkUInt8) if spec.get("nonzero") else None
        return sitk.GetArrayFromImage(preprocess.zscore(image, mask))
    if method == "nyul":
        return sitk.GetArrayFromImage(preprocess.NyulStandardizer.from_dict(spec).transform(image))
    return sitk.GetArrayFromImage(image).astype(np.float32, copy=False)


def _window_bounds(spec: dict[str, Any]) -> tuple[float, float]:
    if "center" in spec and "width" in spec:
        centre, width = float(spec["center"]), float(spec["width"])
        return centre - width / 2.0, centre + width / 2.0
    if "low" in spec and "high" in spec:
        return float(spec["low"]), float(spec["high"])
    raise InputError("The model card's window normalisation needs 'center' and 'width' (or 'low' and 'high') in HU.")


def _scale_in_place(array: np.ndarray, low: float, high: float) -> np.ndarray:
    array -= np.float32(low)
    array /= np.float32(high - low)
    return array


def to_model_grid(image: sitk.Image, spacing: Sequence[float], is_label: bool = False) -> sitk.Image:
    """``image`` resampled to the card's spacing over the same extent (origin and direction kept).

    Returned unchanged when its spacing already matches, so no interpolation touches such scans.
    """
    if np.allclose(image.GetSpacing(), spacing, rtol=0, atol=1e-6):
        return image
    return resample_to_spacing(image, spacing, is_label=is_label)


def prepare_channels(image: sitk.Image, spacing: Sequence[float], normalisation: dict[str, Any],
                     extra_channels: Sequence[sitk.Image] = ()) -> tuple[sitk.Image, np.ndarray]:
    """(the model grid, the network input as float32 (channels, i, j, k)).

    ``image`` is resampled to ``spacing``; each of ``extra_channels`` (e.g. FLAIR beside T1) is
    brought onto that same grid (linear interpolation, whatever its own grid), then every channel
    is normalised by its spec. The returned grid image carries the geometry only (its voxels are the
    resampled first channel); the array's axes are (i, j, k) like the card's spacing and patch size
    and like MONAI's image loaders.
    """
    grid = to_model_grid(image, spacing)
    channels = [grid] + [channel if same_grid(channel, grid) else resample_like(channel, grid, default_value=0.0)
                         for channel in extra_channels]
    specs = channel_specs(normalisation, len(channels))
    if len(channels) == 1:
        array = normalise(grid, specs[0])[None]
    else:
        array = np.stack([normalise(channel, spec) for channel, spec in zip(channels, specs)])
    return grid, array.transpose(0, 3, 2, 1)  # (c, k, j, i) -> (c, i, j, k), a view
