"""Region "auto" (spinelabel.choice) and relabel with the run's own options (spinelabel.labelling)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from spinebrain.errors import InputError
from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.choice import assess, choose_labelling, claims_the_scan, models_knowing
from spinebrain.spinelabel.graph import Assignment, Candidate, LabellingResult
from spinebrain.spinelabel.labelling import SpineLabelResult, naming_setup, relabel_points
from spinebrain.spinelabel.operations import candidates_from_points
from spinebrain.spinelabel.pipeline import (label_spine, label_spine_best, load_spine_label_model,
                                            load_spine_label_models, relabel)
from spinebrain.synth.spine import generate_spine


@pytest.fixture(scope="module")
def models():
    return {region: load_spine_label_model(region, device="cpu") for region in ("cervical", "lumbar", "whole")}


def made_up_result(model, levels, step_mm, anchored=True, certainty=0.9, missing=()):
    """A labelling of ``levels`` with points ``step_mm`` apart along S (no network involved)."""
    assignments = [Assignment(level, k, np.array([0.0, 0.0, -step_mm * k]), certainty) for k, level in enumerate(levels)]
    labelling = LabellingResult(assignments, 10.0, anchored, certainty, list(missing))
    return SpineLabelResult(labelling.to_points(), [], labelling, [], model.region, 0.0, model.setup)


# ------------------------------------------------------------------------------ the rule, on made-up results


def test_lumbar_sized_steps_named_cervical_do_not_fit(models):
    cervical = made_up_result(models["cervical"], ["C2", "C4", "C6", "T1", "T3"], 32.0, certainty=0.99,
                              missing=["C3", "C5", "C7", "T2"])
    lumbar = made_up_result(models["lumbar"], ["L1", "L2", "L3", "L4", "L5", "S1"], 34.0, certainty=0.6)
    assert not assess(cervical).fits and assess(lumbar).fits
    chosen = choose_labelling([cervical, lumbar])
    assert chosen is lumbar and "does not fit" in chosen.choice and not chosen.warnings


def test_cervical_sized_steps_named_lumbar_do_not_fit(models):
    lumbar = made_up_result(models["lumbar"], ["L1", "L2", "L3", "L4", "L5"], 15.0)
    cervical = made_up_result(models["cervical"], ["C2", "C3", "C4", "C5", "C6"], 15.0, anchored=False, certainty=0.3)
    assert assess(lumbar).step_ratio < 0.7
    assert choose_labelling([lumbar, cervical]) is cervical


def test_no_fitting_region_is_kept_with_a_warning(models):
    cervical = made_up_result(models["cervical"], ["C2", "C3", "C4"], 40.0)
    lumbar = made_up_result(models["lumbar"], ["L3", "L4", "L5"], 8.0)
    chosen = choose_labelling([cervical, lumbar])
    assert any("No region model's labelling fits" in w for w in chosen.warnings)


def test_a_labelling_that_jumps_levels_does_not_fit(models):
    jumping = made_up_result(models["cervical"], ["C1", "C2", "C3", "C5", "C7", "T1", "T2"], 18.0, certainty=0.9,
                             missing=["C4", "C6"])
    lumbar = made_up_result(models["lumbar"], ["L4", "L5", "S1"], 36.0, certainty=0.5)
    assert assess(jumping).step_ratio < 1.6 and not assess(jumping).fits
    one_missed = made_up_result(models["cervical"], ["C2", "C4", "C5"], 20.0, anchored=False, certainty=0.5,
                                missing=["C3"])
    assert assess(one_missed).fits  # a short crop with one missed detection
    assert choose_labelling([jumping, lumbar]) is lumbar


def test_a_whole_spine_neck_with_missed_bodies_is_not_taken_for_another_region(models):
    """Jumped levels are missed detections for the whole-spine model, not a sign of the wrong model (generated seed
    159009: a neck with two missed bodies lost to an unanchored lumbar labelling of certainty 0)."""
    neck = made_up_result(models["whole"], ["C1", "C2", "C3", "C5", "C7", "T1", "T2"], 18.0, certainty=0.67,
                          missing=["C4", "C6"])
    lumbar = made_up_result(models["lumbar"], ["L1", "L2", "L3", "L4", "L5", "S1"], 28.0, anchored=False,
                            certainty=0.0)
    assert assess(neck).fits and choose_labelling([lumbar, neck]) is neck


def test_a_thousandth_of_certainty_does_not_outrank_more_levels(models):
    """Generated seed 161007: a C7-T5 view named T8-T12 by the lumbar model, 0.50 certain (unanchored, at the cap),
    against the whole model's right names, 0.499, one level more."""
    lumbar = made_up_result(models["lumbar"], ["T8", "T9", "T10", "T11", "T12"], 19.0, anchored=False, certainty=0.5)
    whole = made_up_result(models["whole"], ["C7", "T1", "T2", "T3", "T4", "T5"], 18.0, anchored=False,
                           certainty=0.499)
    assert assess(lumbar).fits and assess(whole).fits and choose_labelling([lumbar, whole]) is whole
    unsure = made_up_result(models["whole"], ["C7", "T1", "T2", "T3", "T4", "T5"], 18.0, anchored=False, certainty=0.0)
    assert choose_labelling([lumbar, unsure]) is lumbar  # a real difference in certainty still counts


