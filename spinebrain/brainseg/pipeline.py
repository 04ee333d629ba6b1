"""Brain tissue segmentation of one scan: checks, brain mask, normalisation, network, back on the input grid.

Preprocessing toggles, each with its default and the reason for it:

* ``n4`` (default **off**): SimpleITK N4 bias-field correction inside the head/brain mask, on a
  4x shrunken copy. Off by default because the tissue model is trained with random bias fields
  (:mod:`.synthesis`), so it tolerates the usual inhomogeneity, and N4 costs about a minute on two
  CPU cores; turn it on for scans with strong shading (surface coils, 3 T and above).
* brain mask: ``mask`` given (``--mask``; resampled onto the scan, nearest neighbour) > a
  skull-stripped input detected (:func:`looks_skull_stripped`: much of the volume and the whole border
  exactly zero) and passed through as it is > computed: the network runs once on the whole head
  (normalised within the head), its non-background classes (largest component, holes filled) become
  the brain mask, and it runs again on the stripped, re-normalised brain (the way it was trained).
* normalisation (default ``zscore``): z-score within the mask (the brain, else the head), as in
  training, or ``nyul`` (:mod:`.preprocess`); the card itself says ``none`` because this step
  happens here.
* ``refine`` (default **on**): inside the brain, the network's probabilities serve as the prior of a
  Gaussian mixture fitted to the scan's own intensities (:mod:`.refine`); the network says which
  cluster is which tissue (any contrast), the scan says where the boundaries are. Off: the
  network's argmax over CSF / GM / WM.

Everything is mapped back to the input grid: the network's probabilities are resampled linearly
by the inference block and the argmax taken there (sharper than nearest-neighbour labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..protocol import Progress
from .synthesis import CLASSES

CARD_TASK = "brain-tissue"
#: output label values -> the names of spinebrain.anatomy (terminology and colours)
TISSUE_NAMES = {1: "Cerebrospinal fluid", 2: "Grey matter", 3: "White matter"}
MASK_SOURCES = ("given", "skull-stripped input", "computed")


@dataclass
class TissueModel:
    card: object
    network: object


@dataclass
class TissueResult:
    """Labels (UInt8: 0 background, 1 CSF, 2 GM, 3 WM) and the brain mask, both on the input grid."""

    labels: sitk.Image
    brain_mask: sitk.Image
    mask_source: str
    model_id: str
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=lambda: dict(TISSUE_NAMES))


def load_tissue_model(model: str | None = None, device="cpu") -> TissueModel:
    """The tissue model package (``model``: id or folder; default the installed ``brain-tissue`` one)."""
    from ..models import load_network

    card, network = load_network(model, task=CARD_TASK, device=device)
    if len(card.labels) != len(CLASSES):
        raise InputError(f"Model {card.id!r} has {len(card.labels)} labels; a tissue model needs background, CSF, "
                         "GM and WM.")
    return TissueModel(card, network)


def check_input(image: sitk.Image, modalities, name: str) -> list[str]:
    """The project's plausibility hook, plus: a CT given as MR is refused here (the tissue model is MR only)."""
    from ..validate import check_plausible

    warnings = check_plausible(image, modalities=modalities, name=name)
    low, high = np.percentile(sitk.GetArrayViewFromImage(image)[::2, ::2, ::2], [1, 99])
    if low < -500 and high > 0:
        raise InputError(f"The {name} looks like CT (intensities {low:.0f} to {high:.0f}, air below -500); brain "
                         "tissue segmentation needs an MR scan (T1, T2 or FLAIR).")
    return warnings


def looks_skull_stripped(image: sitk.Image) -> bool:
    """True when at least a quarter of the voxels, and nearly all of the border, are exactly zero."""
    array = sitk.GetArrayViewFromImage(image)
    border = np.concatenate([array[[0, -1]].ravel(), array[:, [0, -1]].ravel(), array[:, :, [0, -1]].ravel()])
    return float(np.mean(array == 0)) >= 0.25 and float(np.mean(border == 0)) >= 0.99


def mask_on_image(mask: sitk.Image, image: sitk.Image) -> sitk.Image:
    """A given mask on the scan's grid (nearest neighbour); refused when it covers none of the scan."""
    from ..geometry import same_grid
    from ..resample import resample_like

    if mask.GetDimension() != 3:
        raise InputError("The --mask is not a 3D volume; give the brain mask of this scan.")
    binary = sitk.Cast(sitk.Cast(mask, sitk.sitkFloat32) > 0, sitk.sitkUInt8)
    if not same_grid(binary, image):
        binary = resample_like(binary, image, is_label=True, default_value=0)
    if not np.any(sitk.GetArrayViewFromImage(binary)):
        raise InputError("The --mask does not overlap the scan (no mask voxel inside it); give the brain mask made "
                         "for this scan.")
    return binary


def head_mask(image: sitk.Image) -> sitk.Image:
    """The head (anything brighter than the air, Otsu), largest component, holes filled."""
    otsu = sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1)
    return _largest_filled(otsu)


