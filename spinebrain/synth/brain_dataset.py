"""Generated brains as a torch ``Dataset`` for training BrainSeg (the generator is :mod:`.brain`).

Kept apart from the generator so that generating a case (the phantom command, Slicer's sample
data, the realism report) does not import torch.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from torch.utils.data import Dataset

from spinebrain.errors import InputError
from spinebrain.synth.brain import LESION_KINDS, BrainOptions, _check_contrasts, _check_spacing, generate_brain


class SyntheticBrainDataset(Dataset):
    """An endless-looking stream of generated cases for training (torch ``Dataset``).

    Item ``i`` is always the same case (its seed derives from ``seed`` and ``i``), so DataLoader
    workers need no shared state. ``lesions`` may be a sequence of kinds to draw from per item.
    Each item is a dict of tensors in ``[channel, k, j, i]`` order: ``image`` (one channel per
    contrast, float32, z-scored inside the brain when ``normalize``), ``tissue``, ``lesions``
    and ``brain_mask`` (int64, one channel), plus the int ``seed``. ``crop`` (k, j, i voxels)
    takes a random patch that contains brain, padding with zeros where the grid is smaller.
    """

    def __init__(self, length: int, seed: int = 0, contrasts=("t1",), lesions=None, skull: bool = False,
                 spacing=2.0, options: BrainOptions = BrainOptions(), crop=None, normalize: bool = True):
        if length < 1:
            raise InputError(f"Dataset length must be at least 1, not {length}.")
        kinds = lesions if isinstance(lesions, (list, tuple)) else (lesions,)
        for kind in kinds:
            if kind not in LESION_KINDS:
                raise InputError(f"Unknown lesion kind {kind!r}: use None, 'ms' or 'tumour'.")
        self.length, self.seed, self.kinds = int(length), int(seed), tuple(kinds)
        self.contrasts = _check_contrasts(contrasts)
        _check_spacing(spacing)
        self.skull, self.spacing, self.options, self.normalize = skull, spacing, options, normalize
        self.crop = None if crop is None else tuple(int(c) for c in crop)

    def __len__(self) -> int:
        return self.length

    def seed_for(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, int(index)]).generate_state(1)[0])

    def __getitem__(self, index: int) -> dict:
        import torch

        if not 0 <= index < self.length:
            raise IndexError(index)
        seed = self.seed_for(index)
        rng = np.random.default_rng([seed, 1])  # item-level choices, independent of the anatomy
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        case = generate_brain(seed, self.contrasts, kind, self.skull, self.spacing, self.options)
        mask = sitk.GetArrayFromImage(case.brain_mask)
        image = np.stack([sitk.GetArrayFromImage(case.images[c]) for c in self.contrasts])
        if self.normalize:
            inside = image[:, mask > 0]
            image = (image - inside.mean(axis=1)[:, None, None, None]) / (inside.std(axis=1)[:, None, None, None] + 1e-6)
            if not self.skull:
                image *= mask  # keep the background at exactly 0, as in skull-stripped scans
        arrays = {"image": image.astype(np.float32), "tissue": sitk.GetArrayFromImage(case.tissue)[None],
                  "lesions": sitk.GetArrayFromImage(case.lesions)[None], "brain_mask": mask[None]}
        if self.crop is not None:
            arrays = _random_crop(rng, arrays, self.crop)
        item = {key: torch.from_numpy(np.ascontiguousarray(value if key == "image" else value.astype(np.int64)))
                for key, value in arrays.items()}
        item["seed"] = seed
        return item


def _random_crop(rng, arrays: dict, size) -> dict:
    """Same random patch of every array, centred on a random brain voxel (zero-padded)."""
    shape = arrays["brain_mask"].shape[1:]
    pad = [(0, 0)] + [(max(0, (n - s + 1) // 2), max(0, (n - s) // 2)) for n, s in zip(size, shape)]
    arrays = {key: np.pad(value, pad) for key, value in arrays.items()}
    shape = arrays["brain_mask"].shape[1:]
    brain = np.argwhere(arrays["brain_mask"][0] > 0)
    centre = brain[rng.integers(len(brain))] if len(brain) else np.array(shape) // 2
    start = [int(np.clip(c - n // 2, 0, s - n)) for c, n, s in zip(centre, size, shape)]
    box = (slice(None),) + tuple(slice(b, b + n) for b, n in zip(start, size))
    return {key: value[box] for key, value in arrays.items()}
