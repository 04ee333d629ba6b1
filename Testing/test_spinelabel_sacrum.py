"""The sacrum answer of a package's sacrum classifier: S1 as an anchor where the L5 detector gave none; the recipe that
teaches it. Real shape model from the bundled whole-spine package; synthetic detections one mean step apart."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.errors import InputError
from spinebrain.points import is_estimate
from spinebrain.spinelabel.graph import Candidate
from spinebrain.spinelabel.labelling import solve_labelling
from spinebrain.spinelabel.pipeline import load_spine_label_model

LUMBAR_VIEW = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]


@pytest.fixture(scope="module")
def whole_setup():
    plain = load_spine_label_model("whole", "spine-label-whole-heatmap", device="cpu").setup
    return replace(plain, ribs={"share": 0.9, "floor": 0.02, "transitional": 1.0, "first_rib": 1.0})


def _bodies(setup, levels, sacrum: dict, l5_answer: str = "") -> list[Candidate]:
    """A detection per level, one mean step apart, no rib answer (a field too narrow for ribs), ``sacrum[level]`` its
    sacrum answer (0.01 where not given)."""
    position, bodies = np.array([0.0, -40.0, -200.0]), []
    for upper, level in zip([None] + levels[:-1], levels):
        if upper is not None:
            position = position + setup.shape_model.displacement(upper, level).mean
        bodies.append(Candidate(position.copy(), 0.8, 0.8 if level == l5_answer else 0.0,
                                sacrum=sacrum.get(level, 0.01)))
    return bodies


def _named(result) -> list[str]:
    return [p.label for p in result.points if not is_estimate(p)]


def test_a_view_without_an_l5_answer_is_named_from_the_sacrum(whole_setup):
    bodies = _bodies(whole_setup, LUMBAR_VIEW, {"S1": 0.97})
    plain = solve_labelling(bodies, replace(whole_setup, ribs={}))
    assert not plain.labelling.anchored
    result = solve_labelling(bodies, whole_setup)
    assert result.labelling.anchored and _named(result) == LUMBAR_VIEW
    assert any("named from the sacrum" in warning for warning in result.warnings)


@pytest.mark.parametrize("sacrum", [{"S1": 0.8}, {"S1": 0.97, "L5": 0.3}, {"S1": 0.97, "L5": None}])
def test_an_undecided_sacrum_answer_names_nothing(whole_setup, sacrum):
    """Below the share, or the body above not surely lumbar (a sacral answer there too, or no answer at all)."""
    result = solve_labelling(_bodies(whole_setup, LUMBAR_VIEW, sacrum), whole_setup)
    assert not result.labelling.anchored and not any("sacrum" in note for note in result.labelling.notes)


def test_an_l5_answer_keeps_its_names(whole_setup):
    """The sacrum answer only anchors a chain without one: an anchored labelling is left to the anchor rules."""
    bodies = _bodies(whole_setup, LUMBAR_VIEW, {"L5": 0.97}, l5_answer="L5")
    result = solve_labelling(bodies, whole_setup)
    assert result.labelling.anchored and _named(result) == LUMBAR_VIEW
    assert not any("named from the sacrum" in note for note in result.labelling.notes)


def test_the_sacrum_recipe_samples_s1_trains_both_answers_and_installs_beside_the_ribs(tmp_path):
    """Tiny: one generated lumbar view, seconds of training, installed as the sacrum classifier of a copy of the
    whole-spine package: the package's rib answers stay those of its rib classifier, the sacrum answer is the new
    network's (ONNX as torch), and every detection gets both."""
    import json
    import shutil

    import torch
    from safetensors.torch import save_file

    from spinebrain.models import ModelRegistry
    from spinebrain.spinelabel.rib_data import scan_samples
    from spinebrain.spinelabel.rib_training import install_into_package, targets_of, train
    from spinebrain.spinelabel.ribs import with_rib_evidence

    planes, answers, names = scan_samples(3_200_001, max_voxels=400_000, recipe="whole_sacrum")  # a lumbar view
    assert "S1" in names and list(answers) == [name.startswith("T") for name in names]
    targets = targets_of(names, 2)
    assert targets[:, 1].tolist() == [float(name == "S1") for name in names] and targets[names.index("S1"), 0] == 0
    samples = {"planes": planes, "names": np.array(names), "seeds": np.array([1] * (len(names) - 2) + [2, 2])}
    network, best, _ = train(samples, minutes=0.01, log=lambda line: None, outputs=2)
    assert network.kwargs["outputs"] == 2 and {"sacrum_loss", "sacrum_accuracy"} <= set(best)
    weights = tmp_path / "sacrum.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(weights))
    weights.with_suffix(".json").write_text(json.dumps({"kwargs": network.kwargs}))
    bundled = load_spine_label_model("whole", "spine-label-whole-heatmap", device="cpu")
    package = tmp_path / "models" / "spine-label-whole-heatmap"
    shutil.copytree(bundled.package, package)
    entry = install_into_package(package, weights, {"training_data": "test"}, sacrum=True)
    assert entry["sha256"] == bundled.card.extra["ribs"]["sha256"]  # the rib classifier is kept
    assert entry["sacrum"]["onnx"]["weights_sha256"] == entry["sacrum"]["sha256"]
    model = load_spine_label_model("whole", package.name, registry=ModelRegistry(package.parent, tmp_path / "none"),
                                   device="cpu")
    sample = planes[:3].astype(np.float32)
    with torch.inference_mode():
        sacrum = torch.sigmoid(network(torch.from_numpy(sample))).numpy()[:, 1]
    np.testing.assert_allclose(model.ribs.answers(sample)[:, 0], bundled.ribs.probabilities(sample), atol=1e-5)
    np.testing.assert_allclose(model.ribs.answers(sample)[:, 1], sacrum, atol=1e-4)
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(100, 20, (80, 120, 120)).astype(np.float32))
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin((-120.0, -120.0, -80.0))  # LPS: the middle of the volume lies at RAS (0, 0, 0)
    detections = [Candidate(np.array([0.0, 0.0, z]), 0.8) for z in (-30.0, 0.0, 30.0)]
    down = np.array([0.0, 0.0, -1.0])
    answered = with_rib_evidence(image, detections, model.ribs, down)
    assert all(c.rib is not None and c.sacrum is not None and 0 <= c.sacrum <= 1 for c in answered)
    lumbar = load_spine_label_model("lumbar", "spine-label-lumbar-heatmap", device="cpu")  # taught ribs only
    assert all(c.rib is not None and c.sacrum is None for c in with_rib_evidence(image, detections, lumbar.ribs, down))
    bare = tmp_path / "bare"  # a package without a rib classifier gets no sacrum classifier
    shutil.copytree(lumbar.package, bare)
    card = json.loads((bare / "model_card.json").read_text())
    card.pop("ribs")
    (bare / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="install one before"):
        install_into_package(bare, weights, {"training_data": "test"}, sacrum=True)


