"""Training a SpineLabel model from point annotations only (Forsberg 2017), on synthetic spines.

``train_spine_label`` generates cases with :func:`spinebrain.synth.spine.generate_spine` (views of
the region plus some whole-spine and short views; CT, T1, T2 and randomised contrast so one model
serves them all; random orientation and spacing), takes each case's sagittal slice at the region's
pixel size (some of them cropped tightly, like real crops: :func:`crop_like_real`), turns the
body-centre points into balanced patches, trains the vertebra and anchor
detectors (SGD with Nesterov momentum), fits the shape model from the 3D points, measures the
whole pipeline on held-out synthetic cases (:mod:`.metrics`) and writes the model package.

Real annotated scans (``real_data``: ``*.nii.gz`` beside ``*.mrk.json`` with the same stem) are
added to the training cases when given. Held-out real scans (``real_validation``, same layout) give
the per-epoch validation loss, choose each detector's best epoch and are measured in the card
(``metrics["real_validation"]``); ``run_dir`` holds the ``STOP`` file and ``metrics.jsonl``;
``init_from`` fine-tunes a labelling model (:mod:`.training_control`, :mod:`.fine_tune`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .. import RESEARCH_NOTICE, __version__
from ..anatomy import VERTEBRA_NAMES_BY_LABEL
from ..errors import InputError
from ..models import ModelCard, save_model_package
from ..models.onnx_network import export_onnx_when_possible
from ..points import LabelledPoint
from ..protocol import as_progress
from .detector import (ANCHOR, PATCH_SIZE, VertebraDetector, normalise_intensities, train_detector,
                       training_patches_from_slab)
from .graph import FULL_ORDER, fit_shape_model
from .metrics import aggregate, evaluate_points
from .pipeline import ARCHITECTURE, TASK, DetectorPair, SpineLabelModel, label_spine
from . import training_control
from .slices import MODEL_PIXEL_MM, SagittalSlab, extract_sagittal_slab

TRAINABLE_REGIONS = ("cervical", "lumbar")
#: Levels each region's graph labels (the shape model's layers), T13 / L6 where training sees them.
REGION_LEVELS = {"cervical": ("C1", "T3"), "lumbar": ("T8", "S1"), "whole": ("C1", "S1")}
#: Share of each view among the generated cases: mostly the region, some whole spines and short views.
VIEW_MIX = {"cervical": {"cervical": 0.8, "whole": 0.1, "short": 0.1},
            "lumbar": {"lumbar": 0.75, "whole": 0.1, "short": 0.15},
            # the whole-spine heatmap model (heatmap_recipe --third-channel C2) is judged on every view
            "whole": {"whole": 0.4, "cervical": 0.2, "lumbar": 0.2, "thoracic": 0.1, "short": 0.1}}
MODALITY_MIX = ("ct", "t1", "t2", "random")
#: Limits written into the card: what the model can name (see pipeline.check_image).
MAX_SLICE_THICKNESS_MM = {"cervical": 5.0, "lumbar": 6.5}
MIN_SPINE_EXTENT_MM = {"cervical": 40.0, "lumbar": 60.0}
SLAB = {"cervical": {"slices_each_side": 2, "step_mm": 3.0, "search_slices_each_side": 4},
        "lumbar": {"slices_each_side": 2, "step_mm": 4.0, "search_slices_each_side": 4}}
#: Body centres within this distance (mm) of a training slice count as on it (half a small body width).
ON_SLICE_MM = {"cervical": 4.0, "lumbar": 6.0}
#: Coarse grids keep CPU training feasible: only a sagittal slab at the model pixel size is used.
MAX_VOXELS = {"cervical": 1_500_000, "lumbar": 900_000, "whole": 900_000}
#: Validation grids are finer (as before this change), so fewer held-out scans have slices too thick to name.
VALIDATION_MAX_VOXELS = {"cervical": 2_500_000, "lumbar": 1_500_000, "whole": 2_500_000}
#: Share of training slices cropped tightly (see :func:`crop_like_real`).
CROP_PROBABILITY = 0.4
NETWORK = {"channels": (16, 32), "fc": 128}
#: Candidate and graph settings written into the card; chosen on development seeds 50001-50014 of the
#: lumbar model (the metrics in the card are measured on other seeds): a vertebra threshold of 0.7
#: removes most stray answers off the spine, detections closer than 0.4 median steps are one body.
DETECTION = {"threshold": 0.7, "min_area_px": 3, "merge_distance_mm": 6.0, "anchor_threshold": 0.7,
             "merge_fraction": 0.4}
LABELLING = {"transitional_penalty": 25.0, "gap_penalty": 10.0}


@dataclass
class TrainingOptions:
    region: str = "lumbar"
    cases: int = 150
    validation_cases: int = 30
    epochs: int = 4
    anchor_epochs: int | None = None  # default: epochs + 2
    seed: int = 0
    device: str = "cpu"
    patches_per_slice: int = 240
    slices_per_case: int = 3
    augment: bool = True  # random gamma, contrast, bias field, blur and noise on every training slab
    batch_size: int = 256  # large batches run several times faster per patch on CPU
    learning_rate: float = 0.03  # scaled with the batch size
    real_data: str | None = None
    command: str = ""
    model_id: str | None = None
    threads: int | None = None
    real_validation: str | None = None  # held-out real scans: epoch choice and measured metrics
    run_dir: str | None = None  # STOP file (ends training, best weights kept) and metrics.jsonl
    init_from: str | None = None  # fine-tune this spine-label model (id or package folder)

    def __post_init__(self):
        if self.region not in TRAINABLE_REGIONS:
            raise InputError(f"Training covers the regions {', '.join(TRAINABLE_REGIONS)}, not {self.region!r}.")
        if self.cases < 2 or self.epochs < 1 or self.validation_cases < 1:
            raise InputError("Train on at least 2 cases for at least 1 epoch, with at least 1 validation case.")


@dataclass
class _Case:
    image: object
    points: list[LabelledPoint]
    labels: object = None  # reference label map (synthetic cases)
    partial: set = field(default_factory=set)  # reference vertebrae not fully in view
    description: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- data


def _views(region: str, count: int, rng: np.random.Generator) -> list[str]:
    mix = VIEW_MIX[region]
    return [str(v) for v in rng.choice(list(mix), size=count, p=list(mix.values()))]


def generate_cases(region: str, count: int, first_seed: int, progress=None, what: str = "training",
                   max_voxels: int | None = None) -> list[_Case]:
    """``count`` synthetic cases with seeds ``first_seed`` ... (views, modalities drawn from the same seed).

    ``max_voxels`` (default :data:`MAX_VOXELS`) caps each grid; the generator coarsens the spacing to fit.
    """
    from ..synth.spine import generate_spine
    from ..synth.spine_anatomy import SpineOptions

    rng = np.random.default_rng(first_seed)
    views = _views(region, count, rng)
    modalities = rng.choice(MODALITY_MIX, size=count)
    options = SpineOptions(max_voxels=max_voxels or MAX_VOXELS[region])
    cases = []
    for number, (view, modality) in enumerate(zip(views, modalities)):
        seed = first_seed + number
        spine = generate_spine(seed, modality=str(modality), view=view, orientation="random", options=options)
        partial = {r.name for r in spine.vertebrae if not r.complete}
        cases.append(_Case(spine.image, spine.points, spine.labels, partial,
                           {"seed": seed, "view": view, "modality": spine.metadata["modality"],
                            "orientation": spine.metadata["orientation"]}))
        _report(progress, "generate", (number + 1) / count, f"{what} case {number + 1} of {count} ({view}, {modality})")
    return cases


def read_real_cases(folder: str | Path) -> list[_Case]:
    """Annotated real scans: every image with a ``<stem>.mrk.json`` of named body centres beside it."""
    from ..io import load_volume
    from ..outputs import read_markups

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"The real-data folder {folder} does not exist; give a folder of scans with .mrk.json points.")
    cases = []
    for markups in sorted(folder.glob("*.mrk.json")):
        stem = markups.name[: -len(".mrk.json")]
        images = [p for p in folder.iterdir() if p.name.startswith(stem + ".") and p != markups
                  and p.name.lower().endswith((".nii.gz", ".nii", ".nrrd", ".mha"))]
        if images:
            cases.append(_Case(load_volume(images[0]), read_markups(markups), description={"real": images[0].name}))
    if not cases:
        raise InputError(f"No scan with a matching .mrk.json was found in {folder}; name them scan.nii.gz + scan.mrk.json.")
    return cases


def region_levels(region: str) -> list[str]:
    first, last = REGION_LEVELS[region]
    return FULL_ORDER[FULL_ORDER.index(first):FULL_ORDER.index(last) + 1]


def _region_points(points: list[LabelledPoint], region: str) -> list[LabelledPoint]:
    levels = set(region_levels(region))
    return [p for p in points if p.label in levels]


def case_patches(case: _Case, region: str, rng: np.random.Generator, options: TrainingOptions):
    """(vertebra patches, labels, anchor patches, labels) of one case, from slices around its spine."""
    pixel_mm = MODEL_PIXEL_MM[region]
    sizes = PATCH_SIZE[region], PATCH_SIZE[f"{region}-anchor"]
    out = [[np.zeros((0, sizes[0], sizes[0]), np.float32)], [np.zeros(0, np.int64)],
           [np.zeros((0, sizes[1], sizes[1]), np.float32)], [np.zeros(0, np.int64)]]
    points = np.array([p.ras for p in case.points], float).reshape(-1, 3)
    if len(points) < 2:
        return [np.concatenate(part) for part in out]
    anchor = [p.ras for p in case.points if p.label == ANCHOR[region]]
    spacing = float(np.median(np.linalg.norm(np.diff(points[np.argsort(-points[:, 2])], axis=0), axis=1)))
    step_px = spacing / pixel_mm
    for _ in range(options.slices_per_case):
        centre_r = float(np.median(points[:, 0]) + rng.uniform(-0.5, 0.5) * ON_SLICE_MM[region])
        near = np.abs(points[:, 0] - centre_r) <= ON_SLICE_MM[region]
        if near.sum() < 2:
            continue
        on_slice = points[near].copy()
        on_slice[:, 0] = centre_r  # a body centre a few mm off the slice still shows its body there
        anchor_near = [a for a in anchor if abs(a[0] - centre_r) <= ON_SLICE_MM[region]]
        anchor_ras = np.array([[centre_r, *anchor_near[0][1:]]]) if anchor_near else None
        slab = extract_sagittal_slab(case.image, pixel_mm, 0, 1.0, center_r=centre_r)
        if options.augment and rng.random() < CROP_PROBABILITY:
            slab = crop_like_real(slab, on_slice, anchor_ras, ANCHOR[region] == "S1", step_px, rng)
        if options.augment:
            slab = replace(slab, arrays=augment_intensities(slab.arrays, rng))
        v_patches, v_labels = training_patches_from_slab(slab, on_slice, sizes[0], rng, spacing_mm=spacing)
        _append(out[0], out[1], v_patches, v_labels, options.patches_per_slice, rng)
        view = _anchor_in_view(slab, anchor_ras, step_px) if anchor else "not in the scan"
        if view == "inside":
            a_patches, a_labels = training_patches_from_slab(slab, on_slice, sizes[1], rng, anchor_ras=anchor_ras,
                                                             spacing_mm=spacing)
            _append(out[2], out[3], a_patches, a_labels, options.patches_per_slice, rng)
        elif view in ("not in the scan", "cropped away"):  # no anchor in view: its vertebrae are all negatives
            a_patches, _ = training_patches_from_slab(slab, on_slice, sizes[1], rng, spacing_mm=spacing)
            _append(out[2], out[3], a_patches, np.zeros(len(a_patches), np.int64), options.patches_per_slice // 2, rng)
    return [np.concatenate(part) for part in out]


def crop_like_real(slab: SagittalSlab, points_ras, anchor_ras, anchor_below: bool, step_px: float,
                   rng: np.random.Generator) -> SagittalSlab:
    """A tight crop of a one-slice training slab, like the real crops the detectors meet.

    Generated scans always show soft tissue around the spine, so without crops the anchor detector
    learns "the last vertebra before the image border" and answers S1 (C2) on any crop. Half of the
    crops of a slab with the anchor therefore cut just past one of the four vertebrae next to it,
    leaving the anchor out of view (a hard negative); the others are random windows along the spine.
    Anterior and posterior margins are cut too, to one to three vertebra steps around the bodies.
    """
    rows, cols = slab.arrays.shape[1:]
    pixels = slab.ras_to_pixel(np.asarray(points_ras, float).reshape(-1, 3))[:, 1:]
    length = int(rng.uniform(1.8, 5.0) * step_px)
    top_rows, bottom_rows = int(np.floor(pixels[:, 0].min())), int(np.ceil(pixels[:, 0].max()))
    first = int(rng.uniform(top_rows, bottom_rows) - length / 2)  # a random window centred on the spine
    if anchor_ras is not None and rng.random() < 0.5:
        towards_anchor = 1 if anchor_below else -1  # rows grow inferiorly
        anchor_row = float(slab.ras_to_pixel(anchor_ras)[0, 1])
        levels = (anchor_row - pixels[:, 0]) / step_px * towards_anchor  # > 0: away from the anchor
        neighbours = pixels[(levels > 0.5) & (levels < 4.5), 0]
        if len(neighbours):
            cut = float(rng.choice(neighbours)) + towards_anchor * rng.uniform(0.35, 1.0) * step_px
            first = int(cut) - length if anchor_below else int(cut)
    first = int(np.clip(first, 0, max(rows - length, 0)))
    row_window = slice(first, min(first + max(length, 8), rows))
    col_window = slice(0, cols)
    if rng.random() < 0.6:
        front = int(pixels[:, 1].min() - rng.uniform(0.6, 2.5) * step_px)
        back = int(pixels[:, 1].max() + rng.uniform(1.0, 3.0) * step_px)
        col_window = slice(max(front, 0), min(max(back, max(front, 0) + 8), cols))
    return slab.crop(rows=row_window, cols=col_window)


def _anchor_in_view(slab: SagittalSlab, anchor_ras, step_px: float) -> str:
    """"inside", "cropped away" (its body out of view), "off this slice" or "at the border" (ambiguous)."""
    if anchor_ras is None:
        return "off this slice"
    row = float(slab.ras_to_pixel(anchor_ras)[0, 1])
    margin = 0.25 * step_px  # a body cut through its centre is neither clearly there nor clearly gone
    rows = slab.arrays.shape[1]
    if margin <= row <= rows - 1 - margin:
        return "inside"
    if row < -0.5 * step_px or row > rows - 1 + 0.5 * step_px:
        return "cropped away"
    return "at the border"


def augment_intensities(arrays: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random intensity variation of a slab (normalised to [0, 1] first), so the detectors transfer to real scans.

    Synthetic contrast is cleaner than a real scanner's: gamma and linear contrast stand in for other
    sequences and windowings, a smooth multiplicative field for coil shading, blur for partial volume
    and thick slices, Gaussian noise for low-dose CT and fast MR.
    """
    x = normalise_intensities(arrays)
    if rng.random() < 0.7:
        x = x ** float(np.exp(rng.uniform(-0.6, 0.6)))
    if rng.random() < 0.5:
        x = x * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15)
    if rng.random() < 0.5:  # bias field: bilinear upsampling of a 3x3 grid of gains
        gains = np.exp(rng.normal(0.0, 0.2, size=(3, 3)))
        field_ = ndimage.zoom(gains, np.array(x.shape[1:]) / 3.0, order=1, mode="nearest", grid_mode=True)
        x = x * field_[None, : x.shape[1], : x.shape[2]]
    if rng.random() < 0.3:
        x = ndimage.gaussian_filter(x, sigma=(0.0, *(rng.uniform(0.4, 1.3),) * 2))
    if rng.random() < 0.5:
        x = x + rng.normal(0.0, rng.uniform(0.01, 0.06), size=x.shape)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _append(patches: list, labels: list, new_patches, new_labels, limit: int, rng) -> None:
    if len(new_patches) > limit:
        keep = rng.choice(len(new_patches), size=limit, replace=False)
        new_patches, new_labels = new_patches[keep], new_labels[keep]
    patches.append(new_patches.astype(np.float32))
    labels.append(new_labels.astype(np.int64))


