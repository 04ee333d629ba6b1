"""The heatmap detector's S1 channel and dense level classes: targets, loss, warm start, naming by level evidence, PNG."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.graph import Candidate, fit_shape_model
from spinebrain.spinelabel.heatmap import HeatmapDetector
from spinebrain.spinelabel.heatmap_training import LEVEL_CLASSES, PreparedCase, level_class, level_targets, sample_targets
from spinebrain.spinelabel.labelling import LabellingSetup, solve_labelling

STEP = 16.0


def _case(names=("L3", "L4", "L5", "S1"), bottom_row=np.inf, anchor_known=True) -> PreparedCase:
    centres = np.array([[4.0, 20.0 + STEP * k, 30.0] for k in range(len(names))])
    arrays = np.zeros((9, 120, 60), np.float32)
    return PreparedCase(arrays, np.zeros(arrays.shape, np.uint8), centres, list(names), False,
                        bottom_row=bottom_row, anchor_known=anchor_known)


# ------------------------------------------------------------------------------------------ targets


def test_s1_target_where_s1_is_labelled_and_whole_in_view():
    case = _case()
    s1_row = int(case.centres[3, 1])  # 68
    targets, weights = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, channels=3)
    assert targets.shape == (3, 120, 60)
    assert targets[2][s1_row, 30] == pytest.approx(1.0) and weights[2].min() == 1.0
    assert targets[2][int(case.centres[2, 1]), 30] < 0.01  # not at L5
    cut = s1_row + 3  # the border cuts through S1: neither there nor gone
    _, cut_weights = sample_targets(case, 4, slice(0, cut), slice(0, 60), float(cut), channels=3)
    assert cut_weights[2].max() == 0.0
    above = int(case.centres[1, 1])  # S1 far below the window: a plain negative
    out_targets, out_weights = sample_targets(case, 4, slice(0, above), slice(0, 60), float(above), channels=3)
    assert out_targets[2].max() == 0.0 and out_weights[2].min() == 1.0


def test_s1_channel_is_not_taught_below_an_unmasked_l5():
    case = _case(names=("L2", "L3", "L4", "L5"), bottom_row=70.0)  # like A10 / A11: S1 in view, not masked
    targets, weights = sample_targets(case, 4, slice(0, 120), slice(0, 60), 120.0, channels=3)
    assert targets[2].max() == 0.0
    assert weights[2, :70].min() == 1.0 and weights[2, 70:].max() == 0.0


def test_level_targets_mark_body_cores_with_their_class():
    case = _case()
    maps = level_targets(case, 4, slice(0, 120), slice(0, 60))
    assert maps.shape == (len(LEVEL_CLASSES), 120, 60)
    assert maps.sum(axis=0).max() == 1.0  # cores never overlap
    for name, (_, row, col) in zip(case.names, case.centres):
        assert maps[LEVEL_CLASSES.index(name), int(row), int(col)] == 1.0
    assert maps[:, 5, 30].sum() == 0.0  # between / outside bodies: not taught
    far = level_targets(case, 4 + 7, slice(0, 120), slice(0, 60))  # 14 mm lateral: outside the core
    assert far.sum() == 0.0
    assert level_targets(_case(anchor_known=False), 4, slice(0, 120), slice(0, 60)).sum() == 0.0
    assert level_class("C5") == 0 and level_class("T7") == 0 and level_class("L6") is None


def test_loss_counts_level_pixels_only_where_taught_and_warm_start_keeps_channels(tmp_path):
    from safetensors.torch import save_file

    from spinebrain.spinelabel.heatmap_recipe import HeatmapLoss, warm_start

    loss = HeatmapLoss(heatmaps=3, level_weight=1.0)
    k = len(LEVEL_CLASSES)
    logits = torch.zeros(1, 3 + k, 4, 4)
    label = torch.cat([torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4), torch.zeros(1, k, 4, 4)], dim=1)
    untaught = float(loss(logits, label))
    label[0, 6 + 2, 1, 1] = 1.0  # one taught pixel, uniform logits: CE = log K
    assert float(loss(logits, label)) == pytest.approx(untaught + np.log(k), rel=1e-4)

    small = dict(features=(4, 4, 8, 8, 16, 4))
    old = HeatmapDetector(outputs=2, **small)
    save_file({key: value.contiguous() for key, value in old.state_dict().items()}, str(tmp_path / "model.safetensors"))
    new = HeatmapDetector(outputs=3 + k, **small)
    warm_start(new, tmp_path, heatmaps=3)
    weight, before = new.unet.final_conv.weight, old.unet.final_conv.weight
    assert torch.equal(weight[:2], before) and torch.equal(weight[2], before[1])  # S1 starts as the L5 anchor
    assert torch.equal(new.unet.conv_0.conv_0.conv.weight, old.unet.conv_0.conv_0.conv.weight)


# --------------------------------------------------------------------------------- level evidence


def _shape_model():
    levels = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    spines = []
    for k in range(6):
        spines.append([LabelledPoint(level, (0.0, 2.0 * k, -32.0 * i + k)) for i, level in enumerate(levels)])
    return fit_shape_model(spines, levels=levels)


def _candidates(truth: list[str], sharp: float):
    """Candidates 32 mm apart whose level vectors put ``sharp`` on the true class (flat elsewhere)."""
    k = len(LEVEL_CLASSES)
    out = []
    for i, level in enumerate(truth):
        levels = np.full(k, (1.0 - sharp) / (k - 1))
        levels[LEVEL_CLASSES.index(level)] = sharp
        out.append(Candidate(np.array([0.0, 0.0, -32.0 * i]), 0.9, 0.0, levels, (0.0, 0.0)))
    return out


def test_level_evidence_names_the_chain_and_flat_evidence_stays_uncertain():
    setup = LabellingSetup(_shape_model(), "L5", {"transitional_penalty": 25.0, "gap_penalty": 10.0}, "lumbar",
                           level_classes=LEVEL_CLASSES)
    truth = ["T12", "L1", "L2", "L3", "L4"]  # no L5 / S1 in view: the anchor could not name this chain
    named = solve_labelling(_candidates(truth, 0.5), setup)
    assert [p.label for p in named.points] == truth
    assert named.labelling.anchored and named.labelling.certainty > 0.9
    flat = solve_labelling(_candidates(truth, 1.0 / len(LEVEL_CLASSES)), setup)
    assert not flat.labelling.anchored and any("uncertain" in w for w in flat.warnings)


# ---------------------------------------------------------------------------------------------- PNG


def test_overview_uses_a_bone_window_for_ct_and_marks_uncertain_names(tmp_path):
    from spinebrain.outputs.pictures import CT_BONE_WINDOW, display_window, save_overview_png

    ct = np.full((20, 20), -1000.0)
    ct[5:15, 5:15] = 300.0
    assert display_window(ct) == CT_BONE_WINDOW
    mr = np.linspace(0, 500, 400).reshape(20, 20)
    low, high = display_window(mr)
    assert 0.0 < low < 10.0 and 490.0 < high < 500.0
    image = sitk.GetImageFromArray(np.zeros((30, 30, 30), np.float32))
    points = [LabelledPoint("L3", (-10.0, -10.0, 10.0), 0.4)]
    path = save_overview_png(image, tmp_path / "x.png", points=points, uncertain=True, title="not anchored")
    assert path.exists() and path.stat().st_size > 1000
