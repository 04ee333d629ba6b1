"""Naming from the last rib: the thoracolumbar boundary as a second anchor (T12 = the last vertebra with a rib).

The rib classifier (:mod:`.ribs`) gives each detected body P(it carries a rib) (``Candidate.rib``). Along the
named chain (head to feet, the sacrum left out) every place of the boundary k (the first k bodies carry ribs,
the others do not; k = 0 and k = n: the boundary lies outside the view) gets the likelihood of the answers,
and the likelihoods a posterior (uniform prior). With one place at least ``share`` probable:

* an unanchored chain whose boundary lies in view is anchored there: its last rib-bearing body is T12, and the
  graph re-solves with that anchor (certainty = the boundary's posterior);
* only where the card asks for it (``transitional`` 1: the whole-spine package; off in the lumbar default), a
  detection is named S1 and the L5 detector answered on the body named L5: a chain anchored by the L5 detector (the
  last lumbar above the sacrum) whose boundary lies one body higher than its names say has six lumbar vertebrae
  (its lowest is L6, where that body answers "no rib" as a lumbar vertebra does); one body lower, four (its lowest
  is L4): the names are moved one level and a note asks the user to check the count. Further apart, the anchor is
  kept (one of the two answers is wrong, and the anchor detector has been measured far more).

The thoracic count itself (11 or 13 rib pairs) cannot be seen without T1 in view: T12 is the name given to the
last rib-bearing body.

Where a body's answer contradicts the likeliest boundaries (a rib below the last one, or none between the first and
the last), the classifier is out of its depth on the scan and nothing is named from it; bodies beyond the levels it was
taught (above C3's place, below L5's) are not asked.

A classifier taught the cervicothoracic junction too (card ``first_rib`` 1; rib_data recipe "whole") also gives
the **first rib**: the chain then has two boundaries (rib-free necks, rib-bearing thoracic bodies, rib-free lumbar
ones), each place pair gets the likelihood of the answers, and an unanchored chain whose last rib is not decisive
but whose first rib is (a thoracic view without the thoracolumbar junction) is anchored with T1 on the first
rib-bearing body. With both boundaries, the ribs also correct an anchored chain:

* twelve rib-bearing bodies between the two (decisive, or where the names' own places are rejected, the likelier)
  name the thorax whatever the anchors said (an L5 answer on a sixth lumbar vertebra, a C2 answer on C3);
* eleven in a row, with no gap among or below them: T1 ... T11, then L1 (eleven rib pairs), where the chain has no
  anchor or an L5 answer that agrees below the ribs; the neck is re-solved from T1 (and C2). A level the path jumped
  just above the first rib is no gap where a C2 answer and five neck bodies lie above it (pinned at C2 and L5, an
  eleven-rib spine must jump one somewhere);
* C2 with a decisive first rib names the neck (seven cervical vertebrae: a missed neck body becomes a gap, not a
  shift), unless the body below the first rib answers "no rib" (no thorax is one body long); without a C2 answer,
  a decisive first rib counted down to a body with an L5 answer outranks another L5 answer (on S1 or L4).

The classifier was never taught C1 or C2: their answers are left out.

Hand-written: this is the graph's decision step, specific to this pipeline; no library offers it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..anatomy import vertebra_index
from ..errors import InputError
from .graph import FULL_ORDER, TRANSITIONAL, Assignment, Candidate, LabellingResult, label_candidates

#: Defaults of the card's ``extra["ribs"]`` decision options: the posterior a boundary needs, the floor of a
#: classifier's answer (its answers are not trusted beyond 1:49), and whether (1) or not (0) an L5-anchored chain
#: is moved to a six- or four-lumbar count. Off by default: it hinges on one body's answer, and on CT from the
#: VerSe map (ribless thoracic vertebrae) and a narrow real MR it moved right chains (docs/spinelabel_results.md).
DEFAULT_RIBS = {"share": 0.9, "floor": 0.02, "transitional": 0.0, "first_rib": 0.0}
LAST_RIB, FIRST_RIB = "T12", "T1"


def boundary_posterior(chances, floor: float) -> np.ndarray:
    """P(boundary after the first k bodies), k = 0 ... n, from each body's P(carries a rib)."""
    return _normalised(_boundary_scores(chances, floor)[0])  # the first body already has a rib, or none has


