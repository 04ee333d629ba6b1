"""The heatmap detector of SpineLabel: targets, peaks -> candidates, a tiny real training run, the pipeline hook."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spinebrain.spinelabel.heatmap import (HeatmapDetector, anchor_answers, find_peaks, gap_fillers, gaussian_heatmap,
                                           predict_band, spine_window,
                                           looks_like_ct, normalise_slab, peak_points, slice_stack, suppress_near)
from spinebrain.spinelabel.heatmap_training import HeatmapSamples, PreparedCase, generated_case, sample_targets
from spinebrain.spinelabel.metrics import label_at
from spinebrain.spinelabel.slices import extract_sagittal_slab

from spinelabel_support import shipped_lumbar_default as _shipped


def _case(rows=120, names=("L3", "L4", "L5", "S1"), step=16.0, top_row=-np.inf, bottom_row=np.inf) -> PreparedCase:
    """A straight spine on a (9, rows, 60) grid: centres on slice 4, column 30, ``step`` pixels apart."""
    centres = np.array([[4.0, 20.0 + step * k, 30.0] for k in range(len(names))])
    arrays = np.zeros((9, rows, 60), np.float32)
    return PreparedCase(arrays, np.zeros(arrays.shape, np.uint8), centres, list(names), False, top_row,
                        bottom_row=bottom_row)


# ------------------------------------------------------------------------------------------ targets


def test_gaussian_heatmap_peaks_at_centres_and_decays_across_slices():
    heatmap = gaussian_heatmap((40, 40), [[10, 12], [30, 20]], [0.0, 6.0], pixel_mm=2.0, sigma_mm=4.0, sigma_r_mm=6.0)
    assert heatmap[10, 12] == pytest.approx(1.0)
    assert heatmap[30, 20] == pytest.approx(np.exp(-0.5), rel=1e-5)  # one sigma away in R
    assert heatmap[10, 14] == pytest.approx(np.exp(-0.5), rel=1e-5)  # 4 mm = one sigma in-plane
    assert heatmap[0, 39] < 1e-6


def test_anchor_target_needs_the_sacrum_in_view_below_l5():
    case = _case()
    l5_row = case.centres[2, 1]  # 52
    full = sample_targets(case, 4, slice(0, 120), slice(0, 60), in_view_bottom=120.0)
    assert full[0][1].max() == pytest.approx(1.0) and full[1][1].min() == 1.0  # L5 anchor taught
    row, col = np.unravel_index(np.argmax(full[0][1]), full[0][1].shape)
    assert (row, col) == (int(l5_row), 30)
    cut_below = int(l5_row + 0.5 * case.step_px)  # border halfway to S1: ambiguous, not taught
    ambiguous = sample_targets(case, 4, slice(0, cut_below), slice(0, 60), in_view_bottom=float(cut_below))
    assert ambiguous[1][1].max() == 0.0
    cut_at = int(l5_row + 2)  # border just below L5's centre: no sacrum in view, a negative
    negative = sample_targets(case, 4, slice(0, cut_at), slice(0, 60), in_view_bottom=float(cut_at))
    assert negative[0][1].max() == 0.0 and negative[1][1].min() == 1.0
    assert negative[0][0].max() == pytest.approx(1.0)  # the bodies are still targets


def test_anchor_neighbour_weight_makes_false_answers_on_l4_and_s1_costlier():
    case = _case()  # L3 L4 L5 S1 at rows 20, 36, 52, 68
    plain = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0)
    targets, weights = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, anchor_neighbour_weight=5.0)
    assert np.array_equal(targets, plain[0])  # the targets do not change, only the anchor's weights
    assert weights[1][36, 30] == pytest.approx(5.0) and weights[1][68, 30] == pytest.approx(5.0)  # L4, S1
    assert weights[1][52, 30] == pytest.approx(1.0, abs=1e-3)  # L5 itself: the positive keeps weight 1
    assert weights[1][20, 30] == pytest.approx(1.0, abs=1e-3)  # L3 is no harder than background
    assert np.array_equal(weights[0], plain[1][0])  # the vertebra channel is untouched
    cut_below = int(52 + 0.5 * case.step_px)  # an ambiguous crop stays untaught
    _, ambiguous = sample_targets(case, 4, slice(0, cut_below), slice(0, 60), float(cut_below), anchor_neighbour_weight=5.0)
    assert ambiguous[1].max() == 0.0


def test_c2_target_of_a_whole_spine_model_needs_the_atlas_in_view_above_c2():
    case = _case(names=("C1", "C2", "C3", "C4"))  # rows 20, 36, 52, 68; 16 px steps
    targets, weights = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, channels=3, third="C2")
    row, col = np.unravel_index(np.argmax(targets[2]), targets[2].shape)
    assert (row, col) == (36, 30) and targets[2].max() == pytest.approx(1.0) and weights[2].min() == 1.0
    assert targets[1].max() == 0.0  # no L5 in view: the L5 anchor is a plain negative
    cut = int(36 - 0.5 * case.step_px)  # window top halfway between C1 and C2: the atlas is cut, not taught
    _, ambiguous = sample_targets(case, 4, slice(cut, 120), slice(0, 60), 120.0, channels=3, third="C2")
    assert ambiguous[2].max() == 0.0
    negative = sample_targets(case, 4, slice(34, 120), slice(0, 60), 120.0, channels=3, third="C2")
    assert negative[0][2].max() == 0.0 and negative[1][2].min() == 1.0  # C2 at the top edge: looks like C3
    _, hard = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, 3, 5.0, third="C2")
    assert hard[2][20, 30] == pytest.approx(5.0) and hard[2][52, 30] == pytest.approx(5.0)  # C1, C3
    assert hard[2][68, 30] == pytest.approx(1.0, abs=1e-3)
    s1 = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, channels=3)  # the default third: S1
    assert s1[0][2].max() == 0.0


def test_cross_anchor_weight_makes_each_anchor_channel_a_hard_negative_at_the_other_end():
    """A whole-spine model's C2 channel answered on L5 / S1 and its L5 channel on C2 (measured): with
    ``cross_anchor_weight`` each answer there costs more, whether or not the channel's own level is in view."""
    lumbar, neck = _case(names=("L4", "L5", "S1", "S2")), _case(names=("C1", "C2", "C3", "C4"))  # rows 20, 36, 52
    for case, own, other in ((lumbar, 1, 2), (neck, 2, 1)):
        plain = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, 3, third="C2")
        targets, weights = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, 3, third="C2",
                                          cross_anchor_weight=5.0)
        assert np.array_equal(targets, plain[0])  # only the weights change
        assert weights[other][36, 30] == pytest.approx(5.0)  # L5 (lumbar) / C2 (neck) in the other channel
        assert weights[own][36, 30] == pytest.approx(plain[1][own][36, 30])  # its own channel untouched
    _, lumbar_weights = sample_targets(lumbar, 4, slice(0, 120), slice(0, 60), 120.0, 3, third="C2",
                                       cross_anchor_weight=5.0)
    assert lumbar_weights[2][20, 30] == pytest.approx(5.0) and lumbar_weights[2][52, 30] == pytest.approx(5.0)
    assert lumbar_weights[2][68, 30] == pytest.approx(1.0, abs=1e-3)  # S2 is no harder than background
    s1_model = sample_targets(lumbar, 4, slice(0, 120), slice(0, 60), 120.0, 3, cross_anchor_weight=5.0)[1]
    assert s1_model[2].max() == pytest.approx(1.0)  # a lumbar model's S1 channel: no cross anchor


