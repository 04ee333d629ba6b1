"""A level the labelling jumps over gets an estimated point: named, flagged, never counted as a detection."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_spinelabel_graph import LUMBAR, candidates_of, make_spine, training_cases

from spinebrain.points import ESTIMATE_NOTE, LabelledPoint, is_estimate, parse_point_description, point_description
from spinebrain.spinelabel.graph import fit_shape_model
from spinebrain.spinelabel.labelling import LabellingSetup, relabel_points, solve_labelling, with_estimates
from spinebrain.spinelabel.metrics import aggregate, evaluate_points
from spinebrain.spinelabel.operations import candidates_from_points


@pytest.fixture(scope="module")
def model():
    return fit_shape_model(training_cases(np.random.default_rng(31), LUMBAR))


def _run_with_a_hole(model, hole="L3", seed=32):
    rng = np.random.default_rng(seed)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine, [n for n in LUMBAR if n != hole])
    candidates[truth.index("S1")] = replace(candidates[truth.index("S1")], anchor_probability=0.9)
    return spine, candidates, solve_labelling(candidates, LabellingSetup(model, "S1"))


def test_a_jumped_level_is_placed_between_its_neighbours_and_flagged(model):
    spine, _, result = _run_with_a_hole(model)
    assert [p.label for p in result.points] == LUMBAR  # every level, in order
    estimate = next(p for p in result.points if p.label == "L3")
    assert is_estimate(estimate) and estimate.confidence == 0.0 and not estimate.user_set
    assert estimate.description.startswith(ESTIMATE_NOTE) and "between L2 and L4" in estimate.description
    assert np.linalg.norm(np.asarray(estimate.ras) - spine["L3"]) < 6.0  # a lumbar body is ~25 mm tall
    assert sum(map(is_estimate, result.points)) == 1
    assert any("No detection for L3" in w and "confidence 0" in w for w in result.warnings)


def test_the_estimate_survives_the_description_round_trip_and_a_relabel(model):
    _, candidates, result = _run_with_a_hole(model)
    estimate = next(p for p in result.points if is_estimate(p))
    confidence, text = parse_point_description(point_description(estimate))
    assert is_estimate(LabelledPoint("L3", estimate.ras, confidence, description=text))
    # a list read back without detections: the estimate is no candidate, the solve places it again
    assert len(candidates_from_points(result.points, "S1")) == len(result.points) - 1
    again = relabel_points(result.points, None, result.setup).points
    assert [(p.label, p.description) for p in again] == [(p.label, p.description) for p in result.points]
    # a user who moves the estimate has set it: it is a fixed point from then on
    assert not is_estimate(replace(estimate, user_set=True))


def test_without_both_neighbours_nothing_is_estimated(model):
    points = [LabelledPoint(name, (0.0, 0.0, -35.0 * k), 0.9) for k, name in enumerate(LUMBAR[:4])]
    assert with_estimates(points, ["L3"], model) == points  # no named level below L3 in the list
    assert with_estimates(points, [], model) is points


def test_metrics_count_an_estimate_as_a_name_but_not_as_a_detection():
    reference = [LabelledPoint(n, (0.0, 0.0, -30.0 * k)) for k, n in enumerate(["L1", "L2", "L3"])]
    estimate = LabelledPoint("L2", (0.0, 0.0, -31.0), 0.0, description=f"{ESTIMATE_NOTE}: placed between L1 and L3")
    predicted = [reference[0], estimate, reference[2]]
    metrics = evaluate_points(predicted, ref_points=reference)
    assert (metrics["tp"], metrics["fn"], metrics["fp"]) == (2, 1, 0) and metrics["missed"] == ["L2"]
    assert metrics["correct_labels"] == 3 and metrics["labeling_accuracy"] == 1.0
    assert (metrics["estimated"], metrics["estimated_right"]) == (1, 1)
    wrong = evaluate_points([reference[0], replace(estimate, label="L3"), reference[2]], ref_points=reference)
    assert wrong["correct_labels"] == 2 and wrong["estimated_right"] == 0
    pooled = aggregate([metrics, wrong])
    assert (pooled["estimated"], pooled["estimated_right"], pooled["sensitivity"]) == (2, 1, 4 / 6)