def boundaries_posterior(chances, floor: float) -> np.ndarray:
    """(n + 1, n + 1): P(the first k bodies rib-free, bodies k ... m - 1 with a rib, the rest rib-free) for k < m,
    from each body's P(carries a rib); [0, 0] holds "no body carries a rib", every other k >= m is 0."""
    return _normalised(_boundary_scores(chances, floor))


def _boundary_scores(chances, floor: float) -> np.ndarray:
    """(n + 1, n + 1) log-likelihoods of the answers for the places (k, m) of :func:`boundaries_posterior`."""
    p = np.clip(np.asarray(chances, float), floor, 1.0 - floor)
    yes, no = (np.concatenate([[0.0], np.cumsum(np.log(q))]) for q in (p, 1.0 - p))
    first, last = np.meshgrid(np.arange(len(p) + 1), np.arange(len(p) + 1), indexing="ij")
    scores = no[first] + yes[last] - yes[first] + no[-1] - no[last]
    scores[first >= last] = -np.inf
    scores[0, 0] = no[-1]
    return scores


def _normalised(scores: np.ndarray) -> np.ndarray:
    weights = np.exp(scores - scores.max())
    return weights / weights.sum()


def _boundary_places(chances, floor: float, first_rib: bool):
    """(P(the last rib's boundary lies after the first k bodies), k = 0 ... n; the same for the first rib; the joint
    :func:`boundaries_posterior`), the last two None without the first rib."""
    if not first_rib:
        return boundary_posterior(chances, floor), None, None
    both = boundaries_posterior(chances, floor)
    return both.sum(axis=0), both.sum(axis=1), both


#: Levels no rib classifier was taught (the "whole" recipe samples from C3 down): their answers are not evidence.
_NOT_ASKED = ("C1", "C2")


def _chain(labelling: LabellingResult, usable: list[Candidate], levels: str = "TL") -> list[Assignment]:
    """The named detections above the sacrum, head to feet ([] where none has a rib answer)."""
    chain = [a for a in labelling.assignments
             if a.candidate is not None and a.level[0] in levels and a.level not in _NOT_ASKED]
    chain.sort(key=lambda a: vertebra_index(a.level))
    return chain if any(usable[a.candidate].rib is not None for a in chain) else []


def _rib(candidate: Candidate) -> float:
    """Its rib answer; 0.5 (no evidence either way) for a point the user added, which has none."""
    return 0.5 if candidate.rib is None else float(candidate.rib)


def name_by_ribs(usable: list[Candidate], setup, fixed, labelling: LabellingResult) -> LabellingResult:
    """``labelling`` with the rib evidence applied (the last rib; the first too where the card asks for it, see the
    module text); unchanged where it is not decisive."""
    options = {**DEFAULT_RIBS, **(setup.ribs or {})}
    share = float(options["share"])
    chain = _chain(labelling, usable, "CTL" if options["first_rib"] else "TL")
    if fixed or not setup.ribs or len(chain) < 2:
        return labelling
    chances = [_rib(usable[a.candidate]) for a in chain]
    posterior, first, both = _boundary_places(chances, float(options["floor"]), bool(options["first_rib"]))
    best = int(np.argmax(posterior))
    if _contradicted(chances, 0 if first is None else int(np.argmax(first)), best):
        return labelling  # the classifier is out of its depth on this scan
    if first is not None:
        renamed = (_named_by_thorax(usable, setup, chain, both, share, labelling)
                   or _named_by_neck(usable, setup, chain, first, share, labelling)
                   or _named_by_first_rib_and_l5(usable, setup, chain, first, share, labelling))
        if renamed is not None:
            return renamed
    decisive = posterior[best] >= share and 0 < best < len(chain)
    if not labelling.anchored and not decisive and first is not None:
        return _anchored_at_first_rib(usable, setup, chain, first, share, labelling)
    if not decisive:
        return labelling  # not decisive, or the boundary is not in view
    named = _named_places(chain)[1]
    if not labelling.anchored:
        anchored = _anchored_at_ribs(usable, setup, [(LAST_RIB, chain[best - 1].candidate)], float(posterior[best]),
                                     LAST_RIB)
        return anchored if _keeps_spine(anchored, labelling) else labelling
    if not options["transitional"] or _sacrum(labelling) is None:
        return labelling  # the L5 answer is the last lumbar vertebra above the sacrum only where the sacrum is seen
    if _pinned_at_c2(usable, labelling):
        return labelling  # C2 and L5 answers on the bodies so named: one rib answer (a floating T12) does not recount
    if best == named - 1 and _may_be_sixth_lumbar(usable, chain):
        return _moved(labelling, +1, "six", float(posterior[best]))
    if best == named + 1 and _l5_answered(usable, chain):
        return _moved(labelling, -1, "four", float(posterior[best]))
    return labelling  # the moves rest on the L5 answer lying on the body named L5 (not so in a chain pinned at C2)


