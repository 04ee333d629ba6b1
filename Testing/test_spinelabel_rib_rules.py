"""The rib evidence against anchored labellings: the neck (C2 and the first rib), the thorax (twelve rib-bearing
bodies between the first and the last rib) and the sacrum a lumbar count needs. Real shape models from the bundled
packages; synthetic detections one mean step apart."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from spinebrain.points import is_estimate
from spinebrain.spinelabel.graph import Candidate
from spinebrain.spinelabel.labelling import solve_labelling
from spinebrain.spinelabel.pipeline import load_spine_label_model

NECK = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3", "T4"]
THORAX = [f"T{k}" for k in range(1, 13)]
SIX_LUMBAR = ["C2", "C3", "C4", "C5", "C6", "C7"] + THORAX + ["L1", "L2", "L3", "L4", "L5", "L6", "S1"]


@pytest.fixture(scope="module")
def whole_setup():
    plain = load_spine_label_model("whole", "spine-label-whole-heatmap", device="cpu").setup
    return replace(plain, ribs={"share": 0.9, "floor": 0.02, "transitional": 0.0, "first_rib": 1.0})


@pytest.fixture(scope="module")
def lumbar_setup():
    plain = load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", device="cpu").setup
    return replace(plain, ribs={"share": 0.9, "floor": 0.02, "transitional": 1.0})


def _bodies(setup, levels, ribs: dict, c2_answer: str = "", l5_answer: str = "", left_out=()) -> list[Candidate]:
    """A detection per level (one mean step apart; ``left_out`` not detected, the step over it shortened to 1.3
    steps as where a missed small neck body lets its neighbours' peaks drift into its place), ``ribs[level]`` its
    rib answer (0.02 where not given); a C2 answer on ``c2_answer``, an L5 answer on ``l5_answer``."""
    position, bodies = np.array([0.0, -40.0, 200.0]), []
    for upper, level in zip([None] + levels[:-1], levels):
        if upper is not None:
            step = setup.shape_model.displacement(upper, level).mean
            position = position + step * (0.3 if level in left_out else 1.0)
        if level not in left_out:
            bodies.append(Candidate(position.copy(), 0.8, 0.8 if level == l5_answer else 0.0,
                                    second_anchor_probability=0.8 if level == c2_answer else 0.0,
                                    rib=ribs.get(level, 0.02)))
    return bodies


def _named(result) -> list[str]:
    return [p.label for p in result.points if not is_estimate(p)]


def test_c2_and_the_first_rib_name_a_neck_with_a_missed_body(whole_setup):
    ribs = {level: 0.98 for level in NECK if level[0] == "T"} | {"C1": 0.9}  # C1 was never asked: no evidence
    bodies = _bodies(whole_setup, NECK, ribs, c2_answer="C2", left_out=("C3",))
    detected = [level for level in NECK if level != "C3"]
    plain = solve_labelling(bodies, replace(whole_setup, ribs={}))
    assert _named(plain) != detected  # pinned at C2 alone, the names below the missed C3 shift by one
    result = solve_labelling(bodies, whole_setup)
    assert _named(result) == detected and result.labelling.missing == ["C3"]
    assert [p.label for p in result.points if is_estimate(p)] == ["C3"]
    assert any("C2 and the first rib" in warning for warning in result.warnings)


def test_twelve_rib_bearing_bodies_name_a_spine_with_six_lumbar_vertebrae(whole_setup):
    ribs = {level: 0.98 for level in THORAX}
    bodies = _bodies(whole_setup, SIX_LUMBAR, ribs, c2_answer="C2", l5_answer="L6")
    plain = solve_labelling(bodies, replace(whole_setup, ribs={}))
    assert _named(plain) != SIX_LUMBAR  # the L5 answer lies on the sixth lumbar vertebra
    result = solve_labelling(bodies, whole_setup)
    assert _named(result) == SIX_LUMBAR
    assert any("twelve rib-bearing vertebrae" in warning for warning in result.warnings)


def test_rib_answers_that_agree_with_the_names_change_nothing(whole_setup):
    levels = [level for level in SIX_LUMBAR if level != "L6"]
    result = solve_labelling(_bodies(whole_setup, levels, {lv: 0.98 for lv in THORAX}, "C2", "L5"), whole_setup)
    assert _named(result) == levels and not result.labelling.notes


def test_a_lumbar_count_is_moved_only_with_the_sacrum_in_view(lumbar_setup):
    levels = ["T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1"]  # the L5 answer on the last lumbar vertebra (L6)
    bodies = _bodies(lumbar_setup, levels, {"T12": 0.99}, l5_answer="L6")
    assert _named(solve_labelling(bodies, lumbar_setup)) == levels
    cut = solve_labelling(bodies[:-1], lumbar_setup)  # the scan ends at the anchor: no sacrum, no count to move
    assert _named(cut) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"] and not cut.labelling.notes


def _eleven_rib_spine():
    """(geometry, names): a standard chain's positions C3 ... S1 carrying the names of a spine with eleven rib pairs
    (C2 ... C7, T1 ... T11, L1 ... L5, S1: one body fewer above the lumbar spine)."""
    geometry = ["C3", "C4", "C5", "C6", "C7"] + THORAX + ["L1", "L2", "L3", "L4", "L5", "S1"]
    names = ["C2", "C3", "C4", "C5", "C6", "C7"] + THORAX[:11] + ["L1", "L2", "L3", "L4", "L5", "S1"]
    return geometry, names


def test_eleven_rib_bearing_bodies_above_an_anchored_lumbar_spine_are_t1_to_t11(whole_setup):
    geometry, truth = _eleven_rib_spine()
    bodies = _bodies(whole_setup, geometry, {}, l5_answer="L5")
    for k, name in enumerate(truth):  # rib answers by the true names
        bodies[k] = replace(bodies[k], rib=0.98 if name[0] == "T" else 0.02)
    plain = solve_labelling(bodies, replace(whole_setup, ribs={}))
    assert _named(plain)[-6:] == truth[-6:] and _named(plain)[:-6] != truth[:-6]  # counted up from L5: one level off
    result = solve_labelling(bodies, whole_setup)
    assert _named(result) == truth and not result.labelling.missing  # no T12, and no estimate of one
    assert any("eleven rib-bearing vertebrae" in warning for warning in result.warnings)
    gap = [b for k, b in enumerate(bodies) if truth[k] != "T6"]  # a missed body among the ribs: not eleven pairs
    assert not any("eleven" in w for w in solve_labelling(gap, whole_setup).warnings)
    view = slice(truth.index("C7"), truth.index("L2") + 1)  # a thoracic view, no anchor: named from the ribs alone
    unanchored = [replace(b, anchor_probability=0.0) for b in bodies[view]]
    result = solve_labelling(unanchored, whole_setup)
    assert _named(result) == truth[view] and result.labelling.anchored


STANDARD = NECK[:7] + THORAX + ["L1", "L2", "L3", "L4", "L5", "S1"]


def _without_t12(setup, **answers) -> tuple[list[Candidate], list[str]]:
    """(bodies, names): a spine with eleven rib pairs, C1 ... S1 one mean step apart (a standard chain with T12 taken
    out and every body below it moved up one step), rib answers on the rib-bearing bodies; ``answers`` as for
    :func:`_bodies`."""
    bodies = _bodies(setup, STANDARD, {level: 0.98 for level in THORAX}, **answers)
    cut, lift = STANDARD.index("T12"), setup.shape_model.displacement("T11", "T12").mean
    bodies = bodies[:cut] + [replace(b, position=b.position - lift) for b in bodies[cut + 1:]]
    return bodies, [level for level in STANDARD if level != "T12"]


def test_an_eleven_rib_spine_from_c1_is_named_through_the_gap_its_path_left_in_the_neck(whole_setup):
    bodies, truth = _without_t12(whole_setup, l5_answer="L5")
    top = np.array([0.0, 0.0, 8.0])  # the C1 point drawn up off its thin ring (fresh 167008: 5.7 mm)
    bodies[0] = replace(bodies[0], position=bodies[0].position + top)
    plain = solve_labelling(bodies, replace(whole_setup, ribs={}))
    assert plain.labelling.missing == ["C2"] and _named(plain) != truth  # pinned at L5: one level low, C2 jumped
    result = solve_labelling(bodies, whole_setup)
    assert _named(result) == truth and not result.labelling.missing
    assert not any(is_estimate(p) for p in result.points)
    assert any("eleven rib-bearing vertebrae" in warning for warning in result.warnings)


def test_an_eleven_rib_spine_keeps_a_missed_neck_body_as_a_gap(whole_setup):
    bodies, names = _without_t12(whole_setup, c2_answer="C2", l5_answer="L5")
    missed = names.index("C5")
    bodies = bodies[:missed] + bodies[missed + 1:]  # development 52016: C5 not detected
    truth = [level for level in names if level != "C5"]
    result = solve_labelling(bodies, whole_setup)
    assert _named(result) == truth and result.labelling.missing == ["C5"]  # not C1 ... C4 one level low
    assert any("eleven rib-bearing vertebrae" in warning for warning in result.warnings)


def test_eleven_rib_bearing_bodies_below_a_missed_t1_are_not_read_as_eleven_rib_pairs(whole_setup):
    bodies = _bodies(whole_setup, STANDARD, {level: 0.98 for level in THORAX}, l5_answer="L5")
    missed = STANDARD.index("T1")  # thick generated views 181002, 182001: T1 not detected, a hole above T2
    result = solve_labelling(bodies[:missed] + bodies[missed + 1:], whole_setup)
    assert not any("eleven" in warning for warning in result.warnings)
    assert _named(result) == [level for level in STANDARD if level != "T1"]


def test_a_lumbar_count_is_not_moved_in_a_chain_the_l5_detector_did_not_anchor(whole_setup):
    levels = ["C3", "C4", "C5", "C6", "C7"] + THORAX + ["L1", "L2", "L3", "L4", "L5", "S1"]
    bodies = _bodies(whole_setup, levels, {lv: 0.98 for lv in THORAX}, c2_answer="C3")  # a C2 answer on C3
    for k, level in enumerate(levels):  # the first rib undecided: only the last one speaks
        if level in ("C7", "T1"):
            bodies[k] = replace(bodies[k], rib=0.5)
    below = bodies[-1].position + whole_setup.shape_model.displacement("L5", "S1").mean  # a false body below S1
    bodies.append(Candidate(below, 0.7, rib=0.02))
    moving = replace(whole_setup, ribs={**whole_setup.ribs, "transitional": 1.0})
    result = solve_labelling(bodies, moving)
    assert not any("lumbar vertebrae lie above the sacrum" in warning for warning in result.warnings)


def test_the_first_rib_counted_down_to_an_l5_answer_outranks_an_l5_answer_on_s1(whole_setup):
    levels = ["C3", "C4", "C5", "C6", "C7"] + THORAX + ["L1", "L2", "L3", "L4", "L5", "S1"]
    ribs = {level: 0.98 for level in THORAX} | {"T12": 0.4}  # floating T12: the last rib not decisive
    bodies = _bodies(whole_setup, levels, ribs)
    at = {level: k for k, level in enumerate(levels)}
    bodies[at["L5"]] = replace(bodies[at["L5"]], anchor_probability=0.7)
    bodies[at["S1"]] = replace(bodies[at["S1"]], anchor_probability=0.8)  # the L5 detector answers on S1 too
    bodies.append(Candidate(bodies[-1].position + whole_setup.shape_model.displacement("L5", "S1").mean, 0.7, rib=0.9))
    plain = solve_labelling(bodies, replace(whole_setup, ribs={}))
    assert _named(plain)[:len(levels)] != levels  # pinned at the answer on S1: one level high
    result = solve_labelling(bodies, whole_setup)
    assert _named(result)[:len(levels)] == levels
    assert any("counts down to" in warning for warning in result.warnings)


def test_a_rib_answer_on_the_sacrum_vetoes_nothing_and_is_no_sixth_lumbar_vertebra(whole_setup):
    """Thick axial slices (development views 181003, 181005 at 6 mm): a detection on S2, an L5 answer on S1, and C1
    not detected shift every name one level down; the sacrum, never taught, answers "rib"."""
    levels = ["C2", "C3", "C4", "C5", "C6", "C7"] + THORAX + ["L1", "L2", "L3", "L4", "L5", "S1"]
    bodies = _bodies(whole_setup, levels, {lv: 0.98 for lv in THORAX} | {"S1": 0.9}, l5_answer="S1")
    bodies.append(Candidate(bodies[-1].position + whole_setup.shape_model.displacement("L5", "S1").mean, 0.6, rib=0.9))
    plain = solve_labelling(bodies, replace(whole_setup, ribs={}))
    assert _named(plain)[:len(levels)] == ["C1"] + levels[:-1]  # pinned at the answer on S1: one level high
    result = solve_labelling(bodies, whole_setup)
    assert _named(result)[:len(levels)] == levels and "L6" not in _named(result)
    assert any("twelve rib-bearing vertebrae" in warning for warning in result.warnings)


def test_a_chain_pinned_at_c2_and_l5_is_not_recounted_from_a_floating_t12(whole_setup):
    """Fresh 172014: T12's short floating rib answered "no rib", so the last rib lay one body above the names; the C2
    and L5 answers on the bodies so named, with every body between them, keep the count standard."""
    levels = ["C1", "C2", "C3", "C4", "C5", "C6", "C7"] + THORAX + ["L1", "L2", "L3", "L4", "L5", "S1"]
    ribs = {level: 0.98 for level in THORAX} | {"T12": 0.001}
    moving = replace(whole_setup, ribs={**whole_setup.ribs, "transitional": 1.0})
    result = solve_labelling(_bodies(moving, levels, ribs, c2_answer="C2", l5_answer="L5"), moving)
    assert _named(result) == levels
    assert not any("lumbar" in warning and "check the count" in warning for warning in result.warnings)


@pytest.fixture(scope="module")
def card_setup():
    """The whole-spine package's own setup (its card's rib options: first rib and transitional counts on)."""
    return load_spine_label_model("whole", "spine-label-whole-heatmap", device="cpu").setup


def _recorded(rows) -> tuple[list[Candidate], list[str]]:
    """(detections, true names) from rows (true name, RAS, p, L5 answer, C2 answer, heat beyond, rib, sacrum)."""
    bodies = [Candidate(np.array(ras, float), p, l5, second_anchor_probability=c2, beyond=beyond, rib=rib,
                        sacrum=sacrum) for _, ras, p, l5, c2, beyond, rib, sacrum in rows]
    return bodies, [row[0] for row in rows]


#: Generated 157029 (whole T2, 2.7 mm; eleven rib pairs): the whole model's detections on the spine, with its C2 answer
#: (0.62) kept as a C2 threshold of 0.55 keeps it (tried in session 25; the shipped 0.65 keeps stronger answers only).
ELEVEN_RIB_PAIRS_157029 = [
    ("C1", (-9.3, 5.3, 29.0), 0.61, 0.0, 0.0, 0.0, 0.83, 0.007),
    ("C2", (-9.0, -2.8, 10.8), 0.66, 0.59, 0.62, 0.77, 0.002, 0.0),
    ("C3", (-9.0, -2.6, -5.2), 0.67, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("C4", (-9.3, -2.6, -17.2), 0.77, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("C5", (-9.1, -2.5, -31.2), 0.78, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("C6", (-9.3, -2.7, -45.1), 0.75, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("C7", (-9.3, -2.8, -59.3), 0.78, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("T1", (-9.1, -4.5, -81.0), 0.81, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T2", (-9.0, -6.3, -99.0), 0.82, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T3", (-9.4, -6.6, -117.0), 0.80, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T4", (-9.1, -6.6, -135.4), 0.79, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T5", (-9.2, -6.5, -158.9), 0.77, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T6", (-9.0, -6.5, -180.9), 0.79, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T7", (-9.3, -4.6, -200.8), 0.80, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T8", (-9.2, -2.7, -221.0), 0.81, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T9", (-9.3, -2.4, -245.2), 0.80, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T10", (-9.1, 1.4, -269.1), 0.80, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("T11", (-9.8, 5.4, -292.9), 0.84, 0.0, 0.0, 0.0, 1.0, 0.0),
    ("L1", (-9.4, 9.7, -323.2), 0.81, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("L2", (-9.4, 13.6, -357.1), 0.82, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("L3", (-9.4, 11.7, -392.9), 0.83, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("L4", (-9.2, 5.4, -425.1), 0.79, 0.53, 0.0, 0.84, 0.0, 0.0),
    ("L5", (-8.9, -6.5, -457.0), 0.84, 0.84, 0.0, 0.0, 0.0, 0.0),
    ("S1", (-8.9, -22.5, -489.0), 0.79, 0.0, 0.0, 0.0, 0.967, 1.0),
]


def test_an_eleven_rib_spine_pinned_at_c2_and_l5_is_t1_to_t11_then_l1(card_setup):
    """Pinned at C2 and L5 the path jumps T1, though no body is missing there (C7 to the first rib is one step); the
    neck's count alone (C2, then T1 on the first rib) named L1 "T12" and S1 "L5". The ribs name it: T1 ... T11, L1."""
    bodies, truth = _recorded(ELEVEN_RIB_PAIRS_157029)
    plain = solve_labelling(bodies, replace(card_setup, ribs={}))
    assert plain.labelling.missing == ["T1"] and _named(plain) != truth
    result = solve_labelling(bodies, card_setup)
    assert _named(result) == truth and not result.labelling.missing
    assert any("eleven rib-bearing vertebrae" in warning for warning in result.warnings)


