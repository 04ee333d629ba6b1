"""A spine tilted in the coronal plane is turned upright for the graph, and named on its own positions."""

from __future__ import annotations

import numpy as np
import pytest

from spinebrain.points import LabelledPoint, is_estimate
from spinebrain.spinelabel.graph import Candidate
from spinebrain.spinelabel.labelling import solve_labelling
from spinebrain.spinelabel.pipeline import load_spine_label_model
from spinebrain.spinelabel.upright import CoronalFrame, theil_sen_slope

LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]


@pytest.fixture(scope="module")
def setup():
    return load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", device="cpu").setup


def _chain(shape_model, coronal_degrees: float) -> dict[str, np.ndarray]:
    """Body centres one mean step apart, turned about the A-P axis through their middle."""
    points, position = {"T11": np.array([10.0, -40.0, -300.0])}, np.array([10.0, -40.0, -300.0])
    for upper, lower in zip(LEVELS, LEVELS[1:]):
        position = position + shape_model.displacement(upper, lower).mean
        points[lower] = position
    angle = np.radians(coronal_degrees)
    turn = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    middle = np.mean(list(points.values()), axis=0)
    return {name: turn @ (p - middle) + middle for name, p in points.items()}


def _candidates(points: dict[str, np.ndarray]) -> list[Candidate]:
    return [Candidate(p, 0.8, 0.8 if name == "L5" else 0.0) for name, p in points.items()]


def test_an_upright_spine_is_left_as_it_is(setup):
    points = _chain(setup.shape_model, 1.0)
    assert not CoronalFrame(np.array(list(points.values()))).turned
    result = solve_labelling(_candidates(points), setup)
    assert [p.label for p in result.points] == LEVELS


def test_a_tilted_spine_keeps_every_body_and_its_own_positions(setup):
    points = _chain(setup.shape_model, 20.0)  # a 12-degree tilt of the scan plus a scoliotic curve
    frame = CoronalFrame(np.array(list(points.values())))
    assert frame.turned and abs(abs(frame.degrees) - 20.0) < 1.0
    upright = frame.candidates(_candidates(points))
    assert np.ptp([c.position[0] for c in upright]) < 1.0  # R no longer drifts along S
    result = solve_labelling(_candidates(points), setup)
    assert [p.label for p in result.points] == LEVELS  # without turning, the graph leaves L1 out (see below)
    for point in result.points:
        assert np.allclose(point.ras, points[point.label])


def test_without_turning_the_fitted_box_drops_a_body_of_the_tilted_spine(setup, monkeypatch):
    monkeypatch.setattr("spinebrain.spinelabel.upright.MIN_TILT_DEGREES", 90.0)  # never turn
    result = solve_labelling(_candidates(_chain(setup.shape_model, 20.0)), setup)
    assert result.labelling.missing  # a level jumped: its point is only an estimate, not the detection
    assert [p.label for p in result.points if not is_estimate(p)] != LEVELS


def test_a_user_point_on_a_tilted_spine_stays_where_the_user_set_it(setup):
    points = _chain(setup.shape_model, 20.0)
    candidates = [c for c, name in zip(_candidates(points), points) if name != "L2"]
    fixed = [LabelledPoint("L2", tuple(points["L2"] + np.array([1.0, 0.0, 0.0])), None, True)]
    result = solve_labelling(candidates, setup, fixed)
    assert [p.label for p in result.points] == LEVELS
    user = next(p for p in result.points if p.label == "L2")
    assert user.user_set and np.allclose(user.ras, fixed[0].ras)


def test_the_frame_turns_images_as_it_turns_points():
    positions = np.stack([0.2 * np.linspace(-90, 90, 7) + 5.0, np.full(7, 3.0), np.linspace(-90, 90, 7)], axis=1)
    frame = CoronalFrame(positions)
    turn = frame.turn()
    for position in positions:
        assert np.allclose(turn.point(position), frame.upright(position))
        assert np.allclose(turn.back(turn.point(position)), position)