def test_points_read_back_get_their_detection_probabilities_again():
    """A point's confidence is p x the labelling's certainty: the shared factor is divided out for a re-solve (the
    graph's costs scale with 1 / (p_i p_j); an unanchored neck read back re-solved one level off)."""
    points = [LabelledPoint("C3", (0.0, 0.0, 0.0), 0.36), LabelledPoint("C4", (0.0, 0.0, -15.0), 0.3),
              LabelledPoint("C5", (0.0, 0.0, -30.0), None)]
    assert [c.probability for c in candidates_from_points(points)] == pytest.approx([1.0, 0.3 / 0.36, 1.0])


def test_fixed_level_only_one_model_names_selects_that_model(models):
    both = [models["cervical"], models["lumbar"]]
    l3 = [LabelledPoint("L3", (0.0, 0.0, 0.0), None, True)]
    assert [m.region for m in models_knowing(both, l3)] == ["lumbar"]
    assert len(models_knowing(both, [])) == 2
    c3_and_l3 = l3 + [LabelledPoint("C3", (0.0, 0.0, 90.0), None, True)]
    with pytest.raises(InputError, match=r"No installed SpineLabel model names every fixed level \(C3, L3\).*"
                                         r"cervical model names C1-T3.*lumbar model names T8-S1"):
        models_knowing(both, c3_and_l3)
    if "whole" in models:  # the whole-spine model names both
        assert [m.region for m in models_knowing(list(models.values()), c3_and_l3)] == ["whole"]


def test_an_anchored_fitting_lumbar_chain_with_nothing_detected_above_it_claims_the_scan(models):
    lumbar = made_up_result(models["lumbar"], ["L1", "L2", "L3", "L4", "L5", "S1"], 34.0)
    detections = [Candidate(a.position, 0.9) for a in lumbar.labelling.assignments]
    below = Candidate(np.array([0.0, 0.0, -34.0 * 6]), 0.6)  # the sacrum below S1: the anchor's end
    assert claims_the_scan(replace(lumbar, candidates=detections + [below]))
    above = Candidate(np.array([0.0, 0.0, 30.0]), 0.7)  # T12 above L1: more spine for another region
    assert not claims_the_scan(replace(lumbar, candidates=detections + [above]))
    unanchored = made_up_result(models["lumbar"], ["L1", "L2", "L3", "L4", "L5", "S1"], 34.0, anchored=False)
    assert not claims_the_scan(replace(unanchored, candidates=detections))
    too_small = made_up_result(models["lumbar"], ["L1", "L2", "L3", "L4", "L5"], 15.0)  # cervical-sized steps
    assert not claims_the_scan(replace(too_small, candidates=[Candidate(a.position, 0.9)
                                                             for a in too_small.labelling.assignments]))


def test_a_whole_spine_chain_that_reaches_c2_claims_the_scan_whatever_lies_above_it(models):
    """Above C1 lies the skull base, where a detector may answer; that is no spine for another region model."""
    if "whole" not in models:
        pytest.skip("no whole-spine model installed")
    levels = models["whole"].shape_model.standard_levels[1:]  # C2 ... S1
    whole = made_up_result(models["whole"], levels, 22.0)
    detections = [Candidate(a.position, 0.9) for a in whole.labelling.assignments]
    skull_base = Candidate(np.array([0.0, 0.0, 50.0]), 0.6)  # two steps above C2
    assert claims_the_scan(replace(whole, candidates=detections + [skull_base]))
    lower = made_up_result(models["whole"], levels[7:], 22.0)  # T2 ... S1: a detection above T2 is more spine
    lower_detections = [Candidate(a.position, 0.9) for a in lower.labelling.assignments]
    assert not claims_the_scan(replace(lower, candidates=lower_detections + [skull_base]))


# ------------------------------------------------------------------------------ generated scans, both models


@pytest.mark.parametrize("seed", [1001, 1003, 1008])
def test_generated_lumbar_ct_is_never_called_cervical(models, seed):
    case = generate_spine(seed, modality="ct", view="lumbar")
    result = label_spine_best(case.image, list(models.values()))
    assert result.region in ("lumbar", "whole"), result.choice  # the whole-spine model serves every region
    assert not any(p.label.startswith("C") for p in result.points)
    if result.labelling.anchored:  # nothing above an anchored chain here: the cervical pair is not run
        assert "cervical (spine-label-cervical) not run" in result.choice, result.choice