#: Generated 53012 (cervical view, random contrast, 5.4 mm): a rib answer on C6 under a C2 answer (0.62, kept as above).
RIB_ANSWER_ON_C6_53012 = [
    ("C1", (1.5, 49.5, 19.9), 0.70, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("C2", (1.3, 43.5, 2.2), 0.67, 0.0, 0.62, 0.0, 0.051, 0.0),
    ("C3", (2.0, 45.6, -12.0), 0.64, 0.0, 0.0, 0.0, 0.024, 0.0),
    ("C4", (1.8, 47.6, -27.9), 0.69, 0.0, 0.0, 0.0, 0.037, 0.0),
    ("C5", (1.5, 49.9, -43.7), 0.65, 0.0, 0.0, 0.0, 0.12, 0.0),
    ("C6", (1.6, 49.9, -57.9), 0.67, 0.0, 0.0, 0.0, 0.999, 0.0),
    ("C7", (1.8, 47.6, -71.8), 0.65, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("T1", (1.8, 43.7, -87.9), 0.68, 0.0, 0.0, 0.0, None, None),
]


def test_a_rib_answer_two_neck_bodies_short_of_the_first_rib_does_not_rename_the_neck(card_setup):
    """Named T1, the body answering "rib" would leave only three detected bodies for C3 ... C7 below the C2 answer: two
    missed, where every neck body is seen one step apart. The C2 answer's names stand."""
    bodies, truth = _recorded(RIB_ANSWER_ON_C6_53012)
    result = solve_labelling(bodies, card_setup)
    assert _named(result) == truth and not result.labelling.missing
    assert not any("C2 and the first rib" in warning for warning in result.warnings)