def test_a_tilted_scan_is_detected_again_upright_and_named_right(monkeypatch):
    """Development scan 50010 (a lumbar CT) turned -12 degrees about A-P: without the second look the anchor
    is lost and nothing is named right; with it, every body."""
    from spinebrain.spinelabel import pipeline
    from spinebrain.spinelabel.metrics import evaluate_points
    from spinebrain.spinelabel.training import VALIDATION_MAX_VOXELS
    from spinebrain.synth import SpineOptions, generate_spine
    from spinebrain.turn import A_P, Turn, volume_centre_ras

    spine = generate_spine(50010, modality="ct", view="lumbar", orientation="random",
                           options=SpineOptions(max_voxels=VALIDATION_MAX_VOXELS["lumbar"]))
    turn = Turn(-12.0, A_P, volume_centre_ras(spine.image))
    image, labels = turn.image(spine.image), turn.image(spine.labels, is_label=True)
    model = load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", device="cpu")
    reference = [LabelledPoint(p.label, tuple(turn.point(p.ras))) for p in spine.points
                 if p.label in model.shape_model.levels]
    partial = {r.name for r in spine.vertebrae if not r.complete or r.name not in model.shape_model.levels}

    def named_right(result) -> float:
        return evaluate_points(result.points, reference, labels, partial)["labeling_accuracy"]

    looked_again = pipeline.label_spine(image, model)
    assert looked_again.labelling.anchored and named_right(looked_again) == 1.0
    monkeypatch.setattr(pipeline, "second_look_if_tilted", lambda image, model, candidates, progress=None: candidates)
    model.ribs = None  # the second look alone: the weak anchor answer with the sacrum below it names this scan too
    monkeypatch.setitem(model.card.extra["heatmap"], "weak_anchor_threshold", None)
    assert named_right(pipeline.label_spine(image, model)) < 0.5


def test_the_second_look_keeps_a_first_look_body_that_fills_a_gap_in_its_chain_without_its_anchor_answer():
    from spinebrain.spinelabel.pipeline import first_look_misses

    def candidate(x, z):
        return Candidate(np.array([x, 0.0, z]), 0.7, 0.9, ends=(0.9, 0.1), beyond=0.3)

    first = [candidate(0.0, 0.0), candidate(1.0, -30.0), candidate(0.0, -52.0),  # the chain, with the body at -30
             candidate(40.0, -30.0), candidate(0.0, -100.0)]  # off the chain; beyond its lower end
    second = [Candidate(np.array([4.0, 0.0, 1.0]), 0.8), Candidate(np.array([0.0, 3.0, -60.0]), 0.8),
              Candidate(np.array([45.0, 0.0, -10.0]), 0.6)]  # off the spine, left unnamed by the graph
    chain = np.array([[4.0, 0.0, 1.0], [0.0, 3.0, -60.0]])  # what the graph named, head to feet
    kept = first_look_misses(first, second, chain, radius_mm=10.0, step_mm=30.0)
    # the body at -30 mm (a compressed L1, say) the second look lost: its named neighbours lie 61 mm apart
    assert [float(c.position[2]) for c in kept] == [-30.0]
    assert kept[0].probability == 0.7 and kept[0].anchor_probability == 0.0
    assert kept[0].ends is None and kept[0].beyond == 0.0
    assert first[1].anchor_probability == 0.9  # the first look's own candidates are left as they were
    # named neighbours one step apart leave no gap; nothing named, no chain
    assert first_look_misses(first, second, chain, radius_mm=10.0, step_mm=50.0) == []
    assert first_look_misses(first, second, np.zeros((0, 3)), radius_mm=10.0, step_mm=30.0) == []


def test_theil_sen_slope_is_scipys():
    from scipy.stats import theilslopes

    rng = np.random.default_rng(3)
    for case in range(50):
        x = rng.normal(size=int(rng.integers(4, 15))) * 50
        y = 0.2 * x + rng.normal(size=len(x)) * 3
        if case % 3 == 0:
            x[1] = x[0]  # a pair with the same x has no slope
        assert theil_sen_slope(x, y) == pytest.approx(theilslopes(y, x)[0], abs=1e-12)