#: Neck bodies between C2 and the first rib (C3 ... C7): a body further above the first rib lies on C2, C1 or the skull
#: base, whatever the names say (an unanchored neck named a detection on C2 "C4"), where no classifier was taught.
_TAUGHT_ABOVE_FIRST_RIB = 5
#: Lumbar bodies below the last rib (L1 ... L5): a body further below lies on an L6 or the sacrum, whatever the names
#: say (a chain shifted down by a detection on S2 names S1 "L5"); the classifier was taught down to the last lumbar.
_TAUGHT_BELOW_LAST_RIB = 5


def _contradicted(chances, first: int, last: int) -> bool:
    """Whether a body answers against the likeliest places of the boundaries (a rib below the last rib, none on a
    body between the first and the last): measured on CT drawn from the rib-less VerSe map, where the classifier
    answered "rib" on two thoracic bodies and on L4, and the last-rib rule named the chain two levels off. With the
    first rib in view, bodies above C3's place are not asked (a rib answer of 0.65 on C2, generated neck 168003); with
    the last rib in view, bodies below L5's place are not asked (the sacrum answers "rib" as often as not)."""
    index = np.arange(len(chances))
    expected = (index >= first) & (index < last)
    asked = index >= (first - _TAUGHT_ABOVE_FIRST_RIB if first > 0 else 0)
    if last > 0:
        asked &= index < last + _TAUGHT_BELOW_LAST_RIB
    return bool(np.any(np.abs(np.asarray(chances, float) - expected)[asked] > 0.5))


def _l5_answered(usable: list[Candidate], chain: list[Assignment]) -> bool:
    """Whether the L5 detector answered on the body the chain names L5: what a lumbar count read from the sacrum
    rests on (a chain pinned at a false C2 answer names the sacrum L5 and a false body below it S1)."""
    return chain[-1].level == "L5" and usable[chain[-1].candidate].anchor_probability > 0


def _may_be_sixth_lumbar(usable: list[Candidate], chain: list[Assignment]) -> bool:
    """Whether the chain's lowest body could be a sixth lumbar vertebra: the L5 answer lies on it (the body named L5)
    and it answers "no rib", as a lumbar vertebra does; the sacrum, never taught, answers "rib" as often as not (a chain
    shifted down by a detection on S2 has S1 where a sixth lumbar vertebra would be)."""
    return _l5_answered(usable, chain) and _rib(usable[chain[-1].candidate]) < 0.5


def _pinned_at_c2(usable: list[Candidate], labelling: LabellingResult) -> bool:
    """Whether the C2 detector answered on the body named C2: then the count from C2 down agrees with the L5 answer,
    and a last rib one body off is likelier a short floating T12 read as rib-free (fresh 172014) than a sixth lumbar
    vertebra (which leaves C2 and L5 unable to be pinned together: :func:`_named_by_thorax`)."""
    return any(a.level == "C2" and a.candidate is not None and usable[a.candidate].second_anchor_probability > 0
               for a in labelling.assignments)


def _sacrum(labelling: LabellingResult) -> int | None:
    """The detection named S1, if any: without the sacrum in view (CT from the VerSe map, cut at L5) an L5 answer
    need not be the last lumbar vertebra, and a rib boundary one body off says nothing about the lumbar count."""
    return next((a.candidate for a in labelling.assignments if a.level == "S1" and a.candidate is not None), None)


def _named_places(chain: list[Assignment]) -> tuple[int, int]:
    """Where the names put the two boundaries: after the last C name (the first rib) and after the last T name."""
    return sum(a.level[0] == "C" for a in chain), sum(a.level[0] in "CT" for a in chain)


