"""Naming from the sacrum: S1 as an anchor where the L5 detector gave none.

A package's sacrum classifier (card ``ribs.sacrum``, beside its rib classifier: rib_data recipe "whole_sacrum",
``rib_training --outputs 2 --as-sacrum``) gives each detected body P(it is the sacrum) (``Candidate.sacrum``), read on
the rib classifier's planes: the sacral wings and the iliac bones beside them show on the planes through S1 and on
no lumbar vertebra's. Where a chain has no anchor, its most cranial body answering
"sacrum" with at least the card's ``share``, below a body answering "not the sacrum" as surely and with no body
below it answering so (the spine goes on there: CT from the VerSe map, development seed 130, L1 answered "sacrum"
0.999 with L2-L5 detected below it), is pinned as S1 and the graph re-solves; a note asks the user to check the
names (a sixth or a fourth lumbar vertebra is not seen from the sacrum alone: the ribs may still correct it,
:mod:`.rib_evidence`).

The whole-spine package holds one since version 1.4 (session 24), taught also on images synthesised from vertebra
maps alone with and without S1 (rib_data recipe "label_maps"): session 23's, taught on full anatomy only, took the
last vertebra of CT from the VerSe map (no sacrum in it) for the sacrum (docs/spinelabel_results.md).

Hand-written: this is the graph's decision step, specific to this pipeline; no library offers it.
"""

from __future__ import annotations

from ..anatomy import vertebra_index
from .graph import LabellingResult
from .rib_evidence import DEFAULT_RIBS, SACRUM, _anchored_at_ribs, _keeps_spine


def name_by_sacrum(usable: list, setup, fixed, labelling: LabellingResult) -> LabellingResult:
    """``labelling`` pinned with S1 on the body the classifier takes for the sacrum, where it has no anchor (see the
    module text); unchanged otherwise."""
    if fixed or labelling.anchored or not setup.ribs or "S1" not in setup.shape_model.levels:
        return labelling
    share = float({**DEFAULT_RIBS, **setup.ribs}["share"])
    named = sorted((a for a in labelling.assignments if a.candidate is not None), key=lambda a: vertebra_index(a.level))
    answers = [usable[a.candidate].sacrum for a in named]
    sacral = [k for k, answer in enumerate(answers) if answer is not None and answer >= share]
    if not sacral or sacral[0] == 0:
        return labelling  # no sacrum answer, or nothing above it to name
    above = answers[sacral[0] - 1]
    if above is None or above > 1.0 - share:
        return labelling  # the body above might be sacral too (or was not asked): not decisive
    if any(answer is not None and answer <= 1.0 - share for answer in answers[sacral[0] + 1:]):
        return labelling  # a body below answers "not the sacrum" as surely: the spine goes on below, no S1 here
    anchored = _anchored_at_ribs(usable, setup, [("S1", named[sacral[0]].candidate)], float(answers[sacral[0]]),
                                 SACRUM)
    return anchored if _keeps_spine(anchored, labelling) else labelling


__all__ = ["name_by_sacrum"]