def test_a_second_anchor_answer_counts_only_at_its_end_of_the_spine():
    """C2 answers with more than two detections over 1.5 steps beyond them towards the head are not C2."""
    from spinebrain.spinelabel.heatmap import at_the_end
    from spinebrain.spinelabel.graph import fit_shape_model
    from spinebrain.points import LabelledPoint

    names = ["C1", "C2", "C3", "C4", "C5"]
    shape = fit_shape_model([[LabelledPoint(n, (0.0, 0.0, -20.0 * k + d)) for k, n in enumerate(names)]
                             for d in (0.0, 1.0, -1.0)])
    detections = [np.array([0.0, 0.0, -20.0 * k]) for k in range(5)] + [np.array([0.0, 0.0, 15.0])]  # C1-C5, skull
    answers = [(detections[1], 0.6), (detections[3], 0.8)]  # on C2; on C4 (beyond it: C3, C2, C1, the skull)
    kept = at_the_end(answers, detections, shape, "C2")
    assert [h for _, h in kept] == [0.6]


def test_sacrum_weight_makes_a_body_answer_on_s2_costlier():
    case = _case()  # L3 L4 L5 S1 at rows 20, 36, 52, 68: S2 extrapolated 0.9 steps below S1, row 82.4
    plain = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0)
    targets, weights = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, sacrum_weight=4.0)
    assert np.array_equal(targets, plain[0])  # S2 is still background, only costlier
    s2_row = 68 + 0.9 * 16
    assert weights[0][int(round(s2_row)), 30] == pytest.approx(4.0, abs=0.05)
    assert weights[0][68, 30] == pytest.approx(1.0, abs=0.02)  # S1 itself stays a plain positive
    assert weights[0][52, 30] == pytest.approx(1.0, abs=1e-3)
    assert np.array_equal(weights[1], plain[1][1])  # the anchor channel is untouched
    off_centre = sample_targets(case, 0, slice(0, 120), slice(0, 60), 120.0, sacrum_weight=4.0)[1]
    assert 1.0 < off_centre[0][int(round(s2_row)), 30] < 4.0  # 8 mm to the side in R: a smaller bump
    no_sacrum = _case(names=("L2", "L3", "L4", "L5"))  # S1 not named: nothing to extrapolate from
    assert np.array_equal(sample_targets(no_sacrum, 4, slice(0, 120), slice(0, 60), 120.0, sacrum_weight=4.0)[1],
                          sample_targets(no_sacrum, 4, slice(0, 120), slice(0, 60), 120.0)[1])


