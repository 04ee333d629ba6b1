"""Region "auto": which region model's labelling to keep, decided by evidence (CLI and Slicer alike).

Each region model labels the scan; its solved labelling is then judged on what it shows:

* **Vertebra size.** The step between consecutive labelled vertebrae must fit the steps the model's
  shape model expects for those levels (the bundled models: ~15 mm cervical, ~34 mm lumbar). A
  model that names lumbar-sized steps C2, C4, C6 or cervical-sized ones L2, L3 does not fit,
  whatever its certainty.
* **Gaps.** A region model's labelling that jumps over two or more levels, more than 15 % of its span, names a
  spine the detections do not show (the whole-spine model names every region: its jumps are missed bodies).
* **Anchor, certainty, levels.** Among the labellings that fit: anchored before unanchored, then a
  whole-spine labelling that claims the scan (below), then the most certain (to two decimals), then the most levels
  named. Why the whole-spine claim comes before certainty: its certainty is the weaker of its two pinned
  anchors, so a lumbar labelling of the lower half of a whole-spine view was kept over the whole
  spine (held-out generated whole views, session 15). The region models' own order is unchanged.

A labelling that claims the scan (:func:`claims_the_scan`: anchored, fits, nothing detected beyond it)
spares running the other region models.

Measured (docs/spinelabel_results.md, benchmarks/eval_region_auto.py, session 14): right region on 45
of 45 real scans (41 lumbar MR of A10-A12, crops A5-A7, A9) and on 34 of 40 generated ones (every
lumbar one; 10 of 16 cervical); no lumbar scan, real or generated, is called cervical. Without the
claim, A11 vb2_07 (thoracolumbar MR) was called cervical: the cervical pair named C1-T2 there at 17 mm
steps (a cervical size, so it fits), anchored and 0.83 certain against the lumbar labelling's 0.82.
Session 15, with the whole-spine model installed: the same on the real scans, 16 of 16 generated
necks (14 named by the whole model). Session 19: the cervical pair runs only where the whole-spine model refused the
scan (:func:`~spinebrain.spinelabel.pipeline.label_spine_best`; it had named a short lumbar CT C1-C4): 45 of 45 real
scans, 40 of 40 generated ones (every neck by the whole model).

Why written here: this is the project's own decision rule over its own graph results.
:func:`choose_labelling` is the public entry; the Slicer Logic reaches it through
:func:`spinebrain.spinelabel.pipeline.label_spine_best`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..geometry import extent_ras
from .graph import TRANSITIONAL
from .labelling import SpineLabelResult

#: Observed / expected median step outside this range: the vertebrae are the wrong size for the model.
#: Wider upwards: real cervical steps (~20 mm on A7) exceed the synthetic shape model's (~15 mm), while
#: lumbar vertebrae seen by the cervical model give 1.7-2.2 (generated lumbar CT).
STEP_RATIO_RANGE = (0.7, 1.6)
#: Largest share of jumped-over levels in the named span (one jumped level is always allowed, so a
#: short crop with one missed detection still fits); a model skipping every other level (lumbar-sized
#: steps named C2, C4, C6) does not.
MAX_GAP_SHARE = 0.15


@dataclass
class RegionEvidence:
    """What a region model's labelling shows, and whether it fits the scan."""

    region: str
    model_id: str
    anchored: bool
    levels: int  # standard levels named
    certainty: float
    step_mm: float  # median step between consecutive points (nan with fewer than two)
    expected_step_mm: float  # the median step the shape model expects over the named span
    gap_share: float  # jumped-over levels / (named + jumped-over)
    jumped: int = 0  # levels jumped over
    claims: bool = False  # anchored, fits, and nothing detected beyond its chain (:func:`claims_the_scan`)

    @property
    def step_ratio(self) -> float:
        return self.step_mm / self.expected_step_mm if self.expected_step_mm > 0 else float("nan")

    @property
    def fits(self) -> bool:
        low, high = STEP_RATIO_RANGE
        size_fits = np.isnan(self.step_ratio) or low <= self.step_ratio <= high
        # the gap rule catches a region model naming another region's vertebrae; the whole-spine model names every
        # region, so its jumps are missed detections, not a sign of the wrong model (a neck with two missed bodies
        # lost to a lumbar labelling of certainty 0: generated seed 159009, session 19)
        gaps_fit = self.region == "whole" or self.jumped <= 1 or self.gap_share <= MAX_GAP_SHARE
        return bool(size_fits and gaps_fit)

    def rank(self) -> tuple:
        # certainty to two decimals: 0.50 against 0.499 (both unanchored, at the cap) is no evidence either way, and
        # the labelling naming more levels is kept (seed 161007: C7-T5 named T8-T12 by the lumbar model, 0.50 certain)
        return (self.fits, self.anchored, self.region == "whole" and self.claims, round(self.certainty, 2),
                self.levels)

    def describe(self) -> str:
        state = "anchored" if self.anchored else "not anchored"
        size = (f"steps {self.step_mm:.0f} mm vs {self.expected_step_mm:.0f} mm expected"
                if not np.isnan(self.step_mm) else "too few points to measure steps")
        verdict = "fits" if self.fits else "does not fit"
        return (f"{self.region} ({self.model_id}): {verdict} -- {size}, {self.gap_share:.0%} jumped levels, "
                f"{self.levels} levels, {state}, certainty {self.certainty:.2f}")


