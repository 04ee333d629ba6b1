"""MONAI-style datalists and loading their cases onto a model's grid.

A datalist is a JSON file like the Medical Segmentation Decathlon's::

    {"training":   [{"image": "img/a.nii.gz", "label": "lab/a.nii.gz"}, ...],
     "validation": [{"image": ["t1/b.nii.gz", "flair/b.nii.gz"], "label": "lab/b.nii.gz"}, ...]}

Paths are relative to the file's folder (or absolute); ``image`` may list several channels.
Without ``validation`` a seeded share of ``training`` is held out. :class:`LoadCased` reads a case
through :func:`spinebrain.inference.prepare_channels`, the very code inference runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monai.data import load_decathlon_datalist
from monai.transforms import MapTransform

from ..errors import InputError
from ..geometry import same_grid
from ..inference.prepare import prepare_channels
from ..io import load_volume, read_image
from ..resample import resample_like


def read_datalist(path: str | Path, key: str = "training") -> list[dict[str, Any]]:
    """The cases under ``key`` with absolute paths; InputError when the file, key or a listed file is missing."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The datalist {path} does not exist; give a JSON file with a 'training' list.")
    try:
        cases = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=key, base_dir=str(path.parent))
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise InputError(f"The datalist {path} cannot be used ({error}); it needs a {key!r} list of "
                         "{'image': ..., 'label': ...} entries.") from None
    for number, case in enumerate(cases):
        if "image" not in case or "label" not in case:
            raise InputError(f"Entry {number + 1} of {key!r} in {path} lacks 'image' or 'label'; give both paths.")
        for file in _paths(case["image"]) + _paths(case["label"]):
            if not Path(file).is_file():
                raise InputError(f"The datalist {path} lists {file}, which does not exist; fix the path.")
    return cases


def has_key(path: str | Path, key: str) -> bool:
    try:
        return key in json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False


def split_datalist(path: str | Path, validation_fraction: float = 0.2, seed: int = 0):
    """(training cases, validation cases): the file's ``validation`` list, else a seeded share of ``training``."""
    training = read_datalist(path, "training")
    if has_key(path, "validation"):
        return training, read_datalist(path, "validation")
    if len(training) < 2:
        raise InputError(f"The datalist {path} has {len(training)} case(s); give at least 2 (one to validate on).")
    order = np.random.default_rng(seed).permutation(len(training))
    held = max(1, int(round(validation_fraction * len(training))))
    return [training[i] for i in sorted(order[held:])], [training[i] for i in sorted(order[:held])]


def summarise(path: str | Path, training: Sequence[dict], validation: Sequence[dict]) -> str:
    """One line for the model card: where the data is, how many cases, and a fingerprint of the list."""
    listed = json.dumps([_relative(c, Path(path).parent) for c in (*training, *validation)], sort_keys=True)
    fingerprint = hashlib.sha256(listed.encode()).hexdigest()[:16]
    return (f"datalist {Path(path).name}: {len(training)} training and {len(validation)} validation cases "
            f"(file list sha256 {fingerprint}...)")


def _paths(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _relative(case: dict, base: Path) -> dict:
    def relative(file: str) -> str:
        try:
            return str(Path(file).relative_to(base))
        except ValueError:
            return str(file)

    return {key: [relative(f) for f in _paths(case[key])] for key in ("image", "label")}


class LoadCased(MapTransform):
    """Read ``image`` (one path or one per channel) and ``label``, resample onto the model grid, normalise.

    Gives ``image`` (channels, i, j, k) float32 and ``label`` (1, i, j, k) int16, the layout the
    inference block feeds the network. The label is resampled by nearest neighbour onto the image's
    model grid, so the two always align voxel for voxel.
    """

    def __init__(self, spacing: Sequence[float], normalisation: dict, image_key: str = "image", label_key: str = "label"):
        super().__init__([image_key, label_key])
        self.spacing, self.normalisation = list(spacing), normalisation
        self.image_key, self.label_key = image_key, label_key

    def __call__(self, data: dict) -> dict:
        case = dict(data)
        files = _paths(case[self.image_key])
        images = [load_volume(file, name="training image") for file in files]
        grid, array = prepare_channels(images[0], self.spacing, self.normalisation, images[1:])
        label = read_image(case[self.label_key])
        label = label if same_grid(label, grid) else resample_like(label, grid, is_label=True)
        label_array = sitk.GetArrayFromImage(label).astype(np.int16).transpose(2, 1, 0)[None]
        case[self.image_key] = np.ascontiguousarray(array)
        case[self.label_key] = np.ascontiguousarray(label_array)
        return case
