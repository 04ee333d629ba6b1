"""MS / white-matter lesions: the lesion network on FLAIR (+ T1, T2 when given), then per-lesion measures.

Segmentation (:func:`segment_lesions`): the sequences the card names (:data:`.lesion_synthesis.CHANNELS`)
are brought onto the reference grid by the caller (:mod:`.preprocess`), each normalised within the
brain mask; absent optional ones are all zero, as in training. The network's lesion probability is
resampled to the input grid, thresholded at 0.5, kept inside the brain, and connected components
(26-connectivity, SimpleITK) smaller than the minimum lesion size are dropped.

Quantification (:func:`lesion_table`): lesion count, total lesion load (mL), and per lesion its
volume (mL), centroid (RAS mm, as Slicer shows it) and location class from the tissue map, when there
is one: *periventricular* (touching, or within :data:`PERIVENTRICULAR_MM` of, ventricular CSF: the
largest CSF component(s) deep in the brain), *juxtacortical* (within :data:`JUXTACORTICAL_MM` of
grey matter), *infratentorial* (centroid in the lower, posterior brain below the tentorium,
estimated from the tissue map as the part of the brain more than 5 mm below the lowest voxel of the
lateral ventricles (the two largest inner CSF components) -- a rough rule, said as such) and otherwise *deep white matter*. Without a tissue map the class is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..protocol import Progress
from ..tables import Column
from .lesion_synthesis import inner_csf

CARD_TASK = "brain-lesion"
LESION_NAME = "Lesion"
DEFAULT_MINIMUM_MM3 = 10.0
PERIVENTRICULAR_MM, JUXTACORTICAL_MM = 3.0, 2.0
INFRATENTORIAL_MARGIN_MM = 5.0  # below the lateral ventricles' lowest point (temporal horns) by this much
LOCATIONS = ("periventricular", "juxtacortical", "infratentorial", "deep white matter", "unknown")

LESION_COLUMNS = (
    Column("lesion", "int"),
    Column("volume", "float", "mL", 4),
    Column("voxels", "int"),
    Column("centroid R", "float", "mm", 1),
    Column("centroid A", "float", "mm", 1),
    Column("centroid S", "float", "mm", 1),
    Column("location", "text"),
)


@dataclass
class LesionModel:
    card: object
    network: object

    @property
    def channels(self) -> list[str]:
        return [str(c).upper() for c in self.card.modalities]

    @property
    def required(self) -> list[str]:
        return [str(c).upper() for c in self.card.extra.get("required_inputs", self.card.modalities[:1])]

    @property
    def minimum_mm3(self) -> float:
        return float(self.card.extra.get("minimum_lesion_mm3", DEFAULT_MINIMUM_MM3))


@dataclass
class LesionResult:
    labels: sitk.Image  # UInt8 0 / 1 on the input grid
    probability: sitk.Image  # Float32 lesion probability on the input grid
    model_id: str
    minimum_mm3: float
    used_inputs: list[str] = field(default_factory=list)


def load_lesion_model(model: str | None = None, device="cpu") -> LesionModel:
    """The lesion model package (``model``: id or folder; default the installed ``brain-lesion`` one)."""
    from ..models import load_network

    card, network = load_network(model, task=CARD_TASK, device=device)
    if len(card.labels) != 2:
        raise InputError(f"Model {card.id!r} has {len(card.labels)} labels; a lesion model has background and lesion.")
    return LesionModel(card, network)


def check_inputs(model: LesionModel, sequences: dict[str, sitk.Image]) -> None:
    """Every input the card requires is there; names the missing one and the option that gives it."""
    missing = [name for name in model.required if name not in sequences]
    if missing:
        raise InputError(f"The lesion model {model.card.id!r} needs a {missing[0]} scan; give it with "
                         f"--{missing[0].lower()}.")


def segment_lesions(sequences: dict[str, sitk.Image], brain: sitk.Image, model: LesionModel,
                    normalisation: str = "zscore", minimum_mm3: float | None = None, device="cpu",
                    progress: Progress | None = None, cancel_event=None) -> LesionResult:
    """Lesions of one case: ``sequences`` (name -> image, all on the reference grid), ``brain`` its mask."""
    from ..inference import run_inference
    from .preprocess import normalise

    check_inputs(model, sequences)
    inside = sitk.GetArrayViewFromImage(brain).astype(bool)
    channels = []
    for name in model.channels:
        reference = sequences[model.required[0]]
        array = np.zeros(inside.shape, np.float32)
        if name in sequences:
            values = sitk.GetArrayFromImage(sequences[name]).astype(np.float32)
            array = normalise(values, inside, normalisation)
            array[~inside] = 0.0
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(reference)
        channels.append(image)
    result = run_inference(channels[0], model.network, model.card, extra_channels=channels[1:], device=device,
                           output="probabilities", progress=progress, cancel_event=cancel_event)
    probability = sitk.Mask(result.probabilities[1], brain)
    minimum = model.minimum_mm3 if minimum_mm3 is None else float(minimum_mm3)
    labels = remove_small_lesions(sitk.Cast(probability > 0.5, sitk.sitkUInt8), minimum)
    return LesionResult(labels, probability, model.card.id, minimum, [n for n in model.channels if n in sequences])


def remove_small_lesions(labels: sitk.Image, minimum_mm3: float) -> sitk.Image:
    """Binary lesion map without connected components (26-connectivity) smaller than ``minimum_mm3``."""
    components = sitk.ConnectedComponent(sitk.Cast(labels > 0, sitk.sitkUInt8), True)
    voxel_mm3 = float(np.prod(labels.GetSpacing()))
    minimum_voxels = int(np.ceil(minimum_mm3 / voxel_mm3 - 1e-9)) if minimum_mm3 > 0 else 1
    kept = sitk.RelabelComponent(components, minimumObjectSize=max(minimum_voxels, 1))
    result = sitk.Cast(kept > 0, sitk.sitkUInt8)
    result.CopyInformation(labels)
    return result


def lesion_components(labels: sitk.Image) -> sitk.Image:
    """Each lesion its own number 1..n, largest first (26-connectivity)."""
    return sitk.RelabelComponent(sitk.ConnectedComponent(sitk.Cast(labels > 0, sitk.sitkUInt8), True),
                                 sortByObjectSize=True)


def lesion_table(labels: sitk.Image, tissue: sitk.Image | None = None) -> list[dict]:
    """One record per lesion (:data:`LESION_COLUMNS`), largest first; centroids in RAS mm."""
    components = lesion_components(labels)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(components)
    classify = _location_classifier(components, tissue) if tissue is not None else None
    per_voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    records = []
    for number in stats.GetLabels():
        x, y, z = stats.GetCentroid(number)  # LPS
        voxels = int(stats.GetNumberOfPixels(number))
        records.append({"lesion": int(number), "volume": voxels * per_voxel_ml, "voxels": voxels,
                        "centroid R": -x, "centroid A": -y, "centroid S": z,
                        "location": classify(number) if classify else "unknown"})
    return records


def lesion_summary(records: list[dict]) -> dict:
    """Count and total load (mL) of a :func:`lesion_table`, and the count per location class."""
    summary = {"lesion count": len(records), "total lesion load": float(sum(r["volume"] for r in records))}
    for location in LOCATIONS:
        summary[f"{location} lesions"] = sum(1 for r in records if r["location"] == location)
    return summary


def _location_classifier(components: sitk.Image, tissue: sitk.Image):
    """A function lesion number -> location class, from the tissue map (1 CSF, 2 GM, 3 WM, on the same grid)."""
    spacing = tissue.GetSpacing()
    comp = sitk.GetArrayFromImage(components)
    tissue_array = sitk.GetArrayFromImage(tissue)
    ventricles = inner_csf(tissue_array)
    to_ventricle = _distance_mm(ventricles, spacing)
    to_cortex = _distance_mm(tissue_array == 2, spacing)
    lowest_ventricle = _lowest_superior_index(_largest_two(ventricles), tissue)

    def classify(number: int) -> str:
        voxels = comp == number
        if to_ventricle is not None and float(to_ventricle[voxels].min()) <= PERIVENTRICULAR_MM:
            return "periventricular"
        if to_cortex is not None and float(to_cortex[voxels].min()) <= JUXTACORTICAL_MM:
            return "juxtacortical"
        if lowest_ventricle is not None and _superior_of(voxels, tissue) < lowest_ventricle - INFRATENTORIAL_MARGIN_MM:
            return "infratentorial"
        return "deep white matter"

    return classify


def _largest_two(mask: np.ndarray) -> np.ndarray:
    """The two largest connected parts of ``mask`` (the lateral ventricles, when they are apart)."""
    from scipy import ndimage

    labelled, count = ndimage.label(mask)
    if count <= 2:
        return mask
    sizes = np.bincount(labelled.ravel())[1:]
    return np.isin(labelled, np.argsort(sizes)[-2:] + 1)


def _distance_mm(mask: np.ndarray, spacing) -> np.ndarray | None:
    if not mask.any():
        return None
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayViewFromImage(distance), 0)


def _superior_mm(indices_kji: np.ndarray, image: sitk.Image) -> np.ndarray:
    """The S coordinate (mm) of voxel indices (k, j, i)."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ijk = indices_kji[:, ::-1].astype(np.float64)
    points = np.asarray(image.GetOrigin()) + (ijk * np.asarray(image.GetSpacing())) @ direction.T
    return points[:, 2]  # LPS z = S


def _lowest_superior_index(ventricles: np.ndarray, image: sitk.Image) -> float | None:
    points = np.argwhere(ventricles)
    return float(_superior_mm(points, image).min()) if len(points) else None


def _superior_of(voxels: np.ndarray, image: sitk.Image) -> float:
    return float(_superior_mm(np.argwhere(voxels), image).mean())
