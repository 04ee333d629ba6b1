"""One BrainSeg case, in memory: sequences in, tissue and / or lesion labels and their tables out.

The task registry's ``load_models`` / ``run_case`` for ``brain-seg`` (the command line and the
Slicer Logic both call these). Steps, each in its own module:

1. every scan is checked (:func:`.pipeline.check_input`: 3D, plausible MR, not CT);
2. the reference is the T1 when given, else the FLAIR, else the first sequence; every other
   sequence is brought onto its grid (:func:`.preprocess.on_reference_grid`: rigid registration
   when ``register``) and checked to show the same head (:func:`.preprocess.check_same_head`);
3. brain mask given / skull-stripped input passed through / computed by the tissue model, tissue
   classes on the reference (:func:`.pipeline.segment_tissue`), optional N4 first;
4. lesions on FLAIR (+ T1, T2) inside the brain (:func:`.lesions.segment_lesions`);
5. one label map on the reference grid: 1 CSF, 2 GM, 3 WM, 4 lesion (lesion voxels were white
   matter, mostly); volumes per class and per lesion (:mod:`.quantify`, :mod:`.lesions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk

from ..errors import InputError
from ..protocol import Progress

TASK_CHOICES = ("tissue", "lesion", "both")
SEQUENCES = ("T1", "FLAIR", "T2", "T1C")  # reference preference order
LESION_VALUE = 4
NAMES = {1: "Cerebrospinal fluid", 2: "Grey matter", 3: "White matter", LESION_VALUE: "Lesion"}


@dataclass
class BrainSegOptions:
    """The user's choices; each preprocessing toggle is documented in :mod:`.pipeline` / :mod:`.preprocess`."""

    task: str = "tissue"
    n4: bool = False
    normalisation: str = "zscore"
    register: bool = True
    refine: bool = True  # the tissue network's probabilities as prior of a mixture fitted to the scan (.refine)
    minimum_lesion_mm3: float | None = None  # None: the lesion model card's

    def __post_init__(self):
        from .preprocess import NORMALISATIONS

        if self.task not in TASK_CHOICES:
            raise InputError(f"Unknown BrainSeg task {self.task!r}; use {', '.join(TASK_CHOICES)}.")
        if self.normalisation not in NORMALISATIONS:
            raise InputError(f"Unknown normalisation {self.normalisation!r}; use {' or '.join(NORMALISATIONS)}.")
        if self.minimum_lesion_mm3 is not None and self.minimum_lesion_mm3 < 0:
            raise InputError("The minimum lesion size cannot be negative; give a volume in mm³ (0 keeps every lesion).")


@dataclass
class BrainSegModels:
    tissue: object | None = None  # pipeline.TissueModel
    lesion: object | None = None  # lesions.LesionModel


@dataclass
class BrainSegResult:
    labels: sitk.Image  # UInt8 on the reference grid, values of NAMES
    names: dict[int, str]
    reference: str  # which sequence the grid is
    brain_mask: sitk.Image
    mask_source: str
    volumes: list[dict]
    lesions: list[dict] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lesion_probability: sitk.Image | None = None

    @property
    def model_id(self) -> str:
        return ", ".join(self.models)


def load_models(task: str = "tissue", tissue_model=None, lesion_model=None, device="cpu",
                need_tissue: bool = False) -> BrainSegModels:
    """The models ``task`` needs (ids or folders; None: the installed defaults).

    ``need_tissue``: load the tissue model for the lesion task too (no mask given and the input is
    not skull-stripped: the tissue model finds the brain).
    """
    from .lesions import load_lesion_model
    from .pipeline import load_tissue_model

    BrainSegOptions(task=task)  # checks the name
    tissue = load_tissue_model(tissue_model, device=device) if task != "lesion" or need_tissue else None
    lesion = load_lesion_model(lesion_model, device=device) if task != "tissue" else None
    return BrainSegModels(tissue, lesion)


def reference_name(sequences: dict[str, sitk.Image]) -> str:
    if not sequences:
        raise InputError("Give at least one scan (--t1, --flair, --t2 or --t1c).")
    return next((name for name in SEQUENCES if name in sequences), next(iter(sequences)))


