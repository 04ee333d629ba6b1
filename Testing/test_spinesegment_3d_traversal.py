"""The 3D iterative traversal (seed 002) as a state machine, driven by scripted fake predictors.

The fake volume holds "vertebrae" as boxes stacked along axis 0 (value = its id, 1 at the top =
highest z). The honest fake predictor does what the trained network is meant to do: it returns the
first box from the top of the patch that is not in memory and shows at least n_min voxels, and
says complete when that box lies entirely inside the patch.
"""

import numpy as np
import pytest

from spinebrain.spinesegment.traversal import TraversalSettings, run_traversal, search_positions

SETTINGS = TraversalSettings(patch=16, n_min=20, delta_max=2, max_iterations=20)


def stacked_boxes(count=4, height=8, gap=2, shape_yx=(30, 26), offset_z=3):
    """Boxes ``height`` high with ``gap`` between them; id 1 is the highest (top)."""
    depth = offset_z + count * (height + gap) + 3
    volume = np.zeros((depth,) + shape_yx, np.float32)
    for index in range(count):
        top = depth - offset_z - index * (height + gap)
        volume[top - height: top, 8:20, 6:18] = index + 1
    return volume


def honest_predictor(volume, n_min=SETTINGS.n_min):
    totals = np.bincount(volume.astype(int).ravel())

    def predict(image, memory):
        ids = np.rint(image).astype(int)
        free = (ids > 0) & (memory < 0.5)
        counts = np.bincount(ids[free].ravel(), minlength=len(totals))
        for box in range(1, len(totals)):  # 1 = the top
            if counts[box] >= n_min:
                target = ids == box
                return target.astype(np.float32), float(target.sum() == totals[box])
        return np.zeros(image.shape, np.float32), 0.0

    return predict


def test_finds_every_box_in_order_with_complete_flags():
    volume = stacked_boxes()
    result = run_traversal(volume, honest_predictor(volume), SETTINGS)
    assert len(result.instances) == 4
    for number, instance in enumerate(result.instances, start=1):
        np.testing.assert_array_equal(instance.mask, volume == number)  # exact instance, top-down order
        assert instance.complete and instance.converged
    assert result.memory.sum() == (volume > 0).sum()
    assert result.steps["search"] >= 1 and result.steps["follow"] >= 4 and result.steps["reanalyse"] == 4


def test_a_box_cut_by_the_scan_end_is_flagged_incomplete():
    volume = stacked_boxes(count=3, offset_z=0)
    volume[-3:] = 0  # the top box loses its top slices (scan ends inside it)
    cut = volume.copy()
    cut[cut == 0] = 0
    result = run_traversal(cut, honest_predictor_with_totals(cut, full_top=8 * 12 * 12), SETTINGS)
    assert [i.complete for i in result.instances] == [False, True, True]


def honest_predictor_with_totals(volume, full_top):
    """As honest_predictor, but box 1 'really' has ``full_top`` voxels (part of it outside the scan)."""
    totals = np.bincount(volume.astype(int).ravel())
    totals[1] = full_top
    inner = honest_predictor(volume)

    def predict(image, memory):
        probability, _ = inner(image, memory)
        ids = np.rint(image).astype(int)
        box = int(ids[probability > 0.5].max()) if probability.any() else 0
        return probability, float(box > 0 and (probability > 0.5).sum() == totals[box])

    return predict


def test_empty_volume_stops_after_the_search():
    volume = np.zeros((40, 30, 30), np.float32)
    result = run_traversal(volume, honest_predictor(volume), SETTINGS)
    assert result.instances == []
    assert result.steps["follow"] == 0  # nothing found: the search covered every position
    assert result.steps["search"] == len(list(search_positions(volume.shape, SETTINGS.patch)))


def test_small_fragments_below_n_min_are_ignored():
    volume = np.zeros((40, 30, 30), np.float32)
    volume[20:22, 10:13, 10:13] = 1  # 18 voxels < n_min = 20
    result = run_traversal(volume, honest_predictor(volume, n_min=1), SETTINGS)
    assert result.instances == []


def test_start_points_cut_the_search():
    volume = np.roll(stacked_boxes(count=4, shape_yx=(60, 60)), (32, 32), axis=(1, 2))  # far from the first positions
    plain = run_traversal(volume, honest_predictor(volume), SETTINGS)
    top_centre = np.argwhere(volume == 1).mean(0)
    started = run_traversal(volume, honest_predictor(volume), SETTINGS, start_points=[top_centre])
    assert len(started.instances) == len(plain.instances) == 4
    for a, b in zip(plain.instances, started.instances):
        np.testing.assert_array_equal(a.mask, b.mask)
    # the labelled start finds the first box at once instead of sliding towards it
    assert started.steps["search"] == 1 < plain.steps["search"]
    assert started.total_steps < plain.total_steps


def test_the_run_ends_when_the_reanalysis_finds_nothing_unless_the_search_continues():
    volume = stacked_boxes(count=2, shape_yx=(30, 26))
    lower = np.zeros((30,) + volume.shape[1:], np.float32)
    lower[5:13, 8:20, 6:18] = 3  # a third box beyond a 20-voxel gap: the re-analysis cannot see it
    gapped = np.concatenate([lower, volume])
    paper = run_traversal(gapped, honest_predictor(gapped), SETTINGS)
    assert len(paper.instances) == 2
    searching = TraversalSettings(**{**SETTINGS.__dict__, "continue_search": True})
    resumed = run_traversal(gapped, honest_predictor(gapped), searching)
    assert len(resumed.instances) == 3
    np.testing.assert_array_equal(resumed.instances[2].mask, gapped == 3)


def test_iteration_cap_takes_the_midpoint_of_the_last_two_positions():
    """A predictor whose fragment always sits 6 voxels off-centre, alternating sides, never converges."""
    volume = np.zeros((60, 40, 40), np.float32)
    calls = []

    def oscillating(image, memory):
        calls.append(1)
        probability = np.zeros(image.shape, np.float32)
        if memory.any():
            return probability, 0.0
        shift = 6 if len(calls) % 2 else -6
        c = SETTINGS.patch // 2 + shift
        probability[c - 2: c + 2, 6:10, 6:10] = 1.0  # 64 voxels, box centre off by `shift` along z
        return probability, 0.9

    settings = TraversalSettings(patch=16, n_min=20, delta_max=2, max_iterations=5, max_steps=200)
    result = run_traversal(volume, oscillating, settings)
    first = result.instances[0]
    assert not first.converged and first.iterations == settings.max_iterations
    assert first.complete


def test_max_steps_bounds_a_misbehaving_predictor():
    volume = np.zeros((200, 40, 40), np.float32)

    def everywhere(image, memory):
        return np.ones(image.shape, np.float32), 0.5  # a new fragment wherever memory is not

    settings = TraversalSettings(patch=16, n_min=20, max_steps=50, continue_search=True)
    result = run_traversal(volume, everywhere, settings)
    assert result.total_steps == 50
    assert len(result.instances) >= 1