def test_vertebra_weights_ignore_unmasked_bodies_above_and_below():
    case = _case(names=("L1", "L2", "L3", "L4", "L5"), top_row=10.0, bottom_row=90.0)
    targets, weights = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0)
    assert weights[0, :10].max() == 0.0 and weights[0, 10:90].min() == 1.0 and weights[0, 90:].max() == 0.0
    assert weights[1].min() == 1.0  # the anchor channel is not affected
    assert np.isclose(targets[0][20, 30], 1.0)


def test_sacrum_below_s1_is_not_a_body():
    case = _case(names=("L5", "S1", "S2"))
    targets, _ = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0)
    assert targets[0][36, 30] == pytest.approx(1.0)  # S1
    assert targets[0][52, 30] < 0.01  # S2


def test_normalisation_uses_a_hu_window_for_ct_and_percentiles_for_mr():
    ct = np.array([-1000.0, -100.0, 40.0, 1250.0, 3000.0])
    assert looks_like_ct(ct) and not looks_like_ct(np.abs(ct))
    scaled = normalise_slab(ct)
    assert scaled[0] == 0.0 and scaled[-1] == 1.0 and 0.0 < scaled[2] < 0.3
    mr = np.linspace(0, 1000, 1001)
    assert normalise_slab(mr).min() == 0.0 and normalise_slab(mr).max() == 1.0


def test_slice_stack_repeats_edge_slices():
    arrays = np.arange(4)[:, None, None] * np.ones((4, 2, 2))
    assert slice_stack(arrays, 0, 3)[:, 0, 0].tolist() == [0, 0, 1]
    assert slice_stack(arrays, 3, 3)[:, 0, 0].tolist() == [2, 3, 3]


# --------------------------------------------------------------------------------- peaks -> points


def test_peaks_give_sub_voxel_ras_points_of_the_body_centres():
    image = sitk.Image(40, 60, 80, sitk.sitkFloat32)  # 1 mm grid, identity direction (LPS)
    slab = extract_sagittal_slab(image, 2.0, 5, 2.0)
    truth = np.array([[5.0, 10.0, 12.0], [5.5, 25.0, 14.0]])  # (slice, row, col); second between slices
    volume = np.zeros(slab.arrays.shape, np.float32)
    s, r, c = np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij")
    for ts, tr, tc in truth:
        np.maximum(volume, np.exp(-((s - ts) ** 2 + (r - tr) ** 2 + (c - tc) ** 2) / 2.0), out=volume)
    peaks = find_peaks(volume, 0.3, (3, 5, 5))
    assert len(peaks) == 2
    found = sorted(np.array([p for p, _ in peaks]).tolist())
    assert np.allclose(found, truth, atol=0.3)
    options = {"peak_window_mm": [6.0, 10.0], "slice_step_mm": 2.0}
    points = peak_points(slab, volume, 0.3, options)
    assert np.allclose(points[0][0], slab.pixel_to_ras(*truth[0]), atol=0.7)
    kept = suppress_near([(np.zeros(3), 0.9), (np.array([0, 0, 5.0]), 0.8), (np.array([0, 0, 30.0]), 0.7)], 10.0)
    assert [h for _, h in kept] == [0.9, 0.7]