def _c2_answers(usable: list[Candidate], labelling: LabellingResult) -> list[int]:
    """The named detections with a C2 answer (heatmap detectors keep only those at the head end)."""
    return [a.candidate for a in labelling.assignments
            if a.candidate is not None and usable[a.candidate].second_anchor_probability > 0]


def _strongest_c2_answer(usable: list[Candidate], labelling: LabellingResult) -> int | None:
    """The named detection with the strongest C2 answer (None: no C2 answer): where the neck is pinned at C2."""
    answers = _c2_answers(usable, labelling)
    return max(answers, key=lambda k: usable[k].second_anchor_probability) if answers else None


#: Rib-bearing vertebrae of a standard spine (T1 ... T12).
THORACIC_COUNT = 12


def _named_by_thorax(usable, setup, chain, both: np.ndarray, share: float, labelling: LabellingResult):
    """The chain pinned with T1 on its first and T12 on its last rib-bearing body, where the two places together are
    decisive, twelve bodies apart, and the names disagree with them; None where that does not apply.

    Why: the anchor detectors name a spine by its ends (C2, the last lumbar vertebra above the sacrum), so on a
    spine with six lumbar vertebrae the L5 answer lies on the sixth and a path pinned there names every vertebra one
    level high, C2 included (the pin at C2 cannot fit twenty-four bodies between C2 and L5). Twelve rib-bearing
    bodies between two decisive boundaries name the thorax whatever the lumbar count; the graph names the rest from
    them, and with six bodies between the last rib and a detection named S1, the sacrum stays pinned so that the
    sixth lumbar vertebra is named L6 (the shape model's transitional level).
    """
    first, last = (int(k) for k in np.unravel_index(int(np.argmax(both)), both.shape))
    named = both[_named_places(chain)]
    if not (both[first, last] >= share or both[first, last] >= 0.5 and named <= 1.0 - share):
        return None  # neither decisive nor, where the ribs reject the names' own places, the likelier by far
    if not 0 < first < last < len(chain):
        return None
    if last - first == THORACIC_COUNT - 1:
        return _eleven_rib_pairs(usable, setup, chain, (first, last), float(both[first, last]), labelling)
    if last - first != THORACIC_COUNT or (chain[first].level, chain[last - 1].level) == (FIRST_RIB, LAST_RIB):
        return None
    pins = [(FIRST_RIB, chain[first].candidate), (LAST_RIB, chain[last - 1].candidate)]
    sacrum = _sacrum(labelling)
    certainty, anchored = float(both[first, last]), None
    six_lumbar = len(chain) - last == 6 and _may_be_sixth_lumbar(usable, chain) and "L6" in setup.shape_model.levels
    if six_lumbar and sacrum is not None:
        anchored = _anchored_at_ribs(usable, setup, pins + [("S1", sacrum)], certainty, THORAX)
    anchored = anchored or _anchored_at_ribs(usable, setup, pins, certainty, THORAX)
    return anchored if _keeps_spine(anchored, labelling) else None


def _first_rib_against_names(chain, first: np.ndarray, share: float) -> int | None:
    """Where the first rib lies (index of the first rib-bearing body in ``chain``) if the names put it elsewhere and
    the answers say so: decisive (``share``), or the likelier place while the names' own place is rejected (at most
    1 - ``share``; a rib-free answer of 0.16 on C7 keeps T1's place at 0.84). None otherwise."""
    at, named = int(np.argmax(first)), _named_places(chain)[0]
    if not 0 < at < len(chain) or chain[at].level == FIRST_RIB:
        return None
    return at if first[at] >= share or first[at] >= 0.5 and first[named] <= 1.0 - share else None


