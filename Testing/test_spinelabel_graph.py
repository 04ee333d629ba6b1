"""SpineLabel graphical model: fitting from synthetic annotations, then labelling hand-built candidate sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinebrain.errors import InputError
from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.graph import (
    Candidate, SpineShapeModel, fit_shape_model, label_candidates,
)

# Mean displacement (RAS mm) from each level to the next one down. Lumbar steps ~33-38 mm
# inferior with lordosis in A; cervical ~15-20 mm; thoracic ~20-27 mm with kyphosis.
STEPS = {
    "C1": (0, -2, -16), "C2": (0, -1, -20), "C3": (0, 0, -16), "C4": (0, 0, -16), "C5": (0, -1, -16),
    "C6": (0, -2, -17), "C7": (0, -3, -18),
    **{f"T{k}": (0, -2.0 + 0.4 * k, -19.0 - 0.7 * k) for k in range(1, 10)},
    "T10": (0, -1, -30), "T11": (0, 1, -31), "T12": (0, 2, -33),
    "L1": (0, 3, -35), "L2": (0, 2, -37), "L3": (0, 0, -38), "L4": (0, -4, -37), "L5": (0, -12, -33),
    "L6": (0, -12, -33),  # a sixth lumbar vertebra takes over the lumbosacral step
}
LUMBAR = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
LUMBAR6 = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1"]
CERVICAL = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2"]
THORACIC = [f"T{k}" for k in range(1, 13)]


def _step(upper: str, lower: str) -> np.ndarray:
    if upper == "L5" and lower == "L6":
        return np.array(STEPS["L4"], dtype=float)  # L5 -> L6 looks like an ordinary lumbar step
    return np.array(STEPS[upper], dtype=float)


def make_spine(rng: np.random.Generator, levels: list[str], noise_mm: float = 2.0) -> dict[str, np.ndarray]:
    """One synthetic spine: level -> RAS centroid, with random size, start and per-step noise."""
    scale = rng.uniform(0.9, 1.1)
    x = np.array([0.0, 150.0, -900.0]) + rng.normal(0, 10, 3)
    points = {levels[0]: x}
    for upper, lower in zip(levels, levels[1:]):
        x = x + scale * _step(upper, lower) + rng.normal(0, noise_mm, 3)
        points[lower] = x
    return points


def training_cases(rng, levels, n=30, extra=None, n_extra=0) -> list[list[LabelledPoint]]:
    spines = [make_spine(rng, levels) for _ in range(n)] + [make_spine(rng, extra) for _ in range(n_extra)]
    return [[LabelledPoint(name, tuple(pos)) for name, pos in spine.items()] for spine in spines]


def candidates_of(rng, spine: dict[str, np.ndarray], names=None) -> tuple[list[Candidate], list[str]]:
    """Detections at the given vertebrae (shuffled), p in 0.6..1; returns them with their true names."""
    names = list(spine) if names is None else names
    order = rng.permutation(len(names))
    truth = [names[k] for k in order]
    return [Candidate(spine[name] + rng.normal(0, 1.0, 3), rng.uniform(0.6, 1.0)) for name in truth], truth


def labels_by_truth(result, truth) -> dict[str, str]:
    """True name -> assigned name, for the detections the labelling used."""
    return {truth[a.candidate]: a.level for a in result.assignments if a.candidate is not None}


@pytest.fixture(scope="module")
def lumbar_model():
    return fit_shape_model(training_cases(np.random.default_rng(1), LUMBAR))


@pytest.fixture(scope="module")
def lumbar6_model():  # training saw 6 six-lumbar spines among 36
    return fit_shape_model(training_cases(np.random.default_rng(2), LUMBAR, extra=LUMBAR6, n_extra=6))


def test_fit_recovers_steps_and_regularises():
    model = fit_shape_model(training_cases(np.random.default_rng(3), LUMBAR, n=40))
    assert model.levels == LUMBAR
    for upper, lower in zip(LUMBAR, LUMBAR[1:]):
        pair = model.pairs[(upper, lower)]
        assert np.allclose(pair.mean, STEPS[upper], atol=2.5)  # scale 0.9..1.1 averages out
        assert np.all(pair.lower < pair.mean) and np.all(pair.mean < pair.upper)
    two = fit_shape_model(training_cases(np.random.default_rng(4), ["L3", "L4", "L5"], n=1))
    assert np.linalg.cond(two.pairs[("L3", "L4")].covariance) < 1e3  # one sample, still invertible


def test_fit_rejects_bad_annotations():
    with pytest.raises(InputError, match="unknown vertebra"):
        fit_shape_model([[LabelledPoint("L3", (0, 0, 0)), LabelledPoint("Vertebra 4", (0, 0, -30))]])
    with pytest.raises(InputError, match="twice"):
        fit_shape_model([[LabelledPoint("L3", (0, 0, 0)), LabelledPoint("L3", (0, 0, -30))]])
    with pytest.raises(InputError, match="L3 and L4 together"):  # a hole between levels
        fit_shape_model([[LabelledPoint("L2", (0, 0, 0)), LabelledPoint("L3", (0, 0, -30)),
                          LabelledPoint("L5", (0, 0, -90)), LabelledPoint("S1", (0, 0, -120))]])


def test_model_round_trips_through_json(lumbar_model):
    rng = np.random.default_rng(5)
    candidates, truth = candidates_of(rng, make_spine(rng, LUMBAR))
    restored = SpineShapeModel.from_dict(json.loads(json.dumps(lumbar_model.to_dict())))
    anchor = ("S1", truth.index("S1"))
    before, after = label_candidates(candidates, lumbar_model, anchor), label_candidates(candidates, restored, anchor)
    assert [(a.level, a.candidate) for a in before.assignments] == [(a.level, a.candidate) for a in after.assignments]
    assert after.cost == pytest.approx(before.cost)


@pytest.mark.parametrize("seed", range(5))
def test_correct_chain_is_labelled(lumbar_model, seed):
    rng = np.random.default_rng(100 + seed)
    candidates, truth = candidates_of(rng, make_spine(rng, LUMBAR))
    result = label_candidates(candidates, lumbar_model, anchor=("S1", truth.index("S1")))
    assert labels_by_truth(result, truth) == {name: name for name in LUMBAR}
    assert result.anchored and not result.missing
    assert [a.level for a in result.assignments] == LUMBAR  # cranio-caudal order
    for a in result.assignments:
        assert a.confidence == pytest.approx(candidates[a.candidate].probability)


def test_cervical_chain_with_false_positive(tmp_path):
    rng = np.random.default_rng(6)
    model = fit_shape_model(training_cases(rng, CERVICAL))
    spine = make_spine(rng, CERVICAL)
    candidates, truth = candidates_of(rng, spine)
    candidates.append(Candidate(spine["C4"] + [0, -25, -8], 0.3))  # posterior, in the spinal canal / neck
    result = label_candidates(candidates, model, anchor=("C2", truth.index("C2")))
    assert labels_by_truth(result, truth) == {name: name for name in CERVICAL}
    assert len(candidates) - 1 not in [a.candidate for a in result.assignments]


def test_false_positives_off_the_spine_are_dropped(lumbar_model):
    rng = np.random.default_rng(7)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine)
    false = [Candidate(spine["L3"] + [0, 45, -10], 0.2),  # in the abdomen
             Candidate(spine["L2"] + [0, 0, -18], 0.15),  # between two vertebrae (a disc)
             Candidate(spine["L5"] + [60, 5, 0], 0.3)]  # far to the right
    result = label_candidates(candidates + false, lumbar_model, anchor=("S1", truth.index("S1")))
    assert labels_by_truth(result, truth) == {name: name for name in LUMBAR}
    assert all(a.candidate < len(candidates) for a in result.assignments)


def test_missing_vertebra_is_jumped_and_reported(lumbar_model):
    rng = np.random.default_rng(8)
    spine = make_spine(rng, LUMBAR)
    names = [n for n in LUMBAR if n != "L3"]
    candidates, truth = candidates_of(rng, spine, names)
    result = label_candidates(candidates, lumbar_model, anchor=("S1", truth.index("S1")))
    assert labels_by_truth(result, truth) == {name: name for name in names}
    assert result.missing == ["L3"]
    no_gap = label_candidates(candidates, lumbar_model, anchor=("S1", truth.index("S1")), max_gap=0)
    assert len(no_gap.assignments) < len(names)  # without jumps the path breaks at the hole


def test_s2_taken_for_s1_shifts_labels_and_one_user_point_fixes_it(lumbar_model):
    rng = np.random.default_rng(9)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine)
    s2 = spine["S1"] + lumbar_model.pairs[("L5", "S1")].mean  # S2 one "step" below S1
    candidates.append(Candidate(s2, 0.7, anchor_probability=0.8))
    truth.append("S2")
    wrong = label_candidates(candidates, lumbar_model, anchor=("S1", len(candidates) - 1))
    # the paper's typical failure: S2 named S1 and every vertebra above named one level too high up
    mapping = labels_by_truth(wrong, truth)
    assert mapping.pop("S2") == "S1" and len(mapping) >= 6
    assert all(LUMBAR.index(level) == LUMBAR.index(name) - 1 for name, level in mapping.items())
    assert wrong.certainty == pytest.approx(0.8)  # the anchor detector's own probability
    fixed = label_candidates(candidates, lumbar_model, anchor=("S1", len(candidates) - 1), fixed={"S1": spine["S1"]})
    assert labels_by_truth(fixed, truth) == {name: name for name in LUMBAR if name != "S1"}
    s1 = [a for a in fixed.assignments if a.level == "S1"][0]
    assert s1.user_set and s1.candidate is None and np.allclose(s1.position, spine["S1"])
    assert fixed.anchored and fixed.certainty == 1.0


def test_short_thoracic_view_without_anchor_is_uncertain():
    certainties = []
    for seed in range(5):
        rng = np.random.default_rng(200 + seed)
        model = fit_shape_model(training_cases(rng, THORACIC))
        spine = make_spine(rng, THORACIC)
        candidates, truth = candidates_of(rng, spine, ["T5", "T6", "T7", "T8"])
        result = label_candidates(candidates, model)
        assert not result.anchored and result.certainty <= 0.5
        shifts = {alt.shift: alt.cost for alt in result.alternatives}
        assert {-1, 1} <= set(shifts) and min(shifts[-1], shifts[1]) - result.cost < 10  # nearly as good
        for a in result.assignments:
            assert a.confidence == pytest.approx(result.certainty * candidates[a.candidate].probability)
        certainties.append(result.certainty)
    assert np.mean(certainties) < 0.45  # thoracic steps look alike: shifted namings keep a real share
    # one user point anchors the rest
    user = label_candidates(candidates, model, fixed={"T9": spine["T6"]})
    assert user.anchored and user.certainty == 1.0
    assert [a.level for a in user.assignments] == ["T8", "T9", "T10", "T11"]


def test_unanchored_lumbar_view_is_capped(lumbar_model):
    rng = np.random.default_rng(11)
    candidates, truth = candidates_of(rng, make_spine(rng, LUMBAR), ["L1", "L2", "L3", "L4"])
    result = label_candidates(candidates, lumbar_model)
    assert not result.anchored and result.certainty <= 0.5
    assert result.alternatives and all(alt.cost >= result.cost - 1e-9 for alt in result.alternatives)


def test_user_point_forces_labels_around_it(lumbar_model):
    rng = np.random.default_rng(12)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine)
    # the user says the true L2 is L3: it outranks the (correct) S1 anchor
    result = label_candidates(candidates, lumbar_model, anchor=("S1", truth.index("S1")), fixed={"L3": spine["L2"]})
    mapping = labels_by_truth(result, truth)
    assert mapping["L1"] == "L2" and mapping["L3"] == "L4" and mapping["T10"] == "T11"
    assert [a.level for a in result.assignments if a.user_set] == ["L3"]
    with pytest.raises(InputError, match="cannot be joined"):  # L1 below L4: no spine fits
        label_candidates(candidates, lumbar_model, fixed={"L1": spine["L5"], "L4": spine["L1"]})


def test_six_lumbar_spine(lumbar6_model, lumbar_model):
    assert "L6" in lumbar6_model.levels and "L6" not in lumbar_model.levels
    rng = np.random.default_rng(13)
    normal = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, normal)
    result = label_candidates(candidates, lumbar6_model, anchor=("S1", truth.index("S1")))
    assert labels_by_truth(result, truth) == {name: name for name in LUMBAR}  # no L6 without evidence

    six = make_spine(rng, LUMBAR6)
    candidates, truth = candidates_of(rng, six, LUMBAR6[2:])  # T12, L1..L6, S1
    anchor = ("S1", truth.index("S1"))
    # from S1 alone, "6 lumbar" and "5 lumbar + one more thoracic" explain the detections equally
    # often; only the step shapes decide, so nothing is asserted there
    # one user point at L1 settles it: seven vertebrae from L1 to S1 need the L6 layer
    result = label_candidates(candidates, lumbar6_model, anchor, fixed={"L1": six["L1"]})
    assert labels_by_truth(result, truth) == {name: name for name in LUMBAR6[2:] if name != "L1"}
    plain = label_candidates(candidates, lumbar_model, anchor, fixed={"L1": six["L1"]})
    assert "L6" not in [a.level for a in plain.assignments]  # a model that never saw L6 cannot name it


def test_empty_and_bad_inputs(lumbar_model):
    assert label_candidates([], lumbar_model).assignments == []
    candidate = Candidate(np.zeros(3), 0.9)
    with pytest.raises(InputError, match="not a level"):
        label_candidates([candidate], lumbar_model, fixed={"C3": np.zeros(3)})
    with pytest.raises(InputError, match="anchor"):
        label_candidates([candidate], lumbar_model, anchor=("S1", 5))
    with pytest.raises(InputError, match="3 coordinates"):
        label_candidates([Candidate(np.zeros(2), 0.9)], lumbar_model)


def test_sparse_pair_box_has_a_floor():
    # a pair seen in two cases only: the box is still at least mean +- 3 SD (SD >= 2 mm) wide
    model = fit_shape_model(training_cases(np.random.default_rng(6), ["T8", "T9", "T10"], n=2))
    pair = model.pairs[("T8", "T9")]
    sd = np.sqrt(np.diag(pair.covariance))
    assert np.all(pair.upper - pair.mean >= 3 * sd - 1e-9) and np.all(pair.mean - pair.lower >= 3 * sd - 1e-9)


def test_transitional_layer_never_wins_by_coverage():
    # The top step (T10->T11) of this spine is out of its box but looks like the next level's step, so
    # naming everything one level lower and inserting L6 would explain one more detection. L6 adds no
    # coverage, so the standard path (top detection left out) wins on cost and no name shifts.
    steps = {**STEPS, "T10": (0, -8, -30), "T11": (0, 8, -31), "T12": (0, 8, -33)}
    rng = np.random.default_rng(14)

    def spine(levels, odd_top=False):
        x, points = np.zeros(3), {}
        for upper, lower in zip(levels, levels[1:]):
            points[upper] = x
            step = steps["L4"] if (upper, lower) == ("L5", "L6") else steps[upper]
            step = steps["T11"] if odd_top and upper == "T10" else step
            x = x + np.array(step, float) + rng.normal(0, 1.0, 3)
        points[levels[-1]] = x
        return points

    cases = [spine(LUMBAR) for _ in range(30)] + [spine(LUMBAR6) for _ in range(6)]
    model = fit_shape_model([[LabelledPoint(n, tuple(p)) for n, p in c.items()] for c in cases])
    assert "L6" in model.levels
    odd = spine(LUMBAR, odd_top=True)
    candidates, truth = candidates_of(rng, odd)
    result = label_candidates(candidates, model, anchor=("S1", truth.index("S1")))
    named = labels_by_truth(result, truth)
    assert "L6" not in named.values()
    assert all(named[name] == name for name in named) and len(named) >= 8


def test_anchor_strong_share_decides_between_the_outermost_and_the_strongest_answer(lumbar_model):
    from spinebrain.spinelabel.labelling import LabellingSetup, solve_labelling

    rng = np.random.default_rng(11)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine)
    s1 = truth.index("S1")
    candidates[s1] = Candidate(candidates[s1].position, candidates[s1].probability, anchor_probability=0.9)
    s2 = spine["S1"] + lumbar_model.pairs[("L5", "S1")].mean  # a weaker anchor answer one body lower
    candidates.append(Candidate(s2, 0.7, anchor_probability=0.6))
    truth.append("S2")
    names = {}
    for share in (0.5, 1.0):
        setup = LabellingSetup(lumbar_model, "S1", anchor_strong_share=share)
        result = solve_labelling(candidates, setup)
        names[share] = labels_by_truth(result.labelling, truth)
    assert names[0.5]["S2"] == "S1"  # the outermost strong answer first: every name one level up
    assert "S2" not in names[1.0] or names[1.0]["S2"] != "S1"
    assert all(names[1.0][name] == name for name in LUMBAR)  # only the strongest counts: all right


def test_the_outermost_answer_comes_first_only_where_the_spine_ends_at_it(lumbar_model):
    from dataclasses import replace

    from spinebrain.spinelabel.labelling import LabellingSetup, solve_labelling

    rng = np.random.default_rng(12)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine)
    s1, l5 = truth.index("S1"), truth.index("L5")
    step = lumbar_model.pairs[("L5", "S1")].mean
    rule = LabellingSetup(lumbar_model, "S1", anchor_outermost_at_end=True)

    def names(cands, setup=rule):
        return labels_by_truth(solve_labelling(cands, setup).labelling, truth + ["S2", "S3"][: len(cands) - len(truth)])

    # the scan ends at the anchor level: a stronger answer one level inwards, nothing beyond -> the outermost
    ends = list(candidates)
    ends[l5] = replace(ends[l5], anchor_probability=0.9)
    ends[s1] = replace(ends[s1], anchor_probability=0.6)
    assert all(names(ends)[name] == name for name in LUMBAR)

    # the spine goes on: the true anchor answers strongest, a weaker answer one level beyond it ...
    on = list(candidates)
    on[s1] = replace(on[s1], anchor_probability=0.9)
    s2 = Candidate(spine["S1"] + step, 0.7, anchor_probability=0.6)
    assert names(on + [s2], LabellingSetup(lumbar_model, "S1"))["S2"] == "S1"  # old rule: the outermost, one level off
    assert names(on + [s2])["S2"] == "S1"  # nothing seen beyond S2: still taken for the end
    # ... with vertebra heat beyond it (the sacrum's next segment), or a detection there: the strongest
    assert all(names(on + [replace(s2, beyond=0.4)])[name] == name for name in LUMBAR)
    s3 = Candidate(spine["S1"] + 2 * step, 0.6)
    assert all(names(on + [s2, s3])[name] == name for name in LUMBAR)


def test_one_step_beyond_is_about_one_vertebra_further_out_near_the_axis(lumbar_model):
    origin = np.zeros(3)
    outwards, step = lumbar_model.outwards("S1"), lumbar_model.median_step()
    assert np.dot(outwards, lumbar_model.spine_direction()) > 0.99  # S1's end is the feet's
    assert np.dot(lumbar_model.outwards("T8" if "T8" in lumbar_model.levels else lumbar_model.levels[0]),
                  lumbar_model.spine_direction()) < -0.99
    side = np.cross(outwards, [1.0, 0.0, 0.0])
    side /= np.linalg.norm(side)
    assert lumbar_model.one_step_beyond(origin, outwards * step, "S1")
    assert not lumbar_model.one_step_beyond(origin, outwards * 0.3 * step, "S1")  # the same vertebra
    assert not lumbar_model.one_step_beyond(origin, -outwards * step, "S1")  # inwards
    assert not lumbar_model.one_step_beyond(origin, outwards * step + side * 0.8 * step, "S1")
    assert lumbar_model.one_step_beyond(origin, outwards * step + side * 0.8 * step, "S1", off_axis_steps=1.5)


def test_the_graphs_fit_overrules_the_outermost_answer_only_where_it_is_far_better(lumbar_model):
    """An anchor answer beyond the true one with nothing beyond it is taken for the end of the spine; where the path
    pinned there fits the shape model far worse (the sacrum turns back: its step is not a lumbar one), the strongest
    answer is taken instead. A close call keeps the rule's choice; a card without the option keeps the rule."""
    from dataclasses import replace

    from spinebrain.spinelabel.labelling import ANCHOR_COST_CHOICE, LabellingSetup, solve_labelling

    rng = np.random.default_rng(12)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine)
    candidates[truth.index("S1")] = replace(candidates[truth.index("S1")], anchor_probability=0.9)
    weighed = LabellingSetup(lumbar_model, "S1", anchor_outermost_at_end=True, anchor_cost_choice=ANCHOR_COST_CHOICE)
    rule = LabellingSetup(lumbar_model, "S1", anchor_outermost_at_end=True)

    def names(s2_step, setup):
        s2 = Candidate(spine["S1"] + np.asarray(s2_step, float), 0.7, anchor_probability=0.6)
        return labels_by_truth(solve_labelling(candidates + [s2], setup).labelling, truth + ["S2"])

    sacral = [0.0, -28.0, -12.0]  # S1 -> S2 runs back along the sacrum, far from the L5 -> S1 step
    assert names(sacral, rule)["S2"] == "S1"  # the rule alone: the outermost, every name one level up
    assert all(names(sacral, weighed)[name] == name for name in LUMBAR)
    lumbosacral = lumbar_model.pairs[("L5", "S1")].mean  # shaped like the step above: no far better fit
    assert names(lumbosacral, weighed)["S2"] == "S1"
    assert names(lumbosacral, rule)["S2"] == "S1"


