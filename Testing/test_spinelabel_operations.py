"""SpineLabel label operations: shift, rename-and-propagate, re-solve with the user's points fixed."""

from __future__ import annotations

import numpy as np
import pytest
from test_spinelabel_graph import LUMBAR, candidates_of, make_spine, training_cases

from spinebrain.errors import InputError
from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.graph import fit_shape_model
from spinebrain.spinelabel.operations import (
    naming_sequence, relabel_with_fixed, set_label, shift_down, shift_labels, shift_up,
)


def chain(names, top=-900.0, step=35.0, user=()):
    """Points straight down the spine, head first."""
    return [LabelledPoint(name, (0.0, 150.0, top - k * step), 0.9, name in user) for k, name in enumerate(names)]


def labels(points):
    return [p.label for p in points]


def test_shift_up_is_the_papers_fix():
    points = chain(["T12", "L1", "L2", "L3", "L4", "L5", "S1"])
    shifted = shift_up(points)
    assert labels(shifted) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]  # S1, L5 ... T12 -> L5, L4 ... T11
    assert labels(points) == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]  # input untouched (undo history)
    assert [p.ras for p in shifted] == [p.ras for p in points]
    assert labels(shift_down(shifted)) == labels(points)
    assert labels(shift_labels(points, -3)) == ["T9", "T10", "T11", "T12", "L1", "L2", "L3"]


def test_shift_beyond_the_ends_is_refused():
    with pytest.raises(InputError, match="below S1"):
        shift_down(chain(["L5", "S1"]))
    with pytest.raises(InputError, match="above C1"):
        shift_up(chain(["C1", "C2"]))
    with pytest.raises(InputError, match="not a vertebra"):
        shift_up(chain(["L4", "Vertebra 2"]))


def test_shift_keeps_transitional_levels_in_sequence():
    assert naming_sequence(["L6"])[-3:] == ["L5", "L6", "S1"]
    assert labels(shift_up(chain(["L4", "L5", "L6", "S1"]))) == ["L3", "L4", "L5", "L6"]
    assert labels(shift_down(chain(["T11", "T12", "T13", "L1"]))) == ["T12", "T13", "L1", "L2"]


def test_shift_never_silently_renames_user_points():
    points = chain(["L3", "L4", "L5"], user=("L4",))
    with pytest.raises(InputError, match="L4"):
        shift_up(points)
    shifted = shift_up(points, include_user_set=True)
    assert labels(shifted) == ["L2", "L3", "L4"] and [p.user_set for p in shifted] == [False, True, False]


def test_set_label_propagates_along_the_spine():
    points = chain(["L1", "L2", "L3", "L4", "L5"])
    reordered = [points[k] for k in (3, 0, 4, 1, 2)]  # list order must not matter, position does
    renamed = set_label(reordered, 0, "L5")  # the true L4 is L5
    by_height = sorted(renamed, key=lambda p: -p.ras[2])
    assert labels(by_height) == ["L2", "L3", "L4", "L5", "S1"]
    assert renamed[0].user_set and not any(p.user_set for p in renamed[1:])
    assert labels(reordered) == ["L4", "L1", "L5", "L2", "L3"]
    with pytest.raises(InputError, match="beyond C1 or S1"):
        set_label(points, 3, "S1")  # L5 would fall below S1
    with pytest.raises(InputError, match="not a vertebra name"):
        set_label(points, 0, "L9")


def test_set_label_keeps_user_points():
    points = chain(["L1", "L2", "L3"], user=("L1",))
    with pytest.raises(InputError, match="your point L1"):
        set_label(points, 2, "L4")
    same = set_label(points, 2, "L3")  # consistent with the user's L1: allowed
    assert labels(same) == ["L1", "L2", "L3"] and [p.user_set for p in same] == [True, False, True]


@pytest.fixture(scope="module")
def model():
    return fit_shape_model(training_cases(np.random.default_rng(21), LUMBAR))


def test_relabel_with_fixed_follows_the_user(model):
    rng = np.random.default_rng(22)
    spine = make_spine(rng, LUMBAR)
    candidates, truth = candidates_of(rng, spine)
    # the current labelling is one level off; the user renames the true L3 (now called L2) to L3
    points = shift_up([LabelledPoint(name, tuple(spine[name]), 0.8) for name in LUMBAR])
    user = LabelledPoint("L3", tuple(spine["L3"]), None, True)
    current = [user if p.ras == user.ras else p for p in points]
    relabelled = relabel_with_fixed(current, candidates, model)
    by_name = {p.label: p for p in relabelled}
    for name in LUMBAR:
        assert np.allclose(by_name[name].ras, spine[name], atol=5.0)  # detections carry 1 mm noise
    assert by_name["L3"] == user and by_name["L3"] is not user  # user point unchanged, new object
    assert sum(p.user_set for p in relabelled) == 1
    # without the detector candidates, the current points themselves are re-solved
    again = relabel_with_fixed(current, None, model)
    assert {p.label: p.ras for p in again} == {name: tuple(spine[name]) for name in LUMBAR}
    with pytest.raises(InputError, match="same name"):
        relabel_with_fixed([user, LabelledPoint("L3", tuple(spine["L4"]), None, True)], None, model)