def _named_by_neck(usable, setup, chain, first: np.ndarray, share: float, labelling: LabellingResult):
    """An anchored labelling with a C2 answer whose first rib is decisive but not named T1, pinned with C2 on the
    strongest C2 answer and T1 on the first rib (and at its L5 answer where that still fits); None where that does
    not apply.

    Why: every spine has seven cervical vertebrae, so C2 and the first rib fix the neck's names. Pinned at C2 alone,
    a missed or merged neck body (C3 in a small neck) shifts every name below it by one level; pinned at both ends
    of the neck, the graph leaves a gap there instead (an estimated point).
    """
    at = _first_rib_against_names(chain, first, share)
    if not labelling.anchored or at is None:
        return None
    named = {a.level: a.candidate for a in labelling.assignments if a.candidate is not None}
    strongest = _strongest_c2_answer(usable, labelling)
    if strongest is None:
        return None
    if at + 1 < len(chain) and _rib(usable[chain[at + 1].candidate]) < 0.5:
        return None  # a thorax of one rib-bearing body: a false rib answer in the neck (generated 53012: on C6)
    pins = [("C2", strongest), (FIRST_RIB, chain[at].candidate)]
    lowest = [("L5", named["L5"])] if "L5" in named and usable[named["L5"]].anchor_probability > 0 else []
    certainty = float(first[at])
    anchored = _anchored_at_ribs(usable, setup, pins + lowest, certainty, NECK)
    if anchored is None and lowest:  # an L5 answer on a sixth lumbar vertebra leaves no room for the thorax
        anchored = _anchored_at_ribs(usable, setup, pins, certainty, NECK)
    return anchored if _keeps_spine(anchored, labelling) else None


#: Levels above the first rib's name where a gap may hide a rib-bearing body: the body just above the first rib under
#: either count (the names one level off, as where eleven rib pairs are read with twelve). Generated thick views with
#: T1 missed or displaced (181002 axial 12 mm, 182001 coronal 8 mm) read eleven rib-bearing bodies on twelve-rib spines.
_NEAR_FIRST_RIB = 2


def _eleven_rib_pairs(usable, setup, chain, ribs: tuple[int, int], certainty: float, labelling: LabellingResult):
    """Eleven rib-bearing bodies in a row (``ribs``: first, last): T1 ... T11, then L1 (no T12: the generator's and
    the clinic's names for a spine with eleven rib pairs). An anchored chain must agree below the ribs (the L5 answer
    named the first body below them L1); an unanchored one (a thoracic view) is named from them.

    The bodies below the ribs are counted from L1. Above, the graph re-solves pinned at T1 and T11 (and at the
    strongest C2 answer where that fits): the shape model has no level for a missing T12 that leaves a normal step
    (T11 to L1), but the neck is its own. Not where the labelling left a gap below, among or just above the ribs
    (:data:`_NEAR_FIRST_RIB`): eleven bodies with a missed one among or next to them may be a twelve-rib spine. A gap
    higher in the neck does not change the rib count: a path pinned at L5 and counted up with twelve ribs runs out of
    levels at the head and jumps one there (fresh 167008: C2 "missed" below a detection on C1), or a neck body was
    missed (development 52016: C5).
    """
    first, last = ribs
    ordered = sorted(labelling.assignments, key=lambda a: vertebra_index(a.level))
    at = next((k for k, a in enumerate(ordered) if a.candidate == chain[last - 1].candidate), None)
    neck_end = vertebra_index(chain[first].level) - _NEAR_FIRST_RIB  # a gap from here down blocks the rule
    blocking = [level for level in labelling.missing if vertebra_index(level) >= neck_end]
    if blocking and _whole_neck_above(usable, setup, labelling, chain[first].candidate):
        blocking = [level for level in blocking if vertebra_index(level) > vertebra_index(FIRST_RIB)]
    if blocking or at is None or at + 1 >= len(ordered):
        return None
    if labelling.anchored and ordered[at + 1].level != "L1":
        return None  # anchored otherwise below the ribs (a C2 answer): not a rib count the anchor agrees with
    below = _STANDARD[_STANDARD.index("L1"):] + ["S1"]
    upper = _thorax_of_eleven(usable, setup, [(FIRST_RIB, chain[first].candidate), ("T11", chain[last - 1].candidate)],
                              certainty, labelling)
    if upper is None or len(ordered) - at - 1 > len(below):
        return None
    if any(vertebra_index(FIRST_RIB) - _NEAR_FIRST_RIB <= vertebra_index(level) < vertebra_index("T11")
           for level in upper.missing):
        return None  # the neck re-solved leaves a body missed just above T1: it may be the first rib's
    renamed = [a for a in upper.assignments if vertebra_index(a.level) <= vertebra_index("T11")]
    renamed += [replace(a, level=name) for a, name in zip(ordered[at + 1:], below)]
    if [(a.level, a.candidate) for a in renamed] == [(a.level, a.candidate) for a in ordered]:
        return None
    return replace(labelling, assignments=renamed, anchored=True, alternatives=[],
                   missing=[level for level in upper.missing if vertebra_index(level) < neck_end],
                   certainty=min(labelling.certainty, certainty) if labelling.anchored else certainty,
                   notes=labelling.notes + [_RIB_NOTES[ELEVEN]])