def test_anchor_answers_need_one_strong_peak_then_keep_the_near_strong_ones():
    l4, l5, far = (np.array([0.0, 0.0, z]) for z in (-40.0, -75.0, 60.0))
    assert anchor_answers([(l4, 0.6), (l5, 0.55)], threshold=0.65) == []  # nothing reaches the threshold
    kept = anchor_answers([(l4, 0.72), (l5, 0.63), (far, 0.3)], threshold=0.65)
    assert [h for _, h in kept] == [0.72, 0.63]  # L5 stays a candidate although below the threshold


def test_network_keeps_any_input_size():
    network = HeatmapDetector(features=(4, 4, 8, 8, 16, 4)).eval()
    with torch.no_grad():
        out = network(torch.zeros(2, 3, 37, 50))
    assert out.shape == (2, 2, 37, 50)
    assert network.config["architecture"] == "spinebrain.spinelabel.heatmap.HeatmapDetector"


# ------------------------------------------------------------------------------- training (tiny, real)


@pytest.mark.slow
def test_tiny_training_run_writes_checkpoints_resumes_and_exports(tmp_path):
    from spinebrain.spinelabel.heatmap_recipe import (best_checkpoint, build_engines, export_package, load_checkpoint,
                                                     resume)
    from spinebrain.spinelabel.graph import fit_shape_model
    from spinebrain.spinelabel.pipeline import load_spine_label_model

    torch.manual_seed(0)
    cases = [generated_case(seed, "lumbar", "t2", max_voxels=150_000) for seed in (11, 12)]
    samples = HeatmapSamples(cases, 4, size=64)
    select = HeatmapSamples(cases[1:], 2, size=64, augment=False)
    loader = torch.utils.data.DataLoader(samples, batch_size=2)
    select_loader = torch.utils.data.DataLoader(select, batch_size=2)

    def run(epochs):
        network = HeatmapDetector(features=(4, 4, 8, 8, 16, 4))
        trainer, _, scheduler = build_engines(network, loader, select_loader, tmp_path, epochs, 1e-3,
                                              deadline=float("inf"))
        resume(trainer, network, scheduler, tmp_path)
        trainer.run()
        return trainer

    first = run(1)
    assert np.isfinite(first.state.output["loss"].item())
    assert (tmp_path / "checkpoint_epoch=1.pt").exists()
    second = run(2)  # resumes at epoch 1 and trains only the second
    assert second.state.epoch == 2 and (tmp_path / "checkpoint_epoch=2.pt").exists()
    shape = fit_shape_model([[p for p in _points(c)] for c in cases])
    network = load_checkpoint(best_checkpoint(tmp_path), HeatmapDetector(features=(4, 4, 8, 8, 16, 4)))
    package = export_package(network, tmp_path / "pkg", shape, {}, "2 generated cases", "test", model_id="tiny-heatmap")
    model = load_spine_label_model("lumbar", str(package), device="cpu", onnx=False)
    assert isinstance(model.networks, HeatmapDetector) and model.anchor_level == "L5"
    from spinebrain.models.onnx_network import OnnxNetwork

    assert isinstance(load_spine_label_model("lumbar", str(package), device="cpu").networks, OnnxNetwork)  # exported


def test_a_tilted_generated_case_is_trained_on_but_left_out_of_the_shape_model(tmp_path):
    from spinebrain.spinelabel.heatmap_recipe import write_shape_points

    straight = generated_case(11, "lumbar", "t2", max_voxels=150_000)
    tilted = generated_case(11, "lumbar", "t2", max_voxels=150_000, tilt_deg=12.0)
    assert tilted.names == straight.names and tilted.info["tilt_deg"] == 12.0

    def coronal_angle(case):  # degrees of the R-against-S line through the body centres
        ras = np.array(list(case.info["points"].values()))
        return np.degrees(np.arctan(np.polyfit(ras[:, 2], ras[:, 0], 1)[0]))

    assert abs(coronal_angle(tilted) - coronal_angle(straight)) == pytest.approx(12.0, abs=1.0)
    sample = HeatmapSamples([tilted], 1, size=64)[0]
    assert tuple(sample["image"].shape) == (3, 64, 64) and tuple(sample["label"].shape) == (4, 64, 64)
    write_shape_points([straight, tilted], tmp_path)
    saved = json.loads((tmp_path / "shape_points.json").read_text())
    assert list(saved) == [straight.name]
    assert np.allclose(saved[straight.name]["L3"], straight.info["points"]["L3"])