# --------------------------------------------------------------------------------------- training


def train_spine_label(options: TrainingOptions, out_dir: str | Path, progress=None) -> Path:
    """Generate data, train both detectors, fit the shape model, validate, write ``out_dir/<id>/``."""
    started = time.perf_counter()
    if options.threads:
        torch.set_num_threads(options.threads)
    region, rng = options.region, np.random.default_rng(options.seed)
    train_seed, validation_seed = options.seed * 100_000 + 1, options.seed * 100_000 + 50_001
    start, start_card = training_control.start_pair(options.init_from, region) if options.init_from else (None, None)
    cases = generate_cases(region, options.cases, train_seed, progress)
    if options.real_data:
        cases += read_real_cases(options.real_data)
    real_validation = read_real_cases(options.real_validation) if options.real_validation else []
    held = training_control.validation_patches(real_validation, region, options, case_patches) if real_validation \
        else (None,) * 4
    tracker = training_control.EpochTracker(options.epochs + _anchor_epochs(options), options.run_dir, progress)
    _report(progress, "patches", 0.0, "sampling balanced patches")
    parts = [case_patches(case, region, rng, options) for case in cases]
    v_patches, v_labels, a_patches, a_labels = (np.concatenate([p[k] for p in parts]) for k in range(4))
    if not v_labels.any() or not a_labels.any():
        raise InputError("The training cases gave no positive patches; use more cases (at least a few with "
                         f"the {ANCHOR[region]} vertebra in view).")
    _report(progress, "patches", 1.0, f"{len(v_labels)} vertebra and {len(a_labels)} anchor patches")
    vertebra = _train(v_patches, v_labels, "vertebra", options, progress, tracker=tracker, held=held[:2],
                      start=start.vertebra if start else None)
    anchor = _train(a_patches, a_labels, "anchor", options, progress, epochs=_anchor_epochs(options), tracker=tracker,
                    held=held[2:], start=start.anchor if start else None)
    networks = DetectorPair.from_detectors(vertebra, anchor)
    levels = region_levels(region)
    shape_model = fit_shape_model([_region_points(c.points, region) for c in cases if len(c.points) > 1],
                                  levels=[lv for lv in levels if _seen(lv, cases, region)])
    card = _card(options, networks, shape_model, cases)
    model = SpineLabelModel(card, networks, shape_model, ANCHOR[region])
    validation = generate_cases(region, options.validation_cases, validation_seed, progress, "validation",
                                VALIDATION_MAX_VOXELS[region])
    card.metrics = validate(model, validation, progress)
    if real_validation:
        card.metrics["real_validation"] = dict(validate(model, real_validation, progress), measured_on=(
            f"{len(real_validation)} held-out real scans from {options.real_validation} (they chose the best epochs)"))
    card.metrics.update(stopped="stop requested" if tracker.stopped else "completed", epochs_run=tracker.done,
                        training_seconds=round(time.perf_counter() - started, 1))
    if start_card is not None:
        card.extra["fine_tuned_from"] = {"id": start_card.id, "version": start_card.version}
    path = save_model_package(out_dir, networks.state_dict(), card, overwrite=True)
    exported = export_onnx_when_possible(path)
    _report(progress, "save", 1.0, f"model package written to {path}; {exported}")
    return path