def _largest_filled(mask: sitk.Image) -> sitk.Image:
    components = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    largest = sitk.Cast(components == 1, sitk.sitkUInt8)
    return sitk.BinaryFillhole(largest)


def n4_correct(image: sitk.Image, mask: sitk.Image, shrink: int = 4) -> sitk.Image:
    """N4 bias-field correction fitted on a shrunken copy, applied at full resolution (SimpleITK)."""
    float_image = sitk.Cast(image, sitk.sitkFloat32)
    positive = sitk.Add(float_image, -float(np.min(sitk.GetArrayViewFromImage(float_image))) + 1.0)
    small, small_mask = sitk.Shrink(positive, [shrink] * 3), sitk.Shrink(mask, [shrink] * 3)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([20, 20, 10])
    corrector.Execute(small, small_mask)
    log_field = corrector.GetLogBiasFieldAsImage(positive)
    return sitk.Cast(float_image / sitk.Exp(log_field), sitk.sitkFloat32)


def normalised(image: sitk.Image, mask: sitk.Image, strip: bool, method: str = "zscore") -> sitk.Image:
    """Normalised within ``mask`` (zero outside it first when ``strip``): z-score as the training images are, or
    Nyúl's standardisation (:mod:`.preprocess`)."""
    from .preprocess import normalise

    array = sitk.GetArrayFromImage(image).astype(np.float32)
    inside = sitk.GetArrayViewFromImage(mask).astype(bool)
    if strip:
        array[~inside] = 0.0
    result = sitk.GetImageFromArray(normalise(array, inside, method))
    result.CopyInformation(image)
    return result


def segment_tissue(image: sitk.Image, model: TissueModel, mask: sitk.Image | None = None, n4: bool = False,
                   device="cpu", progress: Progress | None = None, cancel_event=None,
                   name: str = "T1", refine: bool = True, normalisation: str = "zscore") -> TissueResult:
    """Background / CSF / GM / WM of one MR scan, on its own grid (see the module docstring for the steps)."""
    progress = progress or Progress(quiet=True)
    warnings = check_input(image, model.card.modalities, name)
    if mask is not None:
        brain, source = mask_on_image(mask, image), "given"
    elif looks_skull_stripped(image):
        brain, source = _largest_filled(sitk.Cast(sitk.NotEqual(image, 0), sitk.sitkUInt8)), "skull-stripped input"
    else:
        brain, source = None, "computed"
    if n4:
        progress.update("prepare", 0.0, "N4 bias-field correction")
        image = n4_correct(image, brain if brain is not None else head_mask(image))
    if brain is None:
        progress.log("No brain mask given and the scan is not skull-stripped: a first pass finds the brain.")
        first = _probabilities_argmax(normalised(image, head_mask(image), False, normalisation), model, device, progress,
                                      cancel_event)
        brain = _largest_filled(sitk.Cast(first > 0, sitk.sitkUInt8))
        if not np.any(sitk.GetArrayViewFromImage(brain)):
            raise InputError(f"No brain tissue was found in the {name}; check that it is a brain MR scan, or give "
                             "--mask.")
    labels = _tissue_in_brain(normalised(image, brain, True, normalisation), brain, model, device, progress,
                              cancel_event, refine)
    return TissueResult(labels, brain, source, model.card.id, str(device), warnings)


def _probabilities(image: sitk.Image, model: TissueModel, device, progress, cancel_event) -> np.ndarray:
    """(4, k, j, i) class probabilities on the input grid."""
    from ..inference import run_inference

    result = run_inference(image, model.network, model.card, device=device, output="probabilities",
                           progress=progress, cancel_event=cancel_event)
    return np.stack([sitk.GetArrayViewFromImage(p) for p in result.probabilities])


def _probabilities_argmax(image: sitk.Image, model: TissueModel, device, progress, cancel_event) -> sitk.Image:
    labels = sitk.GetImageFromArray(_probabilities(image, model, device, progress, cancel_event).argmax(0)
                                    .astype(np.uint8))
    labels.CopyInformation(image)
    return labels


def _tissue_in_brain(image: sitk.Image, brain: sitk.Image, model: TissueModel, device, progress, cancel_event,
                     refine: bool) -> sitk.Image:
    """CSF / GM / WM for every voxel of the brain mask, 0 outside. Background is no choice inside the mask
    (else dark CSF beside the zeroed outside is lost to it); ``refine``: see :mod:`.refine`."""
    from .refine import CARD_KEY, DEFAULT_PRIOR_WEIGHT, refine_tissue

    probabilities = _probabilities(image, model, device, progress, cancel_event)
    inside = sitk.GetArrayViewFromImage(brain).astype(bool)
    if refine:
        progress.update("refine", 0.0, "fitting the tissue intensities of this scan")
        weight = float(model.card.extra.get(CARD_KEY, DEFAULT_PRIOR_WEIGHT))
        array = refine_tissue(probabilities, sitk.GetArrayViewFromImage(image), inside, prior_weight=weight)
    else:
        array = np.where(inside, probabilities[1:].argmax(0) + 1, 0).astype(np.uint8)
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    return labels