WHOLE = CERVICAL[:7] + THORACIC + ["L1", "L2", "L3", "L4", "L5", "S1"]


def test_a_whole_spine_model_pins_both_ends_so_a_missed_body_is_a_gap_not_a_shift():
    """Named from L5 alone, a missed C4 in a loosely fitted shape model closes up: C1-C3 are named one level low.
    With the C2 answer pinned too (a whole-spine model's second anchor) the graph must leave the gap at C4. Without
    an L5 answer the model names from C2 alone, anchored; with neither it is not anchored."""
    from dataclasses import replace

    from spinebrain.spinelabel.labelling import LabellingSetup, solve_labelling

    fitted = np.random.default_rng(3)
    loose = fit_shape_model([[LabelledPoint(n, tuple(p)) for n, p in make_spine(fitted, WHOLE, noise_mm=7).items()]
                             for _ in range(30)])
    rng = np.random.default_rng(20)
    spine = make_spine(rng, WHOLE)
    names = [n for n in WHOLE if n != "C4"]
    candidates, truth = candidates_of(rng, spine, names)
    l5, c2 = truth.index("L5"), truth.index("C2")
    candidates[l5] = replace(candidates[l5], anchor_probability=0.8)
    candidates[c2] = replace(candidates[c2], second_anchor_probability=0.7)
    whole = LabellingSetup(loose, "L5", second_anchor_level="C2")

    def wrong(result):
        return sorted(k for k, v in labels_by_truth(result.labelling, truth).items() if k != v)

    assert wrong(solve_labelling(candidates, LabellingSetup(loose, "L5"))) == ["C1", "C2", "C3"]
    both = solve_labelling(candidates, whole)
    assert wrong(both) == [] and both.labelling.missing == ["C4"]
    assert both.labelling.certainty == pytest.approx(0.7)  # the weaker of the two pinned answers
    no_l5 = [replace(c, anchor_probability=0.0) for c in candidates]
    from_c2 = solve_labelling(no_l5, whole)
    assert from_c2.labelling.anchored and labels_by_truth(from_c2.labelling, truth)["C2"] == "C2"
    neither = solve_labelling([replace(c, second_anchor_probability=0.0) for c in no_l5], whole)
    assert not neither.labelling.anchored and "No anchor (L5 or C2)" in " ".join(neither.warnings)