def assess(result: SpineLabelResult) -> RegionEvidence:
    """The evidence of one region model's labelling (the result must carry its run's setup)."""
    setup = result.setup
    if setup is None:
        raise InputError("A SpineLabel result without its run's setup cannot be compared with other regions.")
    labelling = result.labelling
    named = [a.level for a in labelling.assignments]
    positions = ([a.position for a in labelling.assignments] if labelling.assignments
                 else sorted((p.ras for p in result.points), key=lambda ras: -ras[2]))  # detection only: head to feet
    steps = np.linalg.norm(np.diff(np.asarray(positions, float), axis=0), axis=1) if len(positions) > 1 else []
    standard = [level for level in named if level not in TRANSITIONAL]
    missing = len(labelling.missing)
    evidence = RegionEvidence(
        region=result.region, model_id=setup.model_id, anchored=bool(labelling.anchored), levels=len(standard),
        certainty=float(labelling.certainty), step_mm=float(np.median(steps)) if len(steps) else float("nan"),
        expected_step_mm=_expected_step(setup.shape_model, named),
        gap_share=missing / (len(standard) + missing) if standard else 0.0, jumped=missing,
    )
    evidence.claims = evidence.fits and evidence.anchored and _nothing_beyond(result)
    return evidence


def _expected_step(shape_model, named: list[str]) -> float:
    """Median length of the shape model's one-level steps over the named span (all steps without names)."""
    levels = shape_model.levels
    if len(named) >= 2:
        first, last = levels.index(named[0]), levels.index(named[-1])
        span = set(levels[first:last + 1])
        pairs = [pair for key, pair in shape_model.pairs.items() if set(key) <= span]
    else:
        pairs = []
    pairs = pairs or list(shape_model.pairs.values())
    return float(np.median([np.linalg.norm(pair.mean) for pair in pairs]))


def choose_labelling(results: Sequence[SpineLabelResult], image=None, region_auto: bool = True,
                     not_run: Sequence[str] = ()) -> SpineLabelResult:
    """The labelling the evidence favours among region models' results on one scan.

    The chosen result's :attr:`~SpineLabelResult.choice` says why (every candidate's evidence, and
    ``not_run``: why a model was not run). With ``region_auto`` (several region models were tried, even
    if only one could run) a chosen labelling that does not fit gets a warning saying so. ``image``,
    when given, adds the scan's length along the spine to the explanation.
    """
    if not results:
        raise InputError("No SpineLabel result to choose from; run at least one region model.")
    evidence = [assess(result) for result in results]
    best = max(range(len(results)), key=lambda k: evidence[k].rank())
    chosen = results[best]
    length = f"scan {float(extent_ras(image)[2]):.0f} mm long; " if image is not None else ""
    chosen.choice = f"kept {evidence[best].region}: {length}" + "; ".join([e.describe() for e in evidence] + list(not_run))
    if region_auto and not evidence[best].fits:
        chosen.warnings.append(f"No region model's labelling fits this scan's vertebra size and levels "
                               f"({evidence[best].describe()}); check the labels or choose the region.")
    return chosen


def claims_the_scan(result: SpineLabelResult) -> bool:
    """Whether a region model's labelling leaves no spine for another region model, so "auto" need not run it.

    Why: on a lumbar scan the cervical pair took about 1.5 s of a 2.4 s warm run, only to be refused. The labelling
    must be anchored and fit (:func:`assess`), and no detection may lie more than half a step beyond the end of its
    named chain away from its anchor (above a chain anchored at L5): the heatmap default is taught every body from
    C1 to S1, so a scan showing more spine above the chain shows detections there. A chain that names C1 or C2
    (:data:`SPINE_TOP`) reaches the top of the spine: nothing beyond it is spine.
    """
    return assess(result).claims


#: The top of the spine: a chain that names one of these ends there, and what lies beyond it (the skull base, a
#: second detection on C1's arch) is not more spine for another model (development seed 52016: a whole-spine
#: labelling with a detection above C1 lost to the lumbar labelling of its lower half).
SPINE_TOP = ("C1", "C2")


def _nothing_beyond(result: SpineLabelResult) -> bool:
    """No detection more than half a step beyond the end of the named chain away from the anchor."""
    labelling, setup = result.labelling, result.setup
    named = [np.asarray(a.position, float) for a in labelling.assignments if a.candidate is not None]
    if not named:
        return False
    if setup.anchor_level not in SPINE_TOP and any(a.level in SPINE_TOP for a in labelling.assignments
                                                   if a.candidate is not None):
        return True
    inwards = -setup.shape_model.outwards(setup.anchor_level)
    end = max(float(np.dot(position, inwards)) for position in named)
    reach = end + 0.5 * setup.shape_model.median_step()
    return all(float(np.dot(candidate.position, inwards)) <= reach for candidate in result.candidates)


def models_knowing(models: Sequence, fixed_points) -> list:
    """The models whose shape model has every level of ``fixed_points`` (InputError naming them all if none)."""
    wanted = {point.label for point in fixed_points}
    knowing = [model for model in models if wanted <= set(model.shape_model.levels)]
    if knowing:
        return knowing
    known = "; ".join(f"the {m.region} model names {m.shape_model.levels[0]}-{m.shape_model.levels[-1]}"
                      for m in models)
    raise InputError(f"No installed SpineLabel model names every fixed level ({', '.join(sorted(wanted))}): "
                     f"{known}. Fix points at levels a model names, or choose another model.")
