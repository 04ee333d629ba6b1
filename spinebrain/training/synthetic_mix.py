"""Generated cases mixed into a datalist run (the Training module's "synthetic ratio").

The project's generators draw scans with exact truth (:mod:`spinebrain.synth`); a user's label set is
their own, so a generated case is usable only when each of the user's labels is a structure the
generator draws. The match is by name: vertebra names (``L1`` ... or one label for all vertebrae) for
``spine-segment``, CSF / grey matter / white matter for ``brain-tissue``, one lesion label for
``brain-lesion``. Anything else is refused with the names the generator knows, before training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..protocol import Progress, as_progress

#: Names (lower case) of the generator's brain tissues, by its tissue value (spinebrain.synth.brain).
BRAIN_TISSUE_NAMES = {1: ("csf", "cerebrospinal fluid"), 2: ("gm", "grey matter", "gray matter"),
                      3: ("wm", "white matter")}
ALL_VERTEBRAE = ("vertebra", "vertebrae", "bone", "spine", "vertebral body", "vertebral bodies")
SPINE_MODALITIES = {"CT": "ct", "T1": "t1", "T2": "t2"}


def synthetic_cases(task: str, labels: dict, modalities: list, count: int, folder: str | Path, seed: int = 0,
                    progress: Progress | None = None) -> list[dict]:
    """Write ``count`` generated cases (image(s) + label map on the user's label values); datalist entries."""
    progress = as_progress(progress)
    make = {"spine-segment": _spine_case, "brain-tissue": _brain_case, "brain-lesion": _lesion_case}.get(task)
    if make is None:
        raise InputError(f"No generator draws {task} cases; set the synthetic ratio to 0.")
    mapping = _value_map(task, labels)  # refuses unknown names before anything is generated
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for number in range(count):
        case_seed = 1_000_000 + seed * 10_000 + number  # away from the seeds of the shipped models' data
        images, truth = make(case_seed, modalities)
        label = _relabel(truth, mapping)
        entry = {"name": f"synthetic-{case_seed}", "image": [], "label": str(folder / f"synthetic-{case_seed}_label.nii.gz")}
        for channel, image in enumerate(images):
            path = folder / f"synthetic-{case_seed}_{channel}.nii.gz"
            sitk.WriteImage(image, str(path))
            entry["image"].append(str(path))
        sitk.WriteImage(label, entry["label"])
        cases.append(entry)
        progress.update("synthetic", (number + 1) / count, f"generated case {number + 1} of {count}")
    return cases


def _value_map(task: str, labels: dict) -> dict[int, int]:
    """Generator value -> the user's label value, for every non-background label; InputError if one is unknown."""
    wanted = {int(value): str(name).strip().lower() for value, name in labels.items() if int(value) != 0}
    if task == "spine-segment":
        from ..anatomy import VERTEBRA_LABELS

        if len(wanted) == 1 and next(iter(wanted.values())) in ALL_VERTEBRAE:
            return {generator: next(iter(wanted)) for generator in VERTEBRA_LABELS.values()}
        by_name = {name.lower(): value for name, value in VERTEBRA_LABELS.items()}
        known, mapping = sorted(by_name), {}
        for value, name in wanted.items():
            if name not in by_name:
                raise _unknown(name, task, "one label named 'vertebrae' or vertebra names " + ", ".join(known[:3]) + " ...")
            mapping[by_name[name]] = value
        return mapping
    if task == "brain-tissue":
        mapping = {}
        for value, name in wanted.items():
            generator = next((g for g, names in BRAIN_TISSUE_NAMES.items() if name in names), None)
            if generator is None:
                raise _unknown(name, task, "CSF, grey matter, white matter")
            mapping[generator] = value
        return mapping
    if len(wanted) != 1:
        raise InputError("Generated lesion cases have one lesion label; use one label or set the synthetic ratio to 0.")
    return {1: next(iter(wanted))}


def _unknown(name: str, task: str, known: str) -> InputError:
    return InputError(f"The generator draws no structure named {name!r} for {task} (it knows {known}); rename "
                      "the segment or set the synthetic ratio to 0.")


def _relabel(truth: sitk.Image, mapping: dict[int, int]) -> sitk.Image:
    array = sitk.GetArrayFromImage(truth)
    out = np.zeros(array.shape, np.uint8)
    for generator, value in mapping.items():
        out[array == generator] = value
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(truth)
    return image


def _spine_case(seed: int, modalities: list):
    from ..synth.spine import generate_spine

    modality = SPINE_MODALITIES.get(str(modalities[0]).upper(), "random")
    case = generate_spine(seed, modality=modality, view="lumbar", orientation="random")
    return [case.image] * len(modalities), case.labels


def _brain_case(seed: int, modalities: list):
    from ..synth.brain import generate_brain

    contrasts = [_brain_contrast(m) for m in modalities]
    case = generate_brain(seed, contrasts=tuple(dict.fromkeys(contrasts)))
    return [case.images[c] for c in contrasts], case.tissue


def _lesion_case(seed: int, modalities: list):
    from ..synth.brain import generate_brain

    contrasts = [_brain_contrast(m) for m in modalities]
    case = generate_brain(seed, contrasts=tuple(dict.fromkeys(contrasts)), lesions="ms")
    return [case.images[c] for c in contrasts], case.lesions


def _brain_contrast(modality) -> str:
    name = str(modality).lower()
    if name not in ("t1", "t2", "flair", "t1c"):
        raise InputError(f"The brain generator draws T1, T2, FLAIR and T1c images, not {modality!r}; set the "
                         "synthetic ratio to 0.")
    return name