def test_the_label_map_recipe_pairs_s1_with_its_empty_place_and_every_file_is_selected_on():
    """One generated map synthesised twice, the same deformation and contrast: the levels above S1 give the same
    planes, S1's place without S1 is a sample that is neither rib nor sacrum; the selection takes scans of each
    sample file, so the rib junction is never left without selection samples."""
    from spinebrain.spinelabel.rib_data import NO_SACRUM, label_map_samples
    from spinebrain.spinelabel.rib_training import selection_seeds, targets_of

    planes, answers, names = label_map_samples(3_300_001, max_voxels=400_000)
    half = len(names) // 2
    assert names[:half][-1] == "S1" and names[half:] == names[:half - 1] + [NO_SACRUM] and not answers.any()
    change = np.abs(planes[:half].astype(float) - planes[half:].astype(float)).mean(axis=(1, 2, 3))
    assert change[:-1].max() < 0.005 < 0.02 < change[-1]  # L5 touches the cut a little
    assert targets_of(names, 2)[:, 1].tolist() == [float(name == "S1") for name in names]
    samples = {"seeds": np.array([1, 2, 3, 4, 11, 12]), "parts": np.array([0, 0, 0, 0, 1, 1])}
    assert selection_seeds(samples, 0.5) == {3, 4, 12}
    assert selection_seeds({"seeds": np.array([1, 2]), "parts": np.array([0, 1])}, 0.1) == {2}  # a scan a file


def test_a_sacrum_answer_with_the_spine_going_on_below_names_nothing(whole_setup):
    """Bodies below the one answering "sacrum" that answer "not the sacrum" as surely: no S1 there (VerSe seed 130)."""
    view = [f"T{k}" for k in range(3, 13)] + LUMBAR_VIEW[3:]  # T3-S1: naming L3 "S1" would keep most of the spine
    result = solve_labelling(_bodies(whole_setup, view, {"L3": 0.999}), whole_setup)
    assert not result.labelling.anchored and not any("sacrum" in note for note in result.labelling.notes)