def test_generated_cervical_mr_is_named_by_a_model_that_knows_the_neck(models):
    case = generate_spine(2001, modality="t2", view="cervical")
    result = label_spine_best(case.image, list(models.values()))
    assert result.region in ("cervical", "whole"), result.choice  # the whole-spine model runs before the pair
    assert "C2" in {p.label for p in result.points}
    if "whole" in models:  # it names the neck from C2, anchored, so the cervical pair is not run
        assert result.region == "whole" and result.labelling.anchored, result.choice
        assert "cervical (spine-label-cervical) not run" in result.choice, result.choice


def test_relabel_reuses_the_run_options_and_changes_nothing(models):
    case = generate_spine(1002, modality="ct", view="lumbar")
    result = label_spine(case.image, models["lumbar"])
    assert result.setup.options["transitional_penalty"] == 25.0  # the card's, not the graph's default 5
    assert result.setup.model_id == models["lumbar"].card.id  # the lumbar default
    assert [(p.label, p.ras) for p in relabel(result).points] == [(p.label, p.ras) for p in result.points]
    again = relabel_points(result.points, result.candidates, result.setup).points
    assert [(p.label, p.ras) for p in again] == [(p.label, p.ras) for p in result.points]


def test_relabel_points_follows_a_point_the_user_renamed(models):
    result = label_spine(generate_spine(1002, modality="ct", view="lumbar").image, models["lumbar"])
    named = {p.label: p for p in result.points}
    points = [replace(p, label="L2", user_set=True, confidence=None) if p.label == "L3" else p for p in result.points]
    renamed = {p.ras: p for p in relabel_points(points, result.candidates, result.setup).points}
    assert renamed[named["L3"].ras].label == "L2" and renamed[named["L3"].ras].user_set
    assert renamed[named["L4"].ras].label == "L3"  # the rest follow the user's point, past the S1 detector


def test_a_user_point_beyond_the_kept_region_model_is_solved_with_the_whole_spine_model(models):
    """A thoracic view (C7-L1) the lumbar model names T8-L3, unanchored: the user names T4, which it does not know."""
    if "whole" not in models:
        pytest.skip("no whole-spine model installed")
    case = generate_spine(1004, modality="ct", view="thoracic")
    truth = {p.label: np.asarray(p.ras) for p in case.points}
    result = label_spine(case.image, models["lumbar"])
    t4 = LabelledPoint("T4", tuple(truth["T4"]), None, True)
    with pytest.raises(InputError, match="not a level this model labels"):
        relabel(result, fixed_points=[t4])  # the lumbar model alone cannot take it
    result.setup = replace(result.setup, wider=models["whole"].setup)  # as "auto" leaves it (below)
    fixed = relabel(result, fixed_points=[t4])
    assert fixed.region == "whole" and fixed.setup.model_id == models["whole"].card.id
    assert fixed.warnings[0].startswith("Your point T4 is beyond the lumbar model's levels")
    assert [p for p in fixed.points if p.user_set] == [t4]
    nearest = [min(truth, key=lambda name: np.linalg.norm(truth[name] - p.ras)) for p in fixed.points]
    right = sum(p.label == name for p, name in zip(fixed.points, nearest))
    assert right >= len(truth) - 2, [(p.label, name) for p, name in zip(fixed.points, nearest)]
    assert relabel(fixed, fixed_points=[t4]).points == fixed.points  # later relabels solve as this one did


def test_auto_keeping_a_region_model_leaves_the_whole_spine_model_for_user_points(models):
    if "whole" not in models:
        pytest.skip("no whole-spine model installed")
    own, whole = models["lumbar"].setup, models["whole"].setup
    kept = replace(own, wider=whole)
    l2, t4 = (LabelledPoint(level, (0.0, 0.0, 0.0), None, True) for level in ("L2", "T4"))
    assert naming_setup(kept, [l2]) is kept and naming_setup(kept, []) is kept  # the run's own where it can
    assert naming_setup(kept, [t4]) is whole and naming_setup(own, [t4]) is own  # without a wider one: refused
    case = generate_spine(1001, modality="ct", view="lumbar")
    result = label_spine_best(case.image, list(models.values()))
    if result.region != "whole":
        assert result.setup.wider.model_id == models["whole"].card.id


# ------------------------------------------------------------------------------ real lumbar MR (../shared/data)


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["A12_vb1_thoracolumbar_pathology/vb1_07", "A10_vb3_lumbar_mr/vb3_11"])
def test_real_lumbar_mr_is_not_called_cervical(models, real_case, case):
    """vb1_07: the cervical model names 7 levels there (jumping 2) while the lumbar one names L4-S1."""
    from spinebrain.io import load_volume

    result = label_spine_best(load_volume(real_case(f"{case}/image.nii.gz")), list(models.values()))
    assert result.region == "lumbar", result.choice
