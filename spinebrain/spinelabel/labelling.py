"""Naming detections with the graph: the one solve a run, a relabel and the Slicer Logic share.

A :class:`LabellingSetup` holds everything a solve depends on besides the detections: the shape
model, the anchor level and the model card's labelling options (e.g. transitional penalty 25 where
the graph's default is 5). Every :class:`SpineLabelResult` carries the setup of the run that made
it, so a relabel of its points re-uses exactly those options and gives the run's labels back when
nothing was changed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from ..points import ESTIMATE_NOTE, LabelledPoint
from .graph import TRANSITIONAL, Candidate, LabellingResult, SpineShapeModel, label_candidates
from .level_evidence import name_by_levels
from .rib_evidence import name_by_ribs
from .sacrum_evidence import name_by_sacrum
from .operations import candidates_from_points
from .upright import CoronalFrame

#: Options of graph.label_candidates a model card may set (card extra "labelling"), with their defaults.
DEFAULT_LABELLING = {"transitional_penalty": 5.0, "gap_penalty": 10.0}
#: A detection this close (in units of the mean vertebra step) to a user point is that vertebra.
_SAME_VERTEBRA_FRACTION = 0.4


@dataclass(frozen=True)
class LabellingSetup:
    """What a solve depends on besides the detections: a relabel with the same setup gives the same labels."""

    shape_model: SpineShapeModel
    anchor_level: str  # "C2" / "S1": the level the anchor detector finds
    options: dict = field(default_factory=lambda: dict(DEFAULT_LABELLING))  # label_candidates keyword options
    region: str = "whole"
    model_id: str = ""
    level_classes: tuple = ()  # a detector's level classes (card extra "level_classes"); () without
    evidence: dict = field(default_factory=dict)  # how level evidence names (card extra "evidence")
    #: anchor answers at least this share of the strongest are "strong" (card extra "anchor_strong_share";
    #: 1.0: only the strongest, for a detector taught that L4 / S1 are not the anchor)
    anchor_strong_share: float = 0.5
    #: the outermost strong answer is tried first only where the spine ends at it (card extra
    #: "anchor_outermost_at_end"); with vertebra heat or a detection beyond it the strongest comes first
    anchor_outermost_at_end: bool = False
    #: the rib classifier's decision options (card extra "ribs", :mod:`.rib_evidence`); empty: no rib evidence
    ribs: dict = field(default_factory=dict)
    #: how the outermost and the strongest anchor answers are weighed by the graph's fit (card extra
    #: "anchor_cost_choice", :data:`ANCHOR_COST_CHOICE`); empty: the rule above alone
    anchor_cost_choice: dict = field(default_factory=dict)
    #: a whole-spine model's other anchor (C2; its answers in ``Candidate.second_anchor_probability``); "": none
    second_anchor_level: str = ""
    #: the whole-spine model's setup where "auto" kept a region model's labelling: a user point at a level the region
    #: model does not name (T9 on a lumbar labelling of a thoracolumbar view) is solved with it (:func:`naming_setup`)
    wider: LabellingSetup | None = None


@dataclass
class SpineLabelResult:
    points: list[LabelledPoint]
    candidates: list[Candidate]
    labelling: LabellingResult
    warnings: list[str]
    region: str
    seconds: float
    setup: LabellingSetup | None = None  # the run's model and options: what a relabel must re-use
    choice: str = ""  # with region "auto": why this region's model was kept (see choice.py)


def solve_labelling(candidates: Sequence[Candidate], setup: LabellingSetup,
                    fixed_points: Sequence[LabelledPoint] = ()) -> SpineLabelResult:
    """Name the detections with the graph, ``fixed_points`` (named, RAS) held fixed, as ``setup`` says.

    The one solve behind a run (:func:`~spinebrain.spinelabel.pipeline.label_spine`), a relabel
    (:func:`~spinebrain.spinelabel.pipeline.relabel`) and the Slicer Logic's edits
    (:func:`relabel_points`): the same candidates, fixed points and setup give the same labels.
    """
    candidates = list(candidates)
    run_setup, setup = setup, naming_setup(setup, fixed_points)
    fixed = _fixed_positions(fixed_points)
    kept = _without_fixed_vertebrae(candidates, fixed, setup.shape_model)
    originals = [candidates[k] for k in kept]
    frame = CoronalFrame(np.array([c.position for c in originals], float).reshape(-1, 3))
    usable, fixed = frame.candidates(originals), frame.fixed(fixed)
    labelling = label_candidates(usable, setup.shape_model, fixed=fixed, **setup.options)
    by_levels = name_by_levels(usable, setup, fixed, labelling)
    if by_levels is not None:
        labelling = by_levels
    elif setup.anchor_level in setup.shape_model.levels and setup.evidence.get("fallback", "anchor") == "anchor":
        free, labelling = labelling, _anchored(usable, setup, fixed, labelling)
        if setup.second_anchor_level:
            labelling = _from_both_ends(usable, setup, fixed, free, labelling)
    labelling = name_by_ribs(usable, setup, fixed, name_by_sacrum(usable, setup, fixed, labelling))
    labelling = frame.restore(labelling, originals)
    points = labelling.to_points()
    by_label = {p.label: p for p in fixed_points}
    points = [LabelledPoint(p.label, by_label[p.label].ras, None, True, by_label[p.label].description)
              if p.user_set and p.label in by_label else p for p in points]
    points = with_estimates(points, labelling.missing, setup.shape_model)
    warnings = _warnings(labelling, setup, bool(fixed))
    if setup is not run_setup:
        beyond = sorted({p.label for p in fixed_points} - set(run_setup.shape_model.levels))
        warnings.insert(0, f"Your point {', '.join(beyond)} is beyond the {run_setup.region} model's levels: the "
                        f"labels were solved with the {setup.region} model ({setup.model_id}).")
    return SpineLabelResult(points, candidates, labelling, warnings, setup.region, 0.0, setup)


def naming_setup(setup: LabellingSetup, fixed_points: Sequence[LabelledPoint]) -> LabellingSetup:
    """``setup``, or its :attr:`~LabellingSetup.wider` one where only that names every level of ``fixed_points``.

    Why: "auto" keeps the region model whose labelling the evidence favours, and a flagged view's fix is one user
    point, at whatever level the user reads there; a level the region model lacks would otherwise be refused (on
    fresh generated views, two of 81 one-point fixes, docs/spinelabel_results.md session 20). The result then
    carries the wider setup, so later relabels of the same points solve as this one did.
    """
    wanted = {point.label for point in fixed_points}
    wider = setup.wider
    if wanted <= set(setup.shape_model.levels) or wider is None or not wanted <= set(wider.shape_model.levels):
        return setup
    return wider


def with_estimates(points: list[LabelledPoint], missing: Sequence[str], shape_model: SpineShapeModel):
    """``points`` and, for each level the path jumped over, a point placed between its named neighbours.

    The labelling says the level is there (e.g. C4 between a C3 and a C5 pinned from both ends) though
    nothing was detected: the user sees every level named, the estimate flagged (:data:`ESTIMATE_NOTE`,
    confidence 0) rather than a silent hole. It sits on the line between the neighbours, at the share of the
    distance the shape model's mean steps give (a cervical step is shorter than a thoracic one).
    """
    by_level = {p.label: p for p in points}
    order = shape_model.levels
    estimates = []
    for level in missing:
        at = order.index(level)
        upper = next((lv for lv in reversed(order[:at]) if lv in by_level), None)
        lower = next((lv for lv in order[at + 1:] if lv in by_level), None)
        if upper is None or lower is None:
            continue
        above, below = (shape_model.displacement(*pair) for pair in ((upper, level), (level, lower)))
        if above is None or below is None:
            continue
        share = np.linalg.norm(above.mean) / (np.linalg.norm(above.mean) + np.linalg.norm(below.mean))
        start, end = (np.asarray(by_level[lv].ras, float) for lv in (upper, lower))
        estimates.append(LabelledPoint(level, tuple(float(v) for v in start + share * (end - start)), 0.0,
                                       description=f"{ESTIMATE_NOTE}: placed between {upper} and {lower}"))
    if not estimates:
        return points
    return sorted(points + estimates, key=lambda p: order.index(p.label) if p.label in order else len(order))


def relabel_points(points: Sequence[LabelledPoint], candidates: Sequence[Candidate] | None,
                   setup: LabellingSetup) -> SpineLabelResult:
    """Re-name edited points exactly as the run that made them would (for the Slicer Logic's Relabel): the solve's
    result, its ``points`` the list renamed, its ``setup`` the one that named them (``setup.wider`` where a user
    point is beyond ``setup``'s levels, :func:`naming_setup`; its warnings then say so first).

    ``points``: the current list; its ``user_set`` points are held fixed and come back unchanged.
    ``candidates``: the run's detections as edited since (``None``: the points that are not user-set,
    e.g. a list loaded from a file or made by another process; the one named ``setup.anchor_level``
    anchors them, as the anchor did in the run). ``setup``: the run's :attr:`SpineLabelResult.setup`, so the
    model card's options (transitional penalty, gap penalty) and the anchor rule are the run's own.
    """
    fixed_points = [p for p in points if p.user_set]
    if candidates is None:  # the point named as the anchor level is the anchor answer, as in the run
        candidates = candidates_from_points([p for p in points if not p.user_set], setup.anchor_level)
    return solve_labelling(candidates, setup, fixed_points)


#: Anchor answers tried, strongest first, and the share of the free path's standard levels an anchored
#: path must cover, else its anchor is taken for a false answer (false detections beyond the true end
#: vertebra lengthen the free path, so the share is well below 1).
_ANCHORS_TRIED, _COVERAGE_SHARE = 3, 0.6

#: The graph's fit as a second opinion on the anchor rule (:func:`_fits_far_better`): each anchored path's cost
#: (-2 log likelihood) less ``coverage_cost`` for every standard level it names, and the other answer only where
#: it is cheaper by more than ``margin``. Chosen on development scans (session 14, docs/spinelabel_results.md).
ANCHOR_COST_CHOICE = {"coverage_cost": 20.0, "margin": 12.0}


def _anchored(usable: list[Candidate], setup: LabellingSetup, fixed, free: LabellingResult):
    """The labelling with the strongest anchor answer that fits the spine the detections show.

    The anchor detector also answers on other vertebrae (L4 / L5 or S2, C3, now and then one far away
    on a whole-spine view). Of the strong answers (score mean probability x relative area, at least
    ``setup.anchor_strong_share`` of the best) the outermost is tried first (a weaker S2 answer stays
    below the strong share), then the others by score. Where the outermost and the strongest differ, the
    graph's fit may overrule that order (:func:`_fits_far_better`). A true anchor leaves the path about as
    long as without it; pinning a false one cuts the spine short (an "S1" in the neck leaves nothing below
    it), so such an answer is passed over for the next; with none left the labelling stays unanchored.
    """
    ranked = sorted((k for k, c in enumerate(usable) if c.anchor_probability > 0),
                    key=lambda k: -usable[k].anchor_probability)[:_ANCHORS_TRIED]
    # each anchor's path is solved once: the fit check and the tries below share it
    anchored_at = functools.cache(lambda index: _anchored_at(usable, setup, fixed, index))
    if ranked:  # of the strong answers the outermost first: the detector also answers on L4 / L5 (C3)
        best = usable[ranked[0]].anchor_probability
        strong = [k for k in ranked if usable[k].anchor_probability >= setup.anchor_strong_share * best]
        outwards = setup.shape_model.outwards(setup.anchor_level)  # S1 / L5 prefer the lowest answer, C2 the highest
        outer = max(strong, key=lambda k: float(np.dot(usable[k].position, outwards)))
        first = outer
        if setup.anchor_outermost_at_end and _spine_goes_on(usable, outer, setup):
            first = ranked[0]
        other = ranked[0] if first == outer else outer
        if other != first and setup.anchor_cost_choice and _fits_far_better(
                anchored_at(other), anchored_at(first), setup.anchor_cost_choice):
            first = other
        ranked = [first] + [k for k in ranked if k != first]
    free_coverage = _coverage(free)
    for index in ranked:
        anchored = anchored_at(index)
        if anchored is not None and _coverage(anchored) >= _COVERAGE_SHARE * free_coverage:
            return anchored
    return free


def _anchored_at(usable, setup: LabellingSetup, fixed, index: int) -> LabellingResult | None:
    """The labelling with ``usable[index]`` as the anchor; None where it cannot sit on one spine with the user's points."""
    try:
        return label_candidates(usable, setup.shape_model, anchor=(setup.anchor_level, index), fixed=fixed,
                                **setup.options)
    except InputError:
        return None


def _fits_far_better(path: LabellingResult | None, than: LabellingResult | None, choice: dict) -> bool:
    """Whether ``path`` (anchored at one answer) fits the shape model far better than ``than`` (at another).

    Why: where the spine ends at the outermost answer (nothing beyond it), the rule takes it, right for a scan cut
    at L5, wrong where the detector answers weakly on S1 and the sacrum below gives no vertebra heat: every name is
    then one level high. The path pinned one level off pays for it in the shape model (the L5-S1 step named L4-L5),
    so a far lower cost picks the other answer; a path that names fewer standard levels pays ``coverage_cost`` for
    each, since leaving a detection out also lowers the cost. ``choice``: the card's ``anchor_cost_choice``.
    """
    if path is None or than is None:
        return False
    weight = float(choice["coverage_cost"])
    fit = [labelling.cost - weight * _coverage(labelling) for labelling in (path, than)]
    return fit[0] < fit[1] - float(choice["margin"])


def _spine_goes_on(usable: list[Candidate], index: int, setup: LabellingSetup) -> bool:
    """Whether the spine goes on about one vertebra beyond ``usable[index]`` towards the anchor's end.

    Why it matters: a scan that ends at the anchor level (a thoracolumbar CT down to L5) makes the anchor
    detector answer more strongly one level inwards (L4), so the outermost strong answer is the better guess
    there; where the spine goes on beyond the outermost answer (S1 answering under a stronger L5, the sacrum
    below), the scan does not end at it and the strongest answer is the better guess. The evidence: vertebra
    heat on the spine's axis there (``Candidate.beyond``, from a heatmap detector), or a detection there, which
    may sit further off the axis (S2 behind the lumbar axis where the sacrum tilts back).
    """
    origin, shape = usable[index].position, setup.shape_model
    return usable[index].beyond > 0 or any(
        shape.one_step_beyond(origin, c.position, setup.anchor_level, _DETECTION_OFF_AXIS_STEPS)
        for k, c in enumerate(usable) if k != index)


#: How far off the spine's axis (vertebra steps) a detection one step beyond an anchor answer may lie.
_DETECTION_OFF_AXIS_STEPS = 1.5


def _from_both_ends(usable: list[Candidate], setup: LabellingSetup, fixed, free: LabellingResult,
                    first: LabellingResult) -> LabellingResult:
    """A whole-spine model's labelling: from its second anchor (C2) too, and pinned at both ends where that fits.

    Why: named from one end, a body missed halfway (a faint T12) shifts every name beyond it by one level; pinned
    at both ends, the graph must leave a gap there instead. The path through both pins is kept where it names at
    least as many standard levels as the shorter one-end path (a false answer at one end cuts the spine short: a
    spine must fit between the pins); else the one-end path that is anchored, then the more certain. Not the one
    naming more levels: a false detection beyond the far end (S2 below S1) lengthens a shifted path.
    """
    other = replace(setup, anchor_level=setup.second_anchor_level, second_anchor_level="",
                    anchor_outermost_at_end=False, anchor_cost_choice={})  # both tuned on the L5 anchor
    swapped = [replace(c, anchor_probability=c.second_anchor_probability,
                       second_anchor_probability=c.anchor_probability, beyond=0.0) for c in usable]
    second = _anchored(swapped, other, fixed, free)
    better = max((first, second), key=lambda labelling: (labelling.anchored, labelling.certainty))
    pins = [_pin(first, setup.anchor_level), _pin(second, other.anchor_level)]
    if None in pins:
        return better
    try:
        both = label_candidates(usable, setup.shape_model, anchor=tuple(pins), fixed=fixed, **setup.options)
    except InputError:
        return better
    return both if both.anchored and _coverage(both) >= min(_coverage(first), _coverage(second)) else better


def _pin(labelling: LabellingResult, level: str) -> tuple[str, int] | None:
    """(level, index of the detection named ``level``) of an anchored labelling; None where it is not anchored."""
    named = [a.candidate for a in labelling.assignments if a.level == level and a.candidate is not None]
    return (level, named[0]) if labelling.anchored and named else None


def _coverage(labelling: LabellingResult) -> int:
    return sum(a.level not in TRANSITIONAL for a in labelling.assignments)


def _fixed_positions(fixed_points) -> dict[str, np.ndarray]:
    fixed: dict[str, np.ndarray] = {}
    for point in fixed_points:
        if point.label in fixed:
            raise InputError(f"Two fixed points are named {point.label}; keep one point per vertebra.")
        fixed[point.label] = np.asarray(point.ras, dtype=float)
    return fixed


def _without_fixed_vertebrae(candidates, fixed, shape_model: SpineShapeModel) -> list[int]:
    """Indices of the detections that are not the vertebrae the user fixed (so none is named twice)."""
    if not fixed:
        return list(range(len(candidates)))
    step = float(np.mean([np.linalg.norm(p.mean) for p in shape_model.pairs.values()]))
    radius = _SAME_VERTEBRA_FRACTION * step
    return [k for k, c in enumerate(candidates)
            if all(np.linalg.norm(np.asarray(c.position) - position) > radius for position in fixed.values())]


def _warnings(labelling: LabellingResult, setup: LabellingSetup, user_fixed: bool) -> list[str]:
    warnings = list(labelling.notes)
    if not labelling.anchored:
        anchors = " or ".join(filter(None, (setup.anchor_level, setup.second_anchor_level)))
        warnings.append(f"No anchor ({anchors}) visible: labels are uncertain; "
                        "set one label to anchor the rest.")
    if labelling.missing:
        warnings.append(f"No detection for {', '.join(labelling.missing)} between the labelled vertebrae: "
                        "placed between their neighbours (confidence 0); check those levels.")
    if not labelling.assignments and not user_fixed:
        warnings.append("The detections could not be joined into a spine; check the region and the image.")
    return warnings
