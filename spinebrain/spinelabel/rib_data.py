"""Training samples for the rib classifier (:mod:`.ribs`): planes through the bodies of generated spines.

Each generated scan (:func:`spinebrain.synth.spine.generate_spine`, random view, modality and storage)
gives one sample per whole vertebra from T6 (recipe "whole": C3) down to the last lumbar (recipe "whole_sacrum": S1):
its planes, sampled at the reference centre moved by up to ``jitter_mm`` (a detection is never exactly there), and
the answer "carries a rib" (a thoracic vertebra, T13 included; "is the sacrum" follows from the names).
Transitional counts are drawn far more often than in people (:data:`TRAINING_RATES`), so that nothing but the rib
itself tells T12 from L1. Recipe "label_maps" (:func:`label_map_samples`) teaches the sacrum answer on images
synthesised from vertebra maps alone, with and without S1.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..anatomy import VERTEBRA_LABELS
from .ribs import body_planes

#: Transitional counts while training the rib classifier (the generator's defaults: 6 %, 1 %, 5 %, 3 %).
TRAINING_RATES = {"rate_eleven_thoracic": 0.15, "rate_thirteen_thoracic": 0.1, "rate_six_lumbar": 0.15,
                  "rate_four_lumbar": 0.1}
MODALITIES = ("ct", "t1", "t2", "random")
#: Sample recipes: (views drawn, first level sampled, last level sampled). "thoracolumbar" made the lumbar default's
#: classifier (the last rib); "whole" adds necks and the cervicothoracic junction, so that C7 (no rib) and T1 (the
#: first rib) differ too; "whole_sacrum" adds S1, so that a second answer, "this is the sacrum", can be taught (the
#: sacral wings and the iliac bones beside them are what no lumbar vertebra shows).
_WHOLE_VIEWS = ("lumbar", "lumbar", "short", "whole", "whole", "thoracic", "thoracic", "cervical")
RECIPES = {"thoracolumbar": (("lumbar", "lumbar", "lumbar", "short", "whole", "thoracic"), "T6", "L6"),
           "whole": (_WHOLE_VIEWS, "C3", "L6"),
           "whole_sacrum": (_WHOLE_VIEWS, "C3", "S1")}


#: Recipe "label_maps": images synthesised from generated spines' vertebra maps alone, as CT is synthesised from
#: VerSe maps (no pelvis, no ribs), each map twice with the same deformation and contrast: whole, and with S1 taken
#: out, where the sample at S1's place is named :data:`NO_SACRUM` (no rib, not the sacrum). Without it the sacrum
#: answer knew S1 only in full anatomy and took the last vertebra of a map without a sacrum for it.
LABEL_MAP_VIEWS = ("lumbar", "whole")
LABEL_MAP_LEVELS = ("L3", "L4", "L5", "L6", "S1")
NO_SACRUM = "none"


def carries_rib(name: str) -> bool:
    return name.startswith("T")


def is_sacrum(name: str) -> bool:
    return name == "S1"


def scan_samples(seed: int, max_voxels: int = 1_500_000, jitter_mm: float = 3.0, recipe: str = "thoracolumbar"):
    """(planes (N, C, H, W) float16, answers (N,) uint8, names) of one generated scan."""
    from ..anatomy import vertebra_index
    from ..synth.spine import generate_spine
    from ..synth.spine_anatomy import SpineOptions

    views, first_level, last_level = RECIPES[recipe]
    rng = np.random.default_rng(seed)
    options = SpineOptions(max_voxels=max_voxels, **TRAINING_RATES)
    spine = generate_spine(seed, modality=str(rng.choice(MODALITIES)), view=str(rng.choice(views)),
                           orientation="random", options=options)
    partial = {r.name for r in spine.vertebrae if not r.complete}
    wanted = (vertebra_index(first_level), vertebra_index(last_level))
    points = sorted((p for p in spine.points if p.label[0] in "CTLS" and p.label not in partial
                     and wanted[0] <= vertebra_index(p.label) <= wanted[1]), key=lambda p: vertebra_index(p.label))
    if not points:
        return np.zeros((0,), np.float16), np.zeros((0,), np.uint8), []
    positions = np.array([p.ras for p in points], float) + rng.normal(0.0, jitter_mm / 2, (len(points), 3)).clip(
        -jitter_mm, jitter_mm)
    planes = body_planes(spine.image, positions).astype(np.float16)
    answers = np.array([carries_rib(p.label) for p in points], np.uint8)
    return planes, answers, [p.label for p in points]


def label_map_samples(seed: int, max_voxels: int = 1_500_000, jitter_mm: float = 3.0):
    """(planes, answers, names) of the recipe "label_maps": L3 down to S1 of one generated spine's map, then the
    same levels of the map without S1, S1's sample renamed :data:`NO_SACRUM`."""
    from ..synth.spine import generate_spine, synthesize_from_labels
    from ..synth.spine_anatomy import SpineOptions

    rng = np.random.default_rng(seed)
    options = SpineOptions(max_voxels=max_voxels, **TRAINING_RATES)
    spine = generate_spine(seed, view=str(rng.choice(LABEL_MAP_VIEWS)), orientation="random", options=options)
    # the records' body centres, moved by the deformation as their label's centroid moves
    offsets = {r.name: np.subtract(r.body_centre_ras, r.centroid_ras) for r in spine.vertebrae
               if r.complete and r.name in LABEL_MAP_LEVELS}
    if "S1" not in offsets:
        return np.zeros((0,), np.float16), np.zeros((0,), np.uint8), []
    modality = str(rng.choice(MODALITIES))
    whole = synthesize_from_labels(spine.labels, spine.label_names(), seed=seed, modality=modality)
    names = [r.name for r in whole.vertebrae if r.name in offsets]
    positions = np.array([np.add(r.centroid_ras, offsets[r.name]) for r in whole.vertebrae if r.name in offsets])
    positions += rng.normal(0.0, jitter_mm / 2, positions.shape).clip(-jitter_mm, jitter_mm)
    cut = sitk.ChangeLabel(spine.labels, changeMap={VERTEBRA_LABELS["S1"]: 0})
    without = synthesize_from_labels(cut, spine.label_names(), seed=seed, modality=modality)
    planes = np.concatenate([body_planes(whole.image, positions), body_planes(without.image, positions)])
    names = names + [NO_SACRUM if n == "S1" else n for n in names]
    return planes.astype(np.float16), np.array([carries_rib(n) for n in names], np.uint8), names


def build(first_seed: int, count: int, out_path: str, recipe: str = "thoracolumbar") -> None:
    """Samples of ``count`` scans from ``first_seed`` into one .npz (planes, answers, names, seeds)."""
    planes, answers, names, seeds = [], [], [], []
    for seed in range(first_seed, first_seed + count):
        p, a, n = label_map_samples(seed) if recipe == "label_maps" else scan_samples(seed, recipe=recipe)
        planes.append(p.reshape(-1, *p.shape[1:]) if len(n) else p)
        answers.append(a)
        names += n
        seeds += [seed] * len(n)
        print(f"scan {seed}: {len(n)} bodies", flush=True)
    kept = [p for p in planes if p.ndim == 4]
    np.savez(out_path, planes=np.concatenate(kept), answers=np.concatenate(answers), names=np.array(names),
             seeds=np.array(seeds))


if __name__ == "__main__":
    import sys

    build(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], *sys.argv[4:5])