#: Neck bodies between C2 and the first rib (C3 ... C7).
_NECK_BODIES = 5


def _whole_neck_above(usable, setup, labelling: LabellingResult, first_rib: int) -> bool:
    """Whether a C2 answer and five of the labelling's named detections below it (C3 ... C7; detections off the spine,
    never named, do not count) lie above the first rib-bearing body: then that body is T1, and a level the path jumped
    above it (a spine pinned at C2 and L5 with eleven rib pairs must jump one somewhere: generated 157029 had "T1"
    missing) is no missed body."""
    c2 = _strongest_c2_answer(usable, labelling)
    if c2 is None:
        return False
    towards_head = setup.shape_model.outwards("C2")
    top, bottom = (float(np.dot(usable[k].position, towards_head)) for k in (c2, first_rib))
    named = {a.candidate for a in labelling.assignments if a.candidate is not None}
    return sum(bottom < float(np.dot(usable[k].position, towards_head)) < top for k in named) == _NECK_BODIES


def _thorax_of_eleven(usable, setup, pins, certainty: float, labelling: LabellingResult):
    """The labelling pinned at ``pins`` (T1, T11) and at the strongest C2 answer where that fits; None where nothing
    fits. Only its names down to T11 are used: below, it names a twelve-rib spine."""
    strongest = _strongest_c2_answer(usable, labelling)
    if strongest is not None:
        with_c2 = _anchored_at_ribs(usable, setup, [("C2", strongest)] + pins, certainty, ELEVEN)
        if with_c2 is not None:
            return with_c2
    return _anchored_at_ribs(usable, setup, pins, certainty, ELEVEN)


def _named_by_first_rib_and_l5(usable, setup, chain, first: np.ndarray, share: float, labelling: LabellingResult):
    """An anchored labelling without a C2 answer whose decisive first rib is not named T1, named from the first rib
    where the body it then names L5 carries an L5 answer (pinned at both); None where the two do not agree.

    Why: the L5 detector also answers on S1 or L4 (random contrast), and a path pinned there names the whole spine one
    level off; the first rib counted down to an L5 answer is two independent answers that agree.
    """
    at = _first_rib_against_names(chain, first, share)
    if not labelling.anchored or at is None:
        return None
    if _c2_answers(usable, labelling):
        return None  # a C2 answer: the neck rule's case
    certainty = float(first[at])
    counted = _anchored_at_ribs(usable, setup, [(FIRST_RIB, chain[at].candidate)], certainty, FIRST_RIB)
    named = counted.assignments if counted else []
    lowest = [a.candidate for a in named if a.level == "L5" and a.candidate is not None]
    if not lowest or usable[lowest[0]].anchor_probability <= 0:
        return None
    anchored = _anchored_at_ribs(usable, setup, [(FIRST_RIB, chain[at].candidate), ("L5", lowest[0])], certainty,
                                 FIRST_AND_L5)
    return anchored if _keeps_spine(anchored, labelling) else None


#: The share of the free path's standard levels the path anchored at the last rib must keep (as for the L5 anchor).
COVERAGE_SHARE = 0.6


def _coverage(labelling: LabellingResult) -> int:
    return sum(a.level not in TRANSITIONAL for a in labelling.assignments)


def _keeps_spine(anchored: LabellingResult | None, free: LabellingResult) -> bool:
    return anchored is not None and _coverage(anchored) >= COVERAGE_SHARE * _coverage(free)


def _anchored_at_first_rib(usable, setup, chain, first: np.ndarray, share: float, labelling: LabellingResult):
    """An unanchored chain anchored with T1 on its first rib-bearing body, where that place is decisive and in view."""
    best = int(np.argmax(first))
    if first[best] < share or not 0 < best < len(chain):
        return labelling
    anchored = _anchored_at_ribs(usable, setup, [(FIRST_RIB, chain[best].candidate)], float(first[best]), FIRST_RIB)
    return anchored if _keeps_spine(anchored, labelling) else labelling


