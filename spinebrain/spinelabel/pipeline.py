"""SpineLabel end to end: scan -> sagittal slab -> two CNN detectors -> candidates -> graph -> named RAS points.

One model package per spine region holds both detectors in one :class:`DetectorPair` (one state
dict, one sha256) and, in its card, everything the pipeline needs besides the weights: the pixel
size (``card.spacing``), the slab (``extra["slab"]``), the detection thresholds
(``extra["detection"]``), the anchor level, the limits of what the model can name
(``extra["max_slice_thickness_mm"]``, ``extra["min_spine_extent_mm"]``; slices thicker than
``extra["warn_slice_thickness_mm"]`` are named with a warning) and the fitted shape model
(``extra["shape_model"]``, see :class:`~spinebrain.spinelabel.graph.SpineShapeModel`).

``label_spine`` validates first (nothing runs on an image it cannot name), so a scan showing too
little spine fails with a message offering detection only; ``relabel`` re-solves the graph from
the kept candidates without running the networks again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..device import runs_on_cpu, select_device
from ..errors import InputError, ModelError, SpineBrainError
from ..geometry import extent_ras
from ..models import ModelCard, ModelRegistry, load_network, resolve_package, verify_weights
from ..models.onnx_network import OnnxNetwork, load_onnx_network, onnx_usable
from ..models.package import check_task
from ..points import LabelledPoint
from ..protocol import Progress, as_progress
from ..turn import TILT_GROW
from ..validate import check_plausible, check_points_in_image, check_points_type
from .architectures import DETECTOR_PAIR, HEATMAP
from .candidates import attach_anchor, detections_from_maps, merge_nearby
from .choice import choose_labelling, claims_the_scan, models_knowing
from .graph import Candidate, LabellingResult, SpineShapeModel
from .heatmap import anchor_channels, heatmap_candidates
from .labelling import DEFAULT_LABELLING, LabellingSetup, SpineLabelResult, solve_labelling
from .patch_inference import detect_slab
from .ribs import RibModel, load_rib_classifier, rib_decision, rib_export_usable, with_rib_evidence
from .slices import extract_sagittal_slab
from .upright import CoronalFrame

TASK = "spine-label"
REGIONS = ("cervical", "lumbar", "whole")
#: The order region "auto" runs the installed models in (:func:`label_spine_best`).
AUTO_ORDER = ("lumbar", "whole", "cervical")
ARCHITECTURE = DETECTOR_PAIR

#: Card defaults where a (user-made) card leaves a setting out.
DEFAULT_SLAB = {"slices_each_side": 2, "step_mm": 4.0, "search_slices_each_side": 4}
DEFAULT_DETECTION = {"threshold": 0.5, "min_area_px": 3, "merge_distance_mm": 6.0, "anchor_threshold": 0.7,
                     "merge_fraction": 0.4}
DEFAULT_MIN_EXTENT_MM = 60.0
DEFAULT_MAX_THICKNESS_MM = 6.5


def __getattr__(name: str):
    """``DetectorPair`` (the paper's torch detectors, :mod:`.detector`) imported when first asked for: a model run
    from its ONNX export imports no torch (cards keep naming it by this module's path, :data:`ARCHITECTURE`)."""
    if name == "DetectorPair":
        from .detector import DetectorPair

        return DetectorPair
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class SpineLabelModel:
    card: ModelCard
    networks: object  # DetectorPair, HeatmapDetector, or the heatmap network's OnnxNetwork (CPU)
    shape_model: SpineShapeModel
    anchor_level: str
    device: object = "cpu"  # a torch.device; "cpu" for an OnnxNetwork
    package: Path | None = None  # the folder it was loaded from (to load the torch network for another device)
    ribs: RibModel | None = None  # the package's rib classifier (card extra "ribs"), if it has one

    @property
    def is_heatmap(self) -> bool:
        """The dense U-Net detector (card extra "heatmap"), in torch or ONNX; else the paper's detector pair."""
        return self.card.network.get("architecture") == HEATMAP

    @property
    def region(self) -> str:
        return self.card.region or "whole"

    @property
    def pixel_mm(self) -> float:
        return float(self.card.spacing[0])

    def setting(self, group: str, key: str):
        defaults = {"slab": DEFAULT_SLAB, "detection": DEFAULT_DETECTION, "labelling": DEFAULT_LABELLING}[group]
        return self.card.extra.get(group, {}).get(key, defaults[key])

    @property
    def setup(self) -> LabellingSetup:
        """How this model names detections (shape model, anchor, the card's labelling options)."""
        options = {key: float(self.setting("labelling", key)) for key in DEFAULT_LABELLING}
        return LabellingSetup(self.shape_model, self.anchor_level, options, self.region, self.card.id,
                              tuple(self.card.extra.get("level_classes", ())), dict(self.card.extra.get("evidence", {})),
                              float(self.card.extra.get("anchor_strong_share", 0.5)),
                              bool(self.card.extra.get("anchor_outermost_at_end", False)),
                              rib_decision(self.card) if self.ribs is not None else {},
                              dict(self.card.extra.get("anchor_cost_choice", {})), self.second_anchor_level)

    @property
    def second_anchor_level(self) -> str:
        """A whole-spine heatmap model's other anchor (C2; card extra ``anchor_channels``), else ""."""
        others = [level for level in anchor_channels(self.card) if level != self.anchor_level] if self.is_heatmap else []
        return others[0] if others else ""


# ---------------------------------------------------------------------------------------- loading


def load_spine_label_model(region: str = "lumbar", model=None, registry: ModelRegistry | None = None,
                           device=None, onnx: bool = True) -> SpineLabelModel:
    """The spine-label model for ``region`` (the installed default), or the package ``model`` (id or folder).

    On the CPU a package with an ONNX export of its weights runs that (``onnx=False``: torch always): the same
    network without importing torch, which is most of a command line's start-up.
    ModelError when none is installed, the package is for another task, or it serves another region.
    """
    if region not in REGIONS:
        raise InputError(f"Unknown spine region {region!r}; use one of {', '.join(REGIONS)} (or auto).")
    folder = resolve_package(model, TASK, registry, region)
    card = ModelCard.read(folder)
    if onnx and runs_on_cpu(device) and onnx_usable(folder, card):
        check_task(card, TASK)
        verify_weights(folder, card)  # the export names these weights: the card's sha256 ties the two
        networks, where = load_onnx_network(folder, card), "cpu"
    else:
        where = select_device(device)
        card, networks = load_network(folder, task=TASK, device=where)
    if card.region not in (None, region):
        raise ModelError(f"Model {card.id!r} labels the {card.region} spine, not the {region} spine; "
                         f"choose a {region} model or the region {card.region}.")
    if card.network.get("architecture") not in (ARCHITECTURE, HEATMAP):
        raise ModelError(f"Model {card.id!r} is not a SpineLabel detector pair; use a spine-label package "
                         "made by 'spinebrain train spine-label'.")
    if "shape_model" not in card.extra or "anchor_level" not in card.extra:
        raise ModelError(f"Model {card.id!r} has no shape model or anchor level in its card; re-train it with "
                         "'spinebrain train spine-label'.")
    shape_model = SpineShapeModel.from_dict(card.extra["shape_model"])
    ribs = load_rib_classifier(folder, card, where, onnx=isinstance(networks, OnnxNetwork))
    return SpineLabelModel(card, networks, shape_model, str(card.extra["anchor_level"]), where, Path(folder), ribs)


def load_spine_label_models(region: str = "auto", model=None, registry: ModelRegistry | None = None,
                            device=None) -> list[SpineLabelModel]:
    """The models a run uses: one for a region, or every installed region's model for ``"auto"``.

    A ``model`` named with region ``"auto"`` is that one package, whatever its region: an unknown
    id or a folder that is not a package is reported as such, not as "no model installed".
    """
    if region != "auto" or model is not None:
        return [load_spine_label_model(name, folder, registry, device)
                for name, folder in _packages(region, model, registry)]
    models = []
    for name, folder in _packages(region, model, registry):
        try:
            models.append(load_spine_label_model(name, folder, registry, device))
        except ModelError:
            continue  # a package that does not serve this region
    if not models:
        registry = registry or ModelRegistry()
        registry.find(task=TASK)  # raises the registry's message: where it looked, what it skipped and why
        raise ModelError("No SpineLabel model could be loaded; 'spinebrain info' lists the installed models.")
    return models


def _packages(region: str, model, registry: ModelRegistry | None) -> list[tuple[str, Path]]:
    """(region, package folder) of each model a run loads: the one asked for, else every installed region's."""
    if region != "auto":
        return [(region, resolve_package(model, TASK, registry, region))]
    if model is not None:
        folder = resolve_package(model, TASK, registry)
        return [(ModelCard.read(folder).region or "whole", folder)]
    found = []
    for name in REGIONS:
        try:
            found.append((name, resolve_package(None, TASK, registry, name)))
        except ModelError:
            continue  # no model for this region
    return found


def runs_without_torch(region: str = "auto", model=None, registry: ModelRegistry | None = None, device=None) -> bool:
    """Whether the models of such a run all run from their ONNX export (no torch import; the command line's start-up
    then skips MONAI). Anything it cannot tell, a bad argument included, is False: the run itself reports it."""
    try:
        folders = [folder for _name, folder in _packages(region, model, registry)]
        return bool(folders) and runs_on_cpu(device) and all(_exported(f, ModelCard.read(f)) for f in folders)
    except SpineBrainError:
        return False


def _exported(folder: Path, card: ModelCard) -> bool:
    return onnx_usable(folder, card) and rib_export_usable(folder, card)


def label_spine_best(image: sitk.Image, models: Sequence[SpineLabelModel], fixed_points=(), device=None,
                     progress=None, detection_only: bool = False) -> SpineLabelResult:
    """Run each model (region "auto") and keep the labelling the evidence favours (:mod:`.choice`).

    Models that do not know a level of ``fixed_points`` are not run (a fixed L3 is for the lumbar model).
    """
    whole = next((model.setup for model in models if model.region == "whole"), None)
    models = models_knowing(models, fixed_points)
    results, errors, not_run = {}, [], []
    # lumbar first: the common scan, and its heatmap default sees every body, so it can claim the scan alone; then
    # the whole-spine model, which names a neck from C2 as well; the cervical pair only where the whole model refused
    order = sorted(range(len(models)), key=lambda k: AUTO_ORDER.index(models[k].region))
    for index in order:
        claimed = [r for r in results.values() if not detection_only and claims_the_scan(r)]
        if claimed:
            not_run.append(f"{models[index].region} ({models[index].card.id}) not run: the {claimed[0].region} "
                           "labelling is anchored, fits, and no spine is detected beyond it")
            continue
        if models[index].region == "cervical" and any(models[k].region == "whole" for k in results):
            # the whole-spine model names necks better; the pair anchored short lumbar and thoracic views as necks
            # (docs/spinelabel_results.md, session 19): it runs only where the whole-spine model could not
            not_run.append(f"cervical ({models[index].card.id}) not run: the whole-spine model names the neck")
            continue
        try:
            results[index] = label_spine(image, models[index], fixed_points, device, progress, detection_only)
        except InputError as error:  # too little spine at this region's scale, nothing detected...
            errors.append(error)
    if not results:
        raise errors[0]
    # in that order too: a tie (detection only, where nothing is named) goes to the lumbar model's detections
    chosen = choose_labelling([results[k] for k in order if k in results], image, region_auto=len(models) > 1,
                              not_run=not_run)
    if whole is not None and chosen.setup is not None and chosen.setup.region != "whole":
        chosen.setup = replace(chosen.setup, wider=whole)  # a user point beyond the region model's levels
    return chosen


# ------------------------------------------------------------------------------------------ checks


def thickness_along_mm(image: sitk.Image, lps_axis: int) -> float:
    """How far apart the voxels lie along a patient axis (0: R-L, 1: A-P, 2: S-I): a scan's slice thickness there."""
    direction = np.array(image.GetDirection()).reshape(3, 3)  # columns: LPS directions of i, j, k
    return float(max(s * abs(direction[lps_axis, axis]) for axis, s in enumerate(image.GetSpacing())))


def sagittal_thickness_mm(image: sitk.Image) -> float:
    """How thick the voxels are across the sagittal plane (along R): the slice thickness of a sagittal scan."""
    return thickness_along_mm(image, 0)


def check_image(image: sitk.Image, model: SpineLabelModel, detection_only: bool = False) -> None:
    """InputError (one sentence) when the model cannot name the vertebrae of ``image`` (a volume that
    :func:`~spinebrain.validate.check_volume` passed: :func:`label_spine` runs ``check_plausible`` first)."""
    if detection_only:
        return
    offer = "or run with detection only (--detection-only / detection_only=True) to get unnamed vertebra points"
    extent_s = float(extent_ras(image)[2])
    minimum = float(model.card.extra.get("min_spine_extent_mm", DEFAULT_MIN_EXTENT_MM))
    if extent_s < minimum:
        raise InputError(f"The image covers only {extent_s:.0f} mm along the spine, too little spine for the "
                         f"{model.region} model to name vertebrae (it needs at least {minimum:.0f} mm); use a "
                         f"scan with a longer field of view, {offer}.")
    thickness = sagittal_thickness_mm(image)
    maximum = float(model.card.extra.get("max_slice_thickness_mm", DEFAULT_MAX_THICKNESS_MM))
    if thickness > maximum:
        raise InputError(f"The slices are {thickness:.1f} mm thick across the sagittal plane, more than the "
                         f"{maximum:.1f} mm the {model.region} model allows; use a scan with thinner sagittal "
                         f"slices, {offer}.")


def thick_slice_warnings(image: sitk.Image, model: SpineLabelModel) -> list[str]:
    """A warning where the slices are thicker than the card's ``warn_slice_thickness_mm`` across the sagittal plane
    (yet accepted), front to back (A-P: coronal slices) or along the spine (S-I: axial slices).

    Why: on thick sagittal slices the anchor detector answers less often (the names then rest on the spine's shape
    alone); on thick axial slices bodies merge or split and the sacrum shows more bodies (whole-spine model on
    generated whole views 181001-181012 made axial: 94.6 % named right at 3 mm, 83.3 % at 6 mm; lumbar default on the
    real MR validation scans: 100 % at 1 mm, 90.1 % at 6 mm).
    """
    limit = model.card.extra.get("warn_slice_thickness_mm")
    if limit is None:
        return []
    warnings = []
    for where, axis in (("sagittal slices", 0), ("coronal slices (front to back)", 1),
                        ("axial slices (along the spine)", 2)):
        thickness = thickness_along_mm(image, axis)
        if thickness > float(limit):
            warnings.append(f"The {where} are {thickness:.1f} mm thick (over {float(limit):.1f} mm): the names are "
                            "less certain there; check them, or fix one point and relabel.")
    return warnings


# -------------------------------------------------------------------------------------- the pipeline


def detect_candidates(image: sitk.Image, model: SpineLabelModel, progress=None) -> tuple[list[Candidate], int | None]:
    """Run both detectors on the sagittal slab: (3D candidates, index of the accepted anchor or None).

    The spine need not lie in the middle of the volume's left-right extent, so the vertebra
    detector first runs on a wider slab (``search_slices_each_side``); the slab used is the window
    of ``2 * slices_each_side + 1`` slices with the most detection there.
    """
    if model.is_heatmap:  # the dense U-Net detector (card extra "heatmap")
        return heatmap_candidates(image, model, progress)
    each = int(model.setting("slab", "slices_each_side"))
    search = max(int(model.setting("slab", "search_slices_each_side")), each)
    wide = extract_sagittal_slab(image, model.pixel_mm, search, float(model.setting("slab", "step_mm")))
    _update(progress, 0.2, f"vertebra detector on {len(wide)} sagittal slices")
    options = {"threshold": float(model.setting("detection", "threshold")),
               "merge_distance_mm": float(model.setting("detection", "merge_distance_mm")),
               "min_area_px": int(model.setting("detection", "min_area_px"))}
    wide_maps = detect_slab(model.networks.vertebra, wide, full_resolution=False, device=model.device)
    window = _spine_window(wide_maps, options["threshold"], 2 * each + 1)
    slab, vertebra_maps = wide.crop(window), wide_maps[window]
    _update(progress, 0.5, f"anchor ({model.anchor_level}) detector")
    anchor_maps = detect_slab(model.networks.anchor, slab, full_resolution=False, device=model.device)
    detections = merge_nearby(detections_from_maps(vertebra_maps, slab, **options), _merge_radius_mm(model))
    anchor_threshold = float(model.setting("detection", "anchor_threshold"))
    anchors = [d for d in detections_from_maps(anchor_maps, slab, **options) if d.mean_probability >= anchor_threshold]
    for answer in anchors:  # rank by strength and size: the true anchor gives the largest confident answer
        answer.mean_probability *= answer.probability
    return attach_anchor([d.to_candidate() for d in detections], anchors, _merge_radius_mm(model), add_unmatched=False)


def _merge_radius_mm(model: SpineLabelModel) -> float:
    """Detections closer than this are one vertebra: a fraction (card ``detection.merge_fraction``) of the median step."""
    return float(model.setting("detection", "merge_fraction")) * model.shape_model.median_step()


def _spine_window(maps: np.ndarray, threshold: float, width: int) -> slice:
    """The ``width`` consecutive slices holding the most detection mass (ties: the one nearest the middle)."""
    if len(maps) <= width:
        return slice(0, len(maps))
    mass = np.where(maps > threshold, maps, 0.0).sum(axis=(1, 2))
    totals = np.convolve(mass, np.ones(width), mode="valid")
    middle = (len(totals) - 1) / 2.0
    start = min(np.flatnonzero(totals >= totals.max() - 1e-9), key=lambda k: abs(k - middle))
    return slice(int(start), int(start) + width)


def label_spine(image: sitk.Image, model: SpineLabelModel, fixed_points: Sequence[LabelledPoint] = (),
                device=None, progress=None, detection_only: bool = False) -> SpineLabelResult:
    """Detect and name the vertebrae of a 3D scan; ``fixed_points`` (RAS, named) are held fixed.

    ``device`` overrides the model's device for this run. With ``detection_only`` the points are
    the unnamed detections ("Vertebra 1" ... top to bottom) and the too-little-spine checks are skipped.
    """
    plausibility = check_plausible(image, model.card.modalities)  # first: is it a scan at all (the task hook)
    fixed_points = check_points_type(list(fixed_points), "fixed points")
    check_points_in_image(fixed_points, image)
    start = time.perf_counter()
    progress = as_progress(progress)
    check_image(image, model, detection_only)
    if device is not None:
        _move_to(model, device)
    _update(progress, 0.05, f"{model.region} model {model.card.id}: sagittal slab")
    candidates, anchor = detect_candidates(image, model, progress)
    if not candidates:
        raise InputError("No vertebrae were detected in the image; check that it shows the spine (CT, T1 or T2 MR) "
                         "and that the chosen region or model fits it.")
    if detection_only:
        result = _detections_only(candidates, model)
    else:
        candidates = second_look_if_tilted(image, model, candidates, progress)
        if model.ribs is not None:
            _update(progress, 0.75, "rib classifier on each vertebra")
            candidates = with_rib_evidence(image, candidates, model.ribs, model.shape_model.spine_direction())
        _update(progress, 0.8, "naming the vertebrae (graphical model)")
        result = solve_labelling(candidates, model.setup, fixed_points)
    result.seconds = time.perf_counter() - start
    _update(progress, 1.0, f"{len(result.points)} vertebrae in {result.seconds:.1f} s")
    result.warnings[:0] = plausibility + ([] if detection_only else thick_slice_warnings(image, model))
    return result


def _move_to(model: SpineLabelModel, device) -> None:
    """Run ``model`` on ``device`` from now on; an ONNX network asked onto a GPU is replaced by its torch network."""
    if isinstance(model.networks, OnnxNetwork) and runs_on_cpu(device):
        return
    chosen = select_device(device)
    if isinstance(model.networks, OnnxNetwork):
        model.card, model.networks = load_network(model.package, task=TASK, device=chosen)
        model.ribs = load_rib_classifier(model.package, model.card, chosen, onnx=False)
    elif chosen != model.device:
        model.networks.to(chosen)
        if model.ribs is not None:
            model.ribs.move_to(chosen)
    model.device = chosen


def second_look_if_tilted(image: sitk.Image, model: SpineLabelModel, candidates: list[Candidate],
                          progress=None) -> list[Candidate]:
    """The candidates of the scan turned upright, turned back onto the scan, where the detections lie tilted
    in the coronal plane (by :data:`.upright.MIN_TILT_DEGREES` or more); else ``candidates`` unchanged.

    Why: the heatmap detector learnt spines lying straight; tilted 6-12 degrees, it loses or misplaces the anchor
    answer. The paper's detector pairs (measured without it) keep one look. The turned grid is at least 1 mm
    (the detectors work at 2 mm) and wider, so the spine stays in view.
    """
    if not model.is_heatmap:
        return candidates
    frame = CoronalFrame(np.array([c.position for c in candidates], float))
    if not frame.turned:
        return candidates
    _update(as_progress(progress), 0.5, f"the spine is tilted {abs(frame.degrees):.0f} degrees: looking again upright")
    turn = frame.turn()
    again, _anchor = detect_candidates(turn.image(image, grow=TILT_GROW, min_spacing_mm=1.0), model)
    if not again:
        return candidates
    again = [replace(c, position=turn.back(c.position)) for c in again]
    named = solve_labelling(again, model.setup).points
    chain = np.array(sorted((p.ras for p in named), key=lambda ras: -ras[2]), float).reshape(-1, 3)  # head to feet
    return again + first_look_misses(candidates, again, chain, _merge_radius_mm(model), model.shape_model.median_step())


def first_look_misses(first: list[Candidate], second: list[Candidate], chain: np.ndarray, radius_mm: float,
                      step_mm: float) -> list[Candidate]:
    """First-look vertebra detections that fill a gap in the second look's named chain, as plain vertebra
    candidates (their anchor answers dropped: on a tilted scan those are what the second look replaces).

    ``chain``: the positions the graph names from the second look, head to feet. A gap: two consecutive ones more
    than :data:`SECOND_LOOK_GAP_STEPS` median steps (``step_mm``) apart; a first-look detection fills it when it
    lies within ``radius_mm`` of the line between them and has no second-look detection within ``radius_mm``.

    Why: turned upright, a vertebra unlike its neighbours (a compressed body) can fall under the threshold though
    the first look found it; other first-look detections (off the spine, beyond its ends) are what the second look
    replaces.
    """
    taken = np.array([c.position for c in second], float).reshape(-1, 3)
    gaps = [(upper, lower) for upper, lower in zip(chain[:-1], chain[1:])
            if np.linalg.norm(upper - lower) > SECOND_LOOK_GAP_STEPS * step_mm]
    return [replace(c, anchor_probability=0.0, ends=None, beyond=0.0, second_anchor_probability=0.0) for c in first
            if np.min(np.linalg.norm(taken - np.asarray(c.position, float), axis=1), initial=np.inf) > radius_mm
            and any(_distance_to_segment(np.asarray(c.position, float), *gap) <= radius_mm for gap in gaps)]


#: Consecutive named vertebrae this many median steps apart leave room for one between them (the heatmap's own gap
#: filler, :data:`.heatmap.GAP_STEPS`, judges its detections by local steps; this judges the graph's named chain).
SECOND_LOOK_GAP_STEPS = 1.4


def _distance_to_segment(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    span = end - start
    along = np.clip(np.dot(point - start, span) / max(float(np.dot(span, span)), 1e-9), 0.0, 1.0)
    return float(np.linalg.norm(point - (start + along * span)))


def relabel(result_or_candidates, model: SpineLabelModel | LabellingSetup | None = None,
            fixed_points: Sequence[LabelledPoint] = ()) -> SpineLabelResult:
    """Re-solve the labels from kept candidates (a result or a candidate list) with ``fixed_points`` fixed; no CNN.

    ``model`` may be left out for a result: its own :attr:`~SpineLabelResult.setup` (the run's model
    card options) is used, so a relabel with nothing changed gives the run's labels.
    """
    start = time.perf_counter()
    is_result = isinstance(result_or_candidates, SpineLabelResult)
    candidates = result_or_candidates.candidates if is_result else list(result_or_candidates)
    if model is None:
        if not is_result or result_or_candidates.setup is None:
            raise InputError("Give the model (or the result of the run) whose options the relabel must use.")
        model = result_or_candidates.setup
    setup = model.setup if isinstance(model, SpineLabelModel) else model
    result = solve_labelling(candidates, setup, fixed_points)
    result.seconds = time.perf_counter() - start
    return result


def _detections_only(candidates: list[Candidate], model: SpineLabelModel) -> SpineLabelResult:
    ordered = sorted(candidates, key=lambda c: -float(c.position[2]))  # head to feet
    points = [LabelledPoint(f"Vertebra {n}", tuple(float(v) for v in c.position), round(float(c.probability), 4))
              for n, c in enumerate(ordered, start=1)]
    labelling = LabellingResult([], 0.0, False, 0.0)
    return SpineLabelResult(points, list(candidates), labelling,
                            ["Detection only: the points are not named."], model.region, 0.0, model.setup)


def _update(progress: Progress, fraction: float, message: str) -> None:
    progress.update("spine-label", fraction, message)
