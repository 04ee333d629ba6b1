"""Naming from dense level evidence: every detected body votes for the level it looks like.

The heatmap detector with a level output (:mod:`.heatmap`, card ``extra["level_classes"]``) gives
each candidate a probability over level classes (``Candidate.levels``: "upper" = above T8, T8 ...
S1) and the heights of its L5 and S1 heatmaps there (``Candidate.ends``). The graph's free path
fixes the *order* of the bodies and where levels are jumped; what it cannot know is the offset of
the whole chain. Here each offset (shift) of the free path's names is scored by the summed log
probabilities of all its bodies' level classes (and, weighted, the L5 / S1 heatmaps as yes / no
answers), the scores become a posterior over shifts, and

* with one shift at least ``share`` probable, the chain is pinned at its most certain body
  (the graph re-solves with that anchor), certainty = the shift's posterior;
* otherwise there is no decision here (the caller falls back to the anchor answers, or leaves the
  labels uncertain).

Hand-written: this is the graph's decision step, specific to this pipeline; no library offers it.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .graph import TRANSITIONAL, Candidate, LabellingResult, label_candidates

#: Defaults of the card's ``extra["evidence"]``: shifts tried each way, the posterior a shift needs,
#: the weight of the L5 / S1 heatmaps' yes / no answers, and the floor of any probability (a label
#: no class allows, below S1, gets the floor).
DEFAULT_EVIDENCE = {"max_shift": 4, "share": 0.9, "end_weight": 1.0, "floor": 1e-3}


def shift_scores(free: LabellingResult, usable: list[Candidate], standard: list[str], classes: list[str],
                 options: dict) -> dict[int, float]:
    """Log-likelihood of each shift (+ = towards the sacrum) of the free path's names, summed over its bodies."""
    floor = float(options["floor"])
    scores = {}
    for shift in range(-int(options["max_shift"]), int(options["max_shift"]) + 1):
        total = 0.0
        for assignment in free.assignments:
            if assignment.candidate is None or assignment.level in TRANSITIONAL:
                continue
            candidate = usable[assignment.candidate]
            name = _shifted(assignment.level, shift, standard)
            total += _log_level(candidate, name, classes, floor)
            total += float(options["end_weight"]) * _log_ends(candidate, name, floor)
        scores[shift] = total
    return scores


def _shifted(level: str, shift: int, standard: list[str]) -> str | None:
    """The level ``shift`` standard levels caudal of ``level``; "upper" above the model's first, None below S1."""
    position = standard.index(level) + shift
    if position < 0:
        return "upper"
    return standard[position] if position < len(standard) else None


def _log_level(candidate: Candidate, name: str | None, classes: list[str], floor: float) -> float:
    if candidate.levels is None:
        return 0.0
    if name is None or name not in classes:
        return float(np.log(floor))  # below S1: no body there should have been detected
    return float(np.log(max(float(candidate.levels[classes.index(name)]), floor)))


def _log_ends(candidate: Candidate, name: str | None, floor: float) -> float:
    """The L5 and S1 heatmaps as yes / no answers: high where the name is L5 (S1), low elsewhere."""
    if candidate.ends is None:
        return 0.0
    total = 0.0
    for level, height in zip(("L5", "S1"), candidate.ends):
        height = float(np.clip(height, floor, 1.0 - floor))
        total += float(np.log(height if name == level else 1.0 - height))
    return total


def posterior(scores: dict[int, float]) -> dict[int, float]:
    shifts = list(scores)
    values = np.array([scores[s] for s in shifts])
    weights = np.exp(values - values.max())
    return dict(zip(shifts, weights / weights.sum()))


def name_by_levels(usable: list[Candidate], setup, fixed, free: LabellingResult) -> LabellingResult | None:
    """The labelling pinned where the level evidence points, or None when it is not decisive (see module text)."""
    if fixed or not setup.level_classes or not any(c.levels is not None for c in usable):
        return None
    options = {**DEFAULT_EVIDENCE, **setup.evidence}
    standard = list(setup.shape_model.standard_levels)
    classes = list(setup.level_classes)
    chances = posterior(shift_scores(free, usable, standard, classes, options))
    best = max(chances, key=chances.get)
    if chances[best] < float(options["share"]):
        return None
    pins = [(float(_log_level(usable[a.candidate], _shifted(a.level, best, standard), classes, options["floor"])),
             _shifted(a.level, best, standard), a.candidate)
            for a in free.assignments if a.candidate is not None and a.level not in TRANSITIONAL]
    pins = [pin for pin in pins if pin[1] in setup.shape_model.levels]
    if not pins:
        return None
    _, level, index = max(pins)
    pinned = [Candidate(c.position, c.probability, c.anchor_probability, c.levels, c.ends) for c in usable]
    pinned[index].anchor_probability = float(chances[best])  # the labelling's certainty: the shift's posterior
    try:
        return label_candidates(pinned, setup.shape_model, anchor=(level, index), **setup.options)
    except InputError:
        return None


__all__ = ["DEFAULT_EVIDENCE", "name_by_levels", "shift_scores", "posterior"]