def _points(case: PreparedCase):
    from spinebrain.points import LabelledPoint

    return [LabelledPoint(name, tuple(ras)) for name, ras in case.info["points"].items()]


# ----------------------------------------------------------------------------------- shipped model


def test_peaks_near_the_edge_of_the_hot_box_are_the_brute_force_local_maxima():
    rng = np.random.default_rng(5)
    volume = np.zeros((12, 40, 30), np.float32)
    volume[rng.integers(0, 12, 9), rng.integers(0, 40, 9), rng.integers(0, 30, 9)] = rng.uniform(0.3, 1.0, 9)
    volume[0, 0, 0], volume[11, 39, 29] = 0.9, 0.2  # corners: a peak on the box's edge, one under the threshold
    window = (3, 5, 5)
    padded = np.pad(volume, [(w // 2, w // 2) for w in window])
    expected = {(s, r, c) for s, r, c in zip(*np.nonzero(volume >= 0.25))
                if volume[s, r, c] >= padded[s:s + 3, r:r + 5, c:c + 5].max()}
    found = {tuple(int(v) for v in p) for p, _ in find_peaks(volume, 0.25, window, refine=False)}
    assert found == expected and (0, 0, 0) in found


def test_a_body_tilted_in_the_coronal_plane_keeps_its_r_centre():
    # flat-topped across R (slices 4-16), its in-plane centre moving 0.2 px per slice (12 degrees): equal peaks
    # lie along the plateau, and the heat at one such pixel would pull each R centre towards its own slice
    s, r, c = np.meshgrid(np.arange(21), np.arange(40), np.arange(40), indexing="ij")
    across = np.clip(1.0 - np.maximum(np.abs(s - 10) - 6, 0) / 3.0, 0.0, 1.0)
    volume = (across * np.exp(-((r - 20 - 0.2 * (s - 10)) ** 2 + (c - 20) ** 2) / (2 * 1.5**2))).astype(np.float32)
    peaks = find_peaks(volume, 0.3, (21, 9, 9))  # equal maxima along the ridge: one peak each, all one body
    assert peaks and all(abs(position[0] - 10.0) < 0.3 for position, _ in peaks)


def test_spine_window_boxes_the_heat_with_a_margin_and_at_least_a_training_patch():
    heat = np.zeros((3, 200, 150), np.float32)
    heat[1, 90:110, 20:30] = 0.5
    options = {"window_margin_mm": 20.0, "window_min_px": 0}
    rows, cols = spine_window(heat, options, pixel_mm=2.0)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (80, 120, 10, 40)
    rows, cols = spine_window(heat, {**options, "window_min_px": 64}, pixel_mm=2.0)
    assert (rows.start, rows.stop) == (68, 132) and (cols.start, cols.stop) == (0, 64)  # moved inside the plane
    assert spine_window(heat, {**options, "window_margin_mm": 0.0}, 2.0) == (slice(0, 200), slice(0, 150))
    assert spine_window(0 * heat, options, 2.0) == (slice(0, 200), slice(0, 150))
    strip = {**options, "window_min_px": 160}  # the plane is narrower than that in one axis: left whole
    assert spine_window(heat, strip, 2.0) == (slice(0, 200), slice(0, 150))


def test_the_windowed_dense_pass_finds_the_same_bodies_as_the_whole_plane():
    from spinebrain.synth.spine import generate_spine

    model = _shipped()
    case = generate_spine(1001, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0))
    options = {**model.card.extra["heatmap"], "batch": 2, "coarse_step": 4}
    results = []
    for margin in (0.0, 40.0):
        slab, maps = predict_band(model.networks, case.image, model.pixel_mm, {**options, "window_margin_mm": margin})
        peaks = peak_points(slab, maps[0], options["threshold"], options)
        results.append(sorted((p.tolist() for p, _ in peaks), key=lambda ras: ras[2]))  # along S
    whole, windowed = results
    assert len(whole) >= 4 and len(windowed) == len(whole)
    assert np.abs(np.array(whole) - np.array(windowed)).max() < 2.5  # mm: the crop shifts instance norm a little


def test_pipeline_with_the_heatmap_card_on_a_generated_scan():
    from spinebrain.spinelabel.pipeline import label_spine
    from spinebrain.synth.spine import generate_spine

    model = _shipped()
    case = generate_spine(1001, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0))
    result = label_spine(case.image, model)
    assert len(result.points) >= 3 and model.anchor_level == "L5"
    inside = [label_at(case.labels, p.ras) is not None for p in result.points]
    assert sum(inside) >= 0.8 * len(inside)


def test_shipped_model_finds_the_bodies_of_a_held_out_real_mr_scan(data_dir):
    from spinebrain.io import load_volume, read_image
    from spinebrain.spinelabel.metrics import reference_centroids
    from spinebrain.spinelabel.pipeline import label_spine

    model = _shipped()
    folder = data_dir / "A11_vb2_t2_lumbar" / "vb2_07"  # splits.json 'validation': never trained on
    labels = read_image(folder / "vertebrae.nii.gz")
    result = label_spine(load_volume(folder / "image.nii.gz"), model)
    found = {label_at(labels, p.ras) for p in result.points} - {None}
    assert len(found) >= 0.9 * len(reference_centroids(labels))


# ------------------------------------------------------------------------------------------ gap fillers


def _chain(levels_s: list[float], r: float = 0.0) -> list[tuple[np.ndarray, float]]:
    """Strong detections straight down the spine (RAS, S decreasing), 0.8 high."""
    return [(np.array([r, 0.0, s]), 0.8) for s in levels_s]


def test_gap_filler_offers_the_weak_peak_in_the_middle_of_a_one_vertebra_gap():
    down = np.array([0.0, 0.0, -1.0])
    strong = _chain([0, -30, -60, -120, -150, -180])  # the body at -90 answered weakly
    weak = [(np.array([12.0, 2.0, -92.0]), 0.3), (np.array([0.0, 40.0, -95.0]), 0.35)]  # the second is far in front
    fillers = gap_fillers(strong, weak, 30.0, down, r_scale=0.4)
    assert len(fillers) == 1
    position, height = fillers[0]
    assert height == pytest.approx(0.3)
    assert position.tolist() == pytest.approx([0.0, 2.0, -92.0])  # the neighbours' R, the peak's A and S


def test_gap_filler_leaves_ordinary_spacing_and_off_middle_peaks_alone():
    down = np.array([0.0, 0.0, -1.0])
    assert gap_fillers(_chain([0, -30, -60, -90]), [(np.array([0.0, 0.0, -45.0]), 0.3)], 30.0, down) == []
    strong = _chain([0, -30, -60, -120, -150])
    assert gap_fillers(strong, [(np.array([0.0, 0.0, -70.0]), 0.3)], 30.0, down) == []  # 20 mm off the middle
    assert gap_fillers(_chain([0, -30, -60, -180]), [(np.array([0.0, 0.0, -120.0]), 0.3)], 30.0, down) == []  # 4 steps


def test_gap_filler_ignores_a_detection_off_the_spine():
    down = np.array([0.0, 0.0, -1.0])
    strong = _chain([0, -30, -60, -120, -150]) + [(np.array([-45.0, 0.0, -100.0]), 0.6)]  # beside the spine
    fillers = gap_fillers(strong, [(np.array([0.0, 0.0, -90.0]), 0.3)], 30.0, down)
    assert [p.tolist() for p, _ in fillers] == [[0.0, 0.0, -90.0]]


def test_gap_filler_adds_no_second_point_on_a_body_of_a_curved_spine():
    """Generated 177013 (a spine curved 25 mm to one side): T8 lay just past the off-spine distance from the median R
    while T7 and T9 lay inside it, so T7-T9 looked like a gap and T8's own peak filled it: two points on one body."""
    down = np.array([0.0, 0.0, -1.0])
    sides = [0.0] * 5 + [20.0, 26.0, 22.0] + [0.0] * 3
    strong = [(np.array([r, 0.0, -30.0 * k]), 0.8) for k, r in enumerate(sides)]
    raw = [(np.array([26.0, 0.0, -180.0]), 0.8)]  # the peaks below the threshold hold the strong ones too
    assert gap_fillers(strong, raw, 30.0, down, r_scale=0.4) == []


def test_a_compressed_body_beside_a_stronger_off_spine_answer_still_fills_its_gap(data_dir):
    """CT from the VerSe map of A8, development seed 122 (never reported): its compressed L1 answers 0.39-0.41 on the
    spine while a transverse process 38 mm to the side answers 0.56 at nearly its height, and the suppression keeps
    only the latter; the gap filler looks at every peak, so L1 is found."""
    from spinebrain.spinelabel.pipeline import label_spine
    from spinebrain.spinesegment.data3d import label_map_case

    label_map = data_dir / "A8_verse_sub-verse004_labels_only" / "sub-verse004_seg-vert_msk.nii.gz"
    if not label_map.exists():
        pytest.skip("A8 is not in the data folder")
    case = label_map_case(label_map, 122)
    result = label_spine(case.image, _shipped())
    found = {label_at(case.labels, p.ras) for p in result.points} - {None}
    assert found >= {"T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"}


def test_an_anchor_answer_carries_the_vertebra_heat_one_vertebra_beyond_it():
    from spinebrain.spinelabel.graph import Candidate
    from spinebrain.spinelabel.heatmap import with_heat_beyond

    shape = _shipped().shape_model
    outwards, step = shape.outwards("L5"), shape.median_step()
    answer = Candidate(np.zeros(3), 0.9, anchor_probability=0.8)
    peaks = [(outwards * step, 0.35), (outwards * step * 1.05, 0.5), (-outwards * step, 0.9),  # beyond / inwards
             (outwards * step + np.array([0.0, step, 0.0]), 0.7)]  # a step off the axis: not the next vertebra
    assert with_heat_beyond(answer, peaks, shape, "L5").beyond == 0.5
    assert with_heat_beyond(answer, peaks[2:], shape, "L5").beyond == 0.0
    plain = Candidate(np.zeros(3), 0.9)  # not an anchor answer: nothing measured
    assert with_heat_beyond(plain, peaks, shape, "L5").beyond == 0.0


def test_a_whole_spine_package_names_from_l5_and_c2(tmp_path):
    """The export of a three-output network with a C2 channel is a whole-spine model with two anchors. Weights: the
    shipped lumbar network, its C2 channel a copy of its L5 one, so the "C2" answers sit on L5, cannot be pinned
    as C2 there, and the names are the lumbar model's."""
    from spinebrain.errors import ModelError
    from spinebrain.spinelabel.graph import fit_shape_model
    from spinebrain.spinelabel.heatmap_recipe import export_package, warm_start
    from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model
    from spinebrain.synth.spine import generate_spine

    shipped = _shipped()
    network = HeatmapDetector(outputs=3)
    warm_start(network, shipped.package, heatmaps=3)
    cases = [generated_case(seed, "whole", "ct", max_voxels=300_000) for seed in (21, 22, 23)]
    shape = fit_shape_model([_points(c) for c in cases])
    package = export_package(network, tmp_path, shape, {}, "test", "test", model_id="whole-test", third="C2",
                             extra={"heatmap": {**shipped.card.extra["heatmap"], "heatmaps": 3}})
    card = json.loads((package / "model_card.json").read_text())
    assert card["region"] == "whole" and card["anchor_channels"] == {"L5": 1, "C2": 2}
    assert card["labels"]["2"].startswith("C2") and card["levels"][0] == "C1" and card["levels"][-1] == "S1"
    with pytest.raises(ModelError, match="whole"):
        load_spine_label_model("lumbar", str(package), device="cpu")
    model = load_spine_label_model("whole", str(package), device="cpu")
    assert model.second_anchor_level == "C2" and model.setup.second_anchor_level == "C2"
    scan = generate_spine(1001, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0))
    result = label_spine(scan.image, model)
    # the "C2" copy answers on L5, with the lumbar and thoracic spine beyond it towards the head: not C2
    assert not any(c.second_anchor_probability > 0 for c in result.candidates)
    assert result.labelling.anchored
    # the same network channels as the lumbar model's: the same names (this scan has six lumbar vertebrae)
    assert [p.label for p in result.points] == [p.label for p in label_spine(scan.image, shipped).points]