def _anchor_epochs(options: TrainingOptions) -> int:
    return options.anchor_epochs or options.epochs + 2


def _seen(level: str, cases: list[_Case], region: str) -> bool:
    return any(p.label == level for c in cases for p in _region_points(c.points, region))


def _train(patches, labels, name: str, options: TrainingOptions, progress, epochs: int | None = None, tracker=None,
           held=(None, None), start: VertebraDetector | None = None) -> VertebraDetector:
    """Train one detector (from ``start``'s weights when fine-tuning), reporting validation loss and accuracy per
    epoch on ``held`` (patches of held-out real scans: the best epoch's weights are kept) or else on a tenth of the
    patches held out (the final weights are kept). ``tracker`` (:class:`.training_control.EpochTracker`) numbers
    the epochs, logs them and ends training when the stop file exists."""
    epochs = epochs or options.epochs
    tracker = tracker or training_control.EpochTracker(epochs, None, progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model = VertebraDetector(**start.kwargs) if start is not None else VertebraDetector(patch=patches.shape[-1],
                                                                                             **NETWORK)
    if start is not None:
        model.load_state_dict(start.state_dict())
    train = np.random.default_rng(options.seed).permutation(len(labels))
    if held[0] is not None and len(held[1]):
        held_patches, held_labels = torch.as_tensor(held[0][:, None]), torch.as_tensor(held[1])
    else:
        own = train[: max(len(labels) // 10, 1)] if len(labels) >= 20 else train[:0]
        train = train[len(own):]
        held_patches, held_labels = torch.as_tensor(patches[own][:, None]), torch.as_tensor(labels[own])
    best = training_control.BestSoFar(enabled=held[0] is not None and len(held[1]) > 0)

    def callback(epoch: int, loss: float) -> None:
        val_loss, val_accuracy = _held_out_scores(model, held_patches, held_labels, options.device)
        tracker.epoch_done(name, epoch + 1, epochs, loss, val_loss, val_accuracy, best.offer(model, val_loss))

    training_control.train_until_stopped(
        train_detector, patches[train], labels[train], model, epochs=epochs, batch_size=options.batch_size,
        learning_rate=options.learning_rate, seed=options.seed, callback=callback, device=options.device)
    best.restore(model)
    return model.cpu().eval()


@torch.no_grad()
def _held_out_scores(model: VertebraDetector, patches: torch.Tensor, labels: torch.Tensor, device) -> tuple[float, float]:
    """(cross-entropy, accuracy) on held-out patches; NaN when none are held out. Leaves the model training."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    model.eval()
    logits = torch.cat([model.classify_patches(patches[k:k + 1024].to(device)) for k in range(0, len(labels), 1024)])
    model.train()
    logits = logits.cpu()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return float(loss), float((logits.argmax(1) == labels).float().mean())


def validate(model: SpineLabelModel, cases: list[_Case], progress=None) -> dict:
    """Paper metrics of the whole pipeline on held-out cases (references limited to the model's levels)."""
    levels = set(model.shape_model.levels)
    results, anchored, seconds = [], 0, []
    for number, case in enumerate(cases):
        reference = [p for p in case.points if p.label in levels]
        if len(reference) < 2:
            continue
        try:
            result = label_spine(case.image, model)
            predicted, seconds = result.points, seconds + [result.seconds]
            anchored += result.labelling.anchored
        except InputError:
            predicted = []  # nothing detected or too little spine: every reference vertebra is missed
        outside = {n for n in VERTEBRA_NAMES_BY_LABEL.values() if n not in levels}
        results.append(evaluate_points(predicted, reference, case.labels, case.partial | outside))
        _report(progress, "validate", (number + 1) / len(cases), f"validation case {number + 1} of {len(cases)}")
    pooled = aggregate(results)
    keys = ("sensitivity", "precision", "accuracy", "localisation_mean_mm", "localisation_sd_mm",
            "labeling_accuracy", "labeling_accuracy_strict", "identification_rate", "tp", "fp", "fn", "cases")
    metrics = {key: _json_number(pooled[key]) for key in keys}
    metrics["anchored_cases"] = int(anchored)
    metrics["seconds_per_case_mean"] = round(float(np.mean(seconds)), 3) if seconds else None
    metrics["measured_on"] = (f"{len(results)} held-out synthetic cases (seeds never used in training), "
                              "pooled per vertebra as in Forsberg 2017 Table 1")
    return metrics


def _json_number(value):
    """Rounded for the card; NaN (a rate with nothing to count) becomes null, which JSON can hold."""
    if isinstance(value, float):
        return None if not np.isfinite(value) else round(value, 4)
    return value


def _card(options: TrainingOptions, networks: DetectorPair, shape_model, cases: list[_Case]) -> ModelCard:
    region = options.region
    pixel = MODEL_PIXEL_MM[region]
    synthetic = [c.description for c in cases if "seed" in c.description]
    count = lambda key: {v: sum(d[key] == v for d in synthetic) for v in sorted({d[key] for d in synthetic})}  # noqa: E731
    seeds = [d["seed"] for d in synthetic]
    data = (f"{len(synthetic)} synthetic {region} spine cases from spinebrain.synth.spine.generate_spine, seeds "
            f"{min(seeds)}-{max(seeds)}; views {count('view')}; modalities {count('modality')}; orientations "
            f"{count('orientation')}; random spacing (grids coarsened to at most {MAX_VOXELS[region]} voxels)")
    real = len(cases) - len(synthetic)
    if real:
        data += f"; plus {real} real annotated scans from {options.real_data}"
    return ModelCard(
        id=options.model_id or f"spine-label-{region}", task=TASK, version="1.0",
        labels={"0": "background", "1": "vertebra centre"}, modalities=["CT", "T1", "T2"],
        spacing=[pixel, pixel, float(SLAB[region]["step_mm"])],
        patch_size=[PATCH_SIZE[region], PATCH_SIZE[region], 1],
        normalisation={"method": "percentile", "low": 1.0, "high": 99.0, "over": "slab"},
        network=networks.config, region=region, validated_modalities=["CT (synthetic)", "T1 (synthetic)",
                                                                      "T2 (synthetic)"],
        training_data=data, training_command=options.command, software_version=__version__,
        research_notice=RESEARCH_NOTICE,
        extra={
            "anchor_level": ANCHOR[region],
            "shape_model": shape_model.to_dict(),
            "levels": list(shape_model.levels),
            "slab": dict(SLAB[region]),
            "detection": dict(DETECTION),
            "labelling": dict(LABELLING),
            "max_slice_thickness_mm": MAX_SLICE_THICKNESS_MM[region],
            "min_spine_extent_mm": MIN_SPINE_EXTENT_MM[region],
            "pixel_mm": pixel,
            "training": {"cases": options.cases, "validation_cases": options.validation_cases,
                         "epochs": options.epochs, "anchor_epochs": _anchor_epochs(options), "seed": options.seed,
                         "optimiser": "SGD, Nesterov momentum 0.9", "learning_rate": options.learning_rate,
                         "batch_size": options.batch_size, "patches_per_slice": options.patches_per_slice,
                         "slices_per_case": options.slices_per_case, "augment": options.augment,
                         "learning_rate_schedule": "cosine to 5 % over the epochs",
                         "anchor_patch_size": PATCH_SIZE[f"{region}-anchor"], "architecture": ARCHITECTURE},
        },
    )


def _report(progress, stage: str, fraction: float, message: str) -> None:
    as_progress(progress).update(stage, fraction, message)


__all__ = ["TrainingOptions", "train_spine_label", "generate_cases", "read_real_cases", "validate", "region_levels",
           "case_patches", "augment_intensities"]
