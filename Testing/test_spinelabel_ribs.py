"""The last rib as a second anchor: planes across the spine, the boundary posterior and the naming rules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.graph import Candidate
from spinebrain.spinelabel.heatmap import sacrum_below
from spinebrain.spinelabel.labelling import solve_labelling
from spinebrain.spinelabel.pipeline import load_spine_label_model
from spinebrain.spinelabel.rib_evidence import _contradicted, boundary_posterior
from spinebrain.spinelabel.ribs import CHANNELS, PLANE_PX, body_planes, lateral_reach_mm, spine_axes, with_rib_evidence

CHAIN = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]


@pytest.fixture(scope="module")
def setup():
    plain = load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", device="cpu").setup
    return replace(plain, ribs={"share": 0.9, "floor": 0.02, "transitional": 0.0})


@pytest.fixture(scope="module")
def whole_setup():
    plain = load_spine_label_model("whole", "spine-label-whole-heatmap", device="cpu").setup
    return replace(plain, ribs={"share": 0.9, "floor": 0.02, "transitional": 0.0, "first_rib": 1.0})


@pytest.fixture(scope="module")
def moving(setup):
    return replace(setup, ribs={**setup.ribs, "transitional": 1.0})


def _positions(shape_model, levels=CHAIN) -> list[np.ndarray]:
    position, out = np.array([0.0, -40.0, -250.0]), []
    for upper, lower in zip([None] + levels[:-1], levels):
        if upper is not None:
            position = position + shape_model.displacement(upper, lower).mean
        out.append(position)
    return out


def _candidates(setup, ribs, anchor_at: int | None = 6, levels=CHAIN) -> list[Candidate]:
    """Bodies one mean step apart; ``ribs[k]`` the rib answer of body k (S1 gets one too); the L5 anchor at ``anchor_at``."""
    return [Candidate(p, 0.8, 0.8 if k == anchor_at else 0.0, rib=r)
            for k, (p, r) in enumerate(zip(_positions(setup.shape_model, levels), ribs))]


def names(result) -> list[str]:
    return [p.label for p in result.points]


def test_the_boundary_posterior_peaks_where_the_answers_change():
    posterior = boundary_posterior([0.99, 0.95, 0.03, 0.01], 0.02)
    assert posterior.argmax() == 2 and posterior[2] > 0.9
    assert boundary_posterior([0.5, 0.5, 0.5], 0.02).max() < 0.5  # no evidence: nothing decisive


def test_rib_answers_that_agree_with_the_anchor_change_nothing(setup):
    ribs = [0.99, 0.98, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01]
    result = solve_labelling(_candidates(setup, ribs), setup)
    assert names(result) == CHAIN and result.labelling.anchored and not result.labelling.notes


def test_six_lumbar_vertebrae_the_anchor_body_becomes_l6_and_the_user_is_told(setup, moving):
    # T12, L1 ... L6, S1: the L5 detector answers on the last lumbar (L6); only the first body carries a rib
    ribs = [0.99, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]
    assert names(solve_labelling(_candidates(setup, ribs), setup)) == CHAIN  # off unless the card asks for it
    result = solve_labelling(_candidates(setup, ribs), moving)
    assert names(result) == ["T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1"]
    assert any("six lumbar" in warning and "L6" in warning for warning in result.warnings)


def test_four_lumbar_vertebrae_the_anchor_body_becomes_l4(moving):
    # T11, T12, L1 ... L4, S1 (no L5): three bodies carry ribs
    ribs = [0.99, 0.99, 0.97, 0.02, 0.01, 0.01, 0.01, 0.01]
    result = solve_labelling(_candidates(moving, ribs), moving)
    assert names(result) == ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "S1"]
    assert any("four lumbar" in warning for warning in result.warnings)


def test_without_an_anchor_the_last_rib_names_the_chain(setup):
    levels = ["T10", "T11", "T12", "L1", "L2"]  # a short view: no sacrum, no anchor answer
    ribs = [0.99, 0.99, 0.98, 0.02, 0.01]
    plain = solve_labelling(_candidates(setup, ribs, None, levels), replace(setup, ribs={}))
    assert not plain.labelling.anchored
    result = solve_labelling(_candidates(setup, ribs, None, levels), setup)
    assert names(result) == levels and result.labelling.anchored
    assert not any("uncertain" in warning for warning in result.warnings)
    assert any("named from the last rib" in warning for warning in result.warnings)


def test_rib_answers_that_contradict_each_other_name_nothing(setup, whole_setup):
    levels = ["T10", "T11", "T12", "L1", "L2", "L3"]  # no anchor; a "rib" on L3 below the last rib: out of its depth
    contradicted = [0.99, 0.99, 0.98, 0.02, 0.01, 0.97]
    for rule in (setup, whole_setup):
        assert not solve_labelling(_candidates(rule, contradicted, None, levels), rule).labelling.anchored
        agreeing = contradicted[:-1] + [0.03]
        assert solve_labelling(_candidates(rule, agreeing, None, levels), rule).labelling.anchored


def test_an_answer_above_the_neck_the_classifier_was_taught_contradicts_nothing():
    """Seven neck bodies: more than five above the first rib lie on C2, C1 or the skull base, whatever their names."""
    neck_then_ribs = [0.0] * 7 + [1.0, 1.0]  # C1 ... C7, T1, T2: the first rib at index 7
    for above, contradicts in ((0, False), (1, False), (2, True), (6, True)):  # C1, C2: not taught; C3, C7: taught
        chances = list(neck_then_ribs)
        chances[above] = 0.65  # the classifier's answer of generated neck 168003 on its C2
        assert _contradicted(chances, 7, 9) is contradicts, above
    assert _contradicted([0.65] + [0.0] * 6, 0, 0)  # without a first rib in view every answer is asked


def test_an_answer_below_the_last_lumbar_place_contradicts_nothing():
    """Three rib-bearing bodies, then five lumbar places: a body further down lies on an L6 or the sacrum."""
    for below, contradicts in ((3, True), (7, True), (8, False), (9, False)):  # L1, L5: taught; beyond: not
        chances = [1.0] * 3 + [0.0] * 7
        chances[below] = 0.9  # a sacrum answering "rib" (development view 181005 at 6 mm: 0.90 on S1)
        assert _contradicted(chances, 0, 3) is contradicts, below


def test_undecided_or_far_off_rib_answers_keep_the_anchor(moving):
    undecided = [0.6, 0.5, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert names(solve_labelling(_candidates(moving, undecided), moving)) == CHAIN
    two_off = [0.99, 0.99, 0.99, 0.99, 0.02, 0.01, 0.01, 0.01]  # the boundary two bodies from the names: kept
    assert names(solve_labelling(_candidates(moving, two_off), moving)) == CHAIN


def test_a_user_point_outranks_the_rib_answers(moving):
    ribs = [0.99, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]
    candidates = _candidates(moving, ribs)
    user = LabelledPoint("L3", tuple(candidates[4].position), None, True)
    result = solve_labelling(candidates, moving, [user])
    assert dict(zip(names(result), [p.ras for p in result.points]))["L3"] == user.ras
    assert names(result) == CHAIN


def test_a_weak_anchor_answer_is_taken_only_with_two_vertebrae_below_it(setup):
    shape = setup.shape_model
    chain = _positions(shape)
    sacrum = chain[-1] + shape.displacement("L5", "S1").mean  # about one step below S1
    peaks = [(p, 0.8) for p in chain] + [(sacrum, 0.4)]
    answer = [(chain[6], 0.45)]  # a weak answer on L5
    assert sacrum_below(answer, 0.35, peaks, shape, "L5") == answer
    assert sacrum_below(answer, 0.35, peaks[:-1], shape, "L5") == []  # the scan ends at S1: one body below only
    assert sacrum_below([(chain[6], 0.3)], 0.35, peaks, shape, "L5") == []  # too weak


def test_planes_across_the_spine_show_what_lies_beside_each_body():
    image = sitk.Image(80, 80, 120, sitk.sitkFloat32)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin((-80.0, -80.0, -120.0))  # LPS: the volume spans -80..80 (R, A) and -120..120 (S)
    array = np.zeros((120, 80, 80), np.float32)
    array[:, :, 10:20] = 1000.0  # a bright slab at one side (LPS x -60..-40 = R +40..+60)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin((-80.0, -80.0, -120.0))
    positions = np.array([[0.0, 0.0, z] for z in (40.0, 0.0, -40.0)])
    axes = spine_axes(positions)
    assert np.allclose(axes[1], [[1, 0, 0], [0, 1, 0], [0, 0, -1]])
    planes = body_planes(image, positions)
    assert planes.shape == (3, CHANNELS, PLANE_PX, PLANE_PX)
    mask = planes[1, -1]
    assert 0.1 < mask.mean() < 0.9  # the 192 mm planes reach beyond the 160 mm wide scan
    bright = np.argwhere(planes[1, 2] > 0.5)[:, 1] * 3.0 - 94.5  # columns (mm right of the body) of the slab
    assert bright.min() >= 35 and bright.max() <= 65
    assert lateral_reach_mm(planes[1]) == pytest.approx(79.5, abs=3.1)


def test_bodies_side_by_side_get_upright_planes_not_a_refused_grid():
    """A detection beside the spine at a body's height (fresh 174005): the chain's local direction runs along R,
    which left no right axis; the resampler refused the grid and labelling the scan failed."""
    image = sitk.Image(80, 80, 120, sitk.sitkFloat32)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin((-80.0, -80.0, -120.0))
    positions = np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
    axes = spine_axes(positions)
    assert np.allclose(axes[0], [[1, 0, 0], [0, 1, 0], [0, 0, -1]])
    assert all(np.isclose(abs(np.linalg.det(frame)), 1.0) for frame in axes)
    assert body_planes(image, positions).shape == (2, CHANNELS, PLANE_PX, PLANE_PX)


def test_a_scan_too_narrow_to_show_ribs_gives_no_rib_answer(bundled):
    """A sagittal MR 60 mm wide (real lumbar MR is 50-80 mm) shows no rib: its bodies get no answer, and naming is
    left to the anchor."""
    array = np.random.default_rng(1).random((120, 80, 30)).astype(np.float32) * 100
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin((-30.0, -80.0, -120.0))
    candidates = [Candidate(np.array([0.0, 0.0, z]), 0.8) for z in (40.0, 0.0, -40.0)]
    answered = with_rib_evidence(image, candidates, bundled.ribs, np.array([0.0, 0.0, -1.0]))
    assert [c.rib for c in answered] == [None, None, None]
    wide = with_rib_evidence(image, candidates, bundled.ribs, np.array([0.0, 0.0, -1.0]), min_lateral_mm=20.0)
    assert all(0.0 <= c.rib <= 1.0 for c in wide)


@pytest.fixture(scope="module")
def bundled():
    return load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", device="cpu")


def test_the_bundled_rib_classifier_answers_the_same_from_onnx_and_torch(bundled):
    from spinebrain.models.onnx_network import OnnxNetwork

    torch_model = load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", device="cpu", onnx=False)
    assert isinstance(bundled.ribs.network, OnnxNetwork) and not isinstance(torch_model.ribs.network, OnnxNetwork)
    planes = np.random.default_rng(0).random((5, CHANNELS, PLANE_PX, PLANE_PX)).astype(np.float32)
    np.testing.assert_allclose(bundled.ribs.probabilities(planes), torch_model.ribs.probabilities(planes), atol=1e-4)
    assert bundled.setup.ribs["share"] == pytest.approx(0.9) and not bundled.setup.ribs["transitional"]


def test_the_bundled_rib_classifier_tells_thoracic_from_lumbar_bodies_on_a_generated_scan(bundled):
    from spinebrain.synth.spine import generate_spine
    from spinebrain.synth.spine_anatomy import SpineOptions

    spine = generate_spine(50006, modality="ct", view="lumbar", orientation="sagittal",
                           options=SpineOptions(max_voxels=900_000))  # a development seed, never trained on
    points = [p for p in spine.points if p.label[0] in "TL"]
    chances = bundled.ribs.probabilities(body_planes(spine.image, np.array([p.ras for p in points])))
    for point, chance in zip(points, chances):
        assert (chance > 0.5) == point.label.startswith("T"), (point.label, chance)


def test_a_changed_rib_classifier_file_is_refused(tmp_path, bundled):
    import shutil

    from spinebrain.errors import ModelError
    from spinebrain.models import ModelRegistry

    copy = tmp_path / "spine-label-lumbar-heatmap"
    shutil.copytree(bundled.package, copy)
    with open(copy / "ribs.safetensors", "r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelError, match="rib classifier"):
        load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", registry=ModelRegistry(tmp_path, tmp_path / "none"),
                               device="cpu")


def test_the_rib_recipe_builds_samples_trains_and_installs_a_classifier(tmp_path, bundled):
    """The recipe end to end, tiny: two generated scans (one selects), seconds of training, added to a package copy."""
    import json
    import shutil

    import torch
    from safetensors.torch import save_file

    from spinebrain.models import ModelRegistry
    from spinebrain.spinelabel.rib_training import build_samples, install_into_package, load_samples, train

    paths = build_samples(3_000_001, 2, 2, tmp_path / "run")
    samples = load_samples(paths)
    assert samples["planes"].shape[1:] == (CHANNELS, PLANE_PX, PLANE_PX) and len(set(samples["seeds"])) == 2
    network, best, _ = train(samples, minutes=0.02, log=lambda line: None)
    assert 0.0 <= best["accuracy"] <= 1.0
    weights = tmp_path / "run" / "ribs.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(weights))
    weights.with_suffix(".json").write_text(json.dumps({"kwargs": network.kwargs}))
    package = tmp_path / "models" / "spine-label-lumbar-heatmap"
    shutil.copytree(bundled.package, package)
    entry = install_into_package(package, weights, {"training_data": "test"})
    assert entry["sha256"] and entry.get("onnx", {}).get("weights_sha256") == entry["sha256"]
    whole = tmp_path / "models" / "spine-label-whole-heatmap"  # a package's decision options survive a reinstall
    shutil.copytree(bundled.package.parent / whole.name, whole)
    before = json.loads((whole / "model_card.json").read_text())["ribs"]
    after = install_into_package(whole, weights, {"training_data": "test"})
    assert {k: after[k] for k in ("first_rib", "transitional", "min_lateral_mm")} == {
        k: before[k] for k in ("first_rib", "transitional", "min_lateral_mm")}
    model = load_spine_label_model("lumbar", "spine-label-lumbar-heatmap",
                                   registry=ModelRegistry(tmp_path / "models", tmp_path / "none"), device="cpu")
    planes = samples["planes"][:3].astype(np.float32)
    with torch.inference_mode():
        expected = torch.sigmoid(network(torch.from_numpy(planes))[:, 0]).numpy()
    np.testing.assert_allclose(model.ribs.probabilities(planes), expected, atol=1e-4)


def test_two_boundaries_find_the_first_and_the_last_rib():
    from spinebrain.spinelabel.rib_evidence import boundaries_posterior

    both = boundaries_posterior([0.02, 0.03, 0.98, 0.99, 0.97, 0.04, 0.01], 0.02)  # C6 C7 | T1 ... T3 | L1 L2
    assert np.unravel_index(both.argmax(), both.shape) == (2, 5) and both.max() > 0.8
    assert np.isclose(both.sum(), 1.0) and both[np.tril_indices(8)][1:].sum() == 0.0  # k < m, "no rib" at [0, 0]
    ribs_from_the_top = [0.99, 0.95, 0.03, 0.01]  # the first body carries a rib: the last boundary as before
    np.testing.assert_allclose(boundaries_posterior(ribs_from_the_top, 0.02).sum(axis=0),
                               boundary_posterior(ribs_from_the_top, 0.02), atol=0.01)


def test_a_thoracic_view_without_the_last_rib_is_named_from_the_first(whole_setup):
    levels = ["C5", "C6", "C7", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"]  # no anchor, no thoracolumbar junction
    ribs = [0.02, 0.03, 0.02, 0.98, 0.99, 0.99, 0.97, 0.99, 0.98, 0.99, 0.99]
    candidates = _candidates(whole_setup, ribs, None, levels)
    last_rib_only = replace(whole_setup, ribs={**whole_setup.ribs, "first_rib": 0.0})
    assert not solve_labelling(candidates, last_rib_only).labelling.anchored  # every T body has a rib: no T12
    result = solve_labelling(candidates, whole_setup)
    assert names(result) == levels and result.labelling.anchored
    assert any("named from the first rib" in warning for warning in result.warnings)
    undecided = [0.5] * 3 + ribs[3:]
    assert not solve_labelling(_candidates(whole_setup, undecided, None, levels), whole_setup).labelling.anchored


def test_the_whole_recipe_samples_the_neck_and_narrows_the_field_of_view():
    from spinebrain.spinelabel.rib_data import scan_samples
    from spinebrain.spinelabel.rib_training import augment

    names_seen = set()
    for seed in range(3_100_001, 3_100_004):
        planes, answers, found = scan_samples(seed, max_voxels=400_000, recipe="whole")
        assert list(answers) == [name.startswith("T") for name in found]
        names_seen |= set(found)
    assert {"C5", "C7", "T1"} <= names_seen  # seed 3100001 is a whole spine
    rng = np.random.default_rng(0)
    narrowed = augment(np.ones((8, CHANNELS, PLANE_PX, PLANE_PX), np.float32), rng, narrow_share=1.0)
    reach = [lateral_reach_mm(sample) for sample in narrowed]
    assert all(40.0 - 3.0 <= r <= 75.0 for r in reach) and len(set(reach)) > 1
    assert (narrowed[:, :-1][narrowed[:, -1:].repeat(CHANNELS - 1, 1) == 0] == 0).all()  # nothing outside the view