NECK, THORAX, ELEVEN, FIRST_AND_L5, SACRUM = "neck", "thorax", "eleven", "first rib and L5", "sacrum"
_RIB_NOTES = {
    SACRUM: "No {anchor} anchor in view: named from the sacrum (S1 = the highest vertebra the sacrum classifier takes "
            "for the sacrum); a spine with six or four lumbar vertebrae would be named one level off: check the names.",
    LAST_RIB: f"No {{anchor}} anchor in view: named from the last rib ({LAST_RIB} = the lowest vertebra the rib "
              "classifier sees a rib on); an 11- or 13-rib spine would be named one level off: check the names.",
    FIRST_RIB: f"No {{anchor}} anchor in view: named from the first rib ({FIRST_RIB} = the highest vertebra the rib "
               "classifier sees a rib on); an 11- or 13-rib spine would be named one level off: check the names.",
    THORAX: f"Named from the ribs: twelve rib-bearing vertebrae ({FIRST_RIB}-{LAST_RIB}) where the anchor answers "
            "said otherwise (a sixth or a fourth lumbar vertebra?): check the count.",
    ELEVEN: f"Named from the ribs: eleven rib-bearing vertebrae ({FIRST_RIB}-T11, no {LAST_RIB}): check the count.",
    FIRST_AND_L5: f"Named from the first rib ({FIRST_RIB}) and the L5 answer it counts down to; another L5 answer "
                  "disagreed: check the names.",
    NECK: f"Named from C2 and the first rib ({FIRST_RIB}): seven cervical vertebrae, one of them not detected or "
          "merged with its neighbour: check the neck's names.",
}


def _anchored_at_ribs(usable, setup, pins: list[tuple[str, int]], certainty: float, why: str):
    """The labelling pinned at ``pins`` ((level, index of the detection)), its certainty the ribs' posterior, with the
    note :data:`_RIB_NOTES` ``[why]``; None where the pins do not fit one spine."""
    if any(level not in setup.shape_model.levels for level, _ in pins):
        return None
    pinned = list(usable)
    for _, index in pins:
        pinned[index] = replace(usable[index], anchor_probability=certainty)  # the labelling's certainty
    try:
        labelling = label_candidates(pinned, setup.shape_model, anchor=pins[0] if len(pins) == 1 else tuple(pins),
                                     **setup.options)
    except InputError:
        return None
    note = _RIB_NOTES[why].format(anchor=setup.anchor_level)
    return replace(labelling, notes=labelling.notes + [note])


def _moved(labelling: LabellingResult, step: int, count: str, certainty: float) -> LabellingResult:
    """Every name above the sacrum moved ``step`` levels (+1: caudal, the L5 anchor becomes L6; -1: cranial)."""
    def moved(level: str) -> str:
        if level == "S1" or level[0] not in "TL":
            return level
        if step > 0 and level == "L5":
            return "L6"
        return _neighbour(level, step)

    assignments = [replace(a, level=moved(a.level)) for a in labelling.assignments]
    lowest = next((a.level for a in reversed(assignments) if a.level[0] == "L"), "")
    note = (f"The last rib is on the vertebra above L1 and {count} lumbar vertebrae lie above the sacrum: the lowest "
            f"is named {lowest}; check the count on a view that shows the whole spine.")
    return replace(labelling, assignments=assignments, missing=[moved(m) for m in labelling.missing],
                   certainty=min(labelling.certainty, certainty), alternatives=[],
                   notes=labelling.notes + [note])


#: Thoracic and lumbar levels without the transitional ones (T1 ... T12, L1 ... L5).
_STANDARD = [level for level in FULL_ORDER if level[0] in "TL" and level not in TRANSITIONAL]


def _neighbour(level: str, step: int) -> str:
    """The standard level ``step`` places from ``level`` (T1 ... T12, L1 ... L5)."""
    if level not in _STANDARD:
        return level
    return _STANDARD[int(np.clip(_STANDARD.index(level) + step, 0, len(_STANDARD) - 1))]


__all__ = ["DEFAULT_RIBS", "boundaries_posterior", "boundary_posterior", "name_by_ribs"]