def segment_case(sequences: dict[str, sitk.Image], models: BrainSegModels, options: BrainSegOptions | None = None,
                 mask: sitk.Image | None = None, device="cpu", progress: Progress | None = None,
                 cancel_event=None) -> BrainSegResult:
    """Run the steps of the module docstring on ``sequences`` (name -> image; names of :data:`SEQUENCES`)."""
    from .pipeline import check_input, mask_on_image

    options = options or BrainSegOptions()
    progress = progress or Progress(quiet=True)
    sequences = {name.upper(): image for name, image in sequences.items()}
    reference = reference_name(sequences)
    warnings = []
    modalities = ("T1", "T2", "FLAIR")
    for name, image in sequences.items():
        warnings += check_input(image, modalities, f"{name} scan")
    if options.task != "tissue" and models.lesion is not None:
        from .lesions import check_inputs

        check_inputs(models.lesion, sequences)
    image = sequences[reference]
    given = mask_on_image(mask, image) if mask is not None else None
    aligned = _aligned(sequences, reference, options.register, progress)
    brain, source, tissue = _brain_and_tissue(image, given, models, options, device, progress, cancel_event)
    for name, other in aligned.items():
        if name != reference:
            from .preprocess import check_same_head

            check_same_head(image, other, brain, f"{name} scan", f"{reference} scan")
    labels = tissue if tissue is not None else sitk.Cast(brain * 0, sitk.sitkUInt8)
    used, lesion_records, probability = [], [], None
    if tissue is not None:
        used.append(models.tissue.card.id)
    if options.task != "tissue":
        lesion = _lesions(aligned, brain, models, options, device, progress, cancel_event)
        used.append(lesion.model_id)
        labels = sitk.Mask(labels, sitk.Cast(lesion.labels == 0, sitk.sitkUInt8), outsideValue=LESION_VALUE)
        probability = lesion.probability
        from .lesions import lesion_table

        lesion_records = lesion_table(lesion.labels, tissue)
    from .quantify import brain_volumes

    labels.CopyInformation(image)
    names = {v: n for v, n in NAMES.items() if (v != LESION_VALUE or options.task != "tissue")
             and (v == LESION_VALUE or tissue is not None)}
    return BrainSegResult(labels, names, reference, brain, source,
                          brain_volumes(labels, names, brain if tissue is None else None), lesion_records,
                          used, warnings, probability)


def _aligned(sequences, reference: str, register: bool, progress: Progress) -> dict[str, sitk.Image]:
    from .preprocess import on_reference_grid

    aligned = {}
    for name, image in sequences.items():
        if name == reference:
            aligned[name] = sitk.Cast(image, sitk.sitkFloat32)
            continue
        progress.update("prepare", 0.0, f"bringing the {name} onto the {reference} grid")
        aligned[name] = on_reference_grid(image, sequences[reference], register, f"{name} scan", f"{reference} scan")
    return aligned


def _brain_and_tissue(image, given, models, options, device, progress, cancel_event):
    """(brain mask, its source, tissue labels or None) on the reference grid."""
    from .pipeline import _largest_filled, looks_skull_stripped, segment_tissue

    if models.tissue is not None:
        result = segment_tissue(image, models.tissue, mask=given, n4=options.n4, device=device, progress=progress,
                                cancel_event=cancel_event, normalisation=options.normalisation,
                                refine=options.refine, name="reference scan")
        tissue = result.labels if options.task != "lesion" else None
        return result.brain_mask, result.mask_source, tissue
    if given is not None:
        return given, "given", None
    if looks_skull_stripped(image):
        return _largest_filled(sitk.Cast(sitk.NotEqual(image, 0), sitk.sitkUInt8)), "skull-stripped input", None
    raise InputError("The scan is not skull-stripped and no brain mask was given; give --mask, or let the tissue "
                     "model find the brain (task both, or a tissue model installed).")


def _lesions(aligned, brain, models, options, device, progress, cancel_event):
    from .lesions import segment_lesions
    from .pipeline import n4_correct

    if models.lesion is None:
        raise InputError("No lesion model was loaded; install a brain-lesion model or choose the tissue task.")
    if options.n4:
        progress.update("prepare", 0.0, "N4 bias-field correction of the lesion sequences")
        aligned = {name: n4_correct(image, brain) for name, image in aligned.items()}
    return segment_lesions(aligned, brain, models.lesion, options.normalisation, options.minimum_lesion_mm3,
                           device, progress, cancel_event)


def lesion_centroid(result: BrainSegResult, lesion: int) -> tuple[float, float, float]:
    """RAS centroid (mm) of lesion number ``lesion`` (1 = the largest) of a result."""
    for record in result.lesions:
        if record["lesion"] == lesion:
            return record["centroid R"], record["centroid A"], record["centroid S"]
    raise InputError(f"There is no lesion {lesion}; the result has {len(result.lesions)} lesion(s).")
