"""The whole-spine SpineLabel model against the region models (lumbar + cervical) and under "auto", on the same scans.

Usage: python benchmarks/eval_spine_label_whole.py PACKAGE_DIR [--first-seed 52001] [--cases 30] [--threads 1]
       [--methods whole,regions,all] [--mix whole|cervical|lumbar]

Generated scans of every view (whole spine, cervical, lumbar, thoracic, short; the mix of ``training.VIEW_MIX
["whole"]``, CT / T1 / T2 / random contrast) from ``--first-seed`` on. Seeds 52001-52030 are the development set
(the epoch and settings were chosen there); 153001-153030 are held out. ``--mix cervical`` (or lumbar) draws the
views as that region's training does instead (cervical: 80 % necks), for a closer look at one region. Every complete vertebra C1-S1 in view is
a reference, whatever the model can name: a lumbar model cannot name C5, and that counts against it here. Prints a
line per scan and a table per view (labelling: named right / reference vertebrae; all right: scans with every
reference vertebra named right; uncertain: scans whose labels are flagged uncertain; wrong unflagged: scans with a
vertebra named wrong and no flag, the labellings a user would trust wrongly; estimated: points placed
where the labelling jumped a level, not detections, and how many of them lie in the vertebra they name: they count
in the labelling, never in the sensitivity). The labelling is also given over the views with an anchor in view
(:func:`anchor_in_view`); a view without one can only be flagged uncertain, and the table says how many were.
For every scan flagged uncertain, the user's fix is measured too (the issue's target: 95 % right after one point): the
detection nearest the middle of the named chain is given its true name as a user-set point, the run's detections are
labelled again around it (:func:`~spinebrain.spinelabel.pipeline.relabel`, no network), and the other vertebrae
named right are counted.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from spinebrain.anatomy import VERTEBRA_NAMES_BY_LABEL
from spinebrain.errors import InputError
from spinebrain.models import ModelRegistry
from spinebrain.spinelabel import training
from spinebrain.spinelabel.metrics import aggregate, evaluate_points
from spinebrain.points import LabelledPoint, is_estimate
from spinebrain.spinelabel.pipeline import label_spine_best, load_spine_label_model, relabel

WHOLE_LEVELS = set(training.region_levels("whole"))


def methods(package: Path, which: str) -> dict[str, list]:
    """{name: the models a run uses}: the whole-spine package alone; the bundled lumbar and cervical models under
    "auto" ("regions"); and all three under "auto" ("all")."""
    registry = ModelRegistry(package.parent, package.parent / "__none__")
    whole = [load_spine_label_model("whole", package.name, registry=registry, device="cpu")]
    regions = [load_spine_label_model(region, device="cpu") for region in ("lumbar", "cervical")]
    found = {"whole": whole, "regions": regions, "all": regions + whole}
    return {name: models for name, models in found.items() if name in which.split(",")}


def anchor_in_view(case) -> bool:
    """Whether the view holds an anchor the models are taught (its vertebrae's centres in view): C2; the last lumbar
    vertebra and the sacrum (the L5 answer); or a rib boundary with a vertebra on each side (the last rib and L1, C7
    and the first rib). A view without one cannot be named, only flagged uncertain (the issue's own target for it);
    the table gives the labelling over the views with one as well as over every view. The generator names levels
    in order, so with S1 (L1) in view the lumbar (thoracic) vertebra of the highest number is the one above it."""
    seen = {p.label for p in case.points}
    lumbar, thoracic = ([n for n in seen if n[0] == region] for region in "LT")
    return ("C2" in seen or ("S1" in seen and bool(lumbar)) or ("L1" in seen and bool(thoracic))
            or {"C7", "T1"} <= seen)


def score(models: list, case) -> tuple[dict, bool, tuple[int, int] | None]:
    """(per-case metrics over the complete C1-S1 vertebrae in view, whether the labels are flagged uncertain, and for a
    flagged labelling (other vertebrae named right, other references) after one user-set point, else None)."""
    reference = [p for p in case.points if p.label in WHOLE_LEVELS]
    ignored = case.partial | {n for n in VERTEBRA_NAMES_BY_LABEL.values() if n not in WHOLE_LEVELS}
    try:
        result = label_spine_best(case.image, models)
        predicted, uncertain = result.points, not result.labelling.anchored
    except InputError:
        result, predicted, uncertain = None, [], True
    metrics = evaluate_points(predicted, reference, case.labels, ignored)
    fixed = _one_point_fixed(result, reference) if uncertain and result is not None else None
    if fixed is None:
        return metrics, uncertain, None
    try:
        again = evaluate_points(relabel(result, fixed_points=[fixed]).points, reference, case.labels, ignored)
    except InputError:  # a level the chosen model does not name (the cervical pair's labelling of a thoracic view)
        return metrics, uncertain, (0, metrics["tp"] + metrics["fn"] - 1)
    return metrics, uncertain, (again["correct_labels"] - 1, again["tp"] + again["fn"] - 1)


def _one_point_fixed(result, reference) -> LabelledPoint | None:
    """The detection nearest the middle of the named chain that lies within 10 mm of a reference centre, given that
    reference's name as a user-set point (what a user clicking the middle body and naming it does); None if none."""
    centres = {p.label: np.asarray(p.ras, float) for p in reference}
    detected = [p for p in result.points if not is_estimate(p)]
    order = sorted(range(len(detected)), key=lambda k: abs(k - (len(detected) - 1) / 2))
    for k in order:
        name = min(centres, key=lambda n: np.linalg.norm(centres[n] - detected[k].ras), default=None)
        if name is not None and np.linalg.norm(centres[name] - detected[k].ras) <= 10.0:
            return LabelledPoint(name, detected[k].ras, None, True)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--first-seed", type=int, default=52001)
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mix", default="whole", choices=tuple(training.VIEW_MIX), help="the views' mix")
    parser.add_argument("--methods", dest="which", default="whole,regions,all",
                        help="comma-separated: whole, regions, all (default: every one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = methods(args.package, args.which)
    cases = training.generate_cases(args.mix, args.cases, args.first_seed, what="evaluation",
                                    max_voxels=training.VALIDATION_MAX_VOXELS[args.mix])
    table: dict[tuple[str, str], list] = defaultdict(list)
    fixes: dict[str, list] = defaultdict(list)  # per method: (right, others) after one user-set point, flagged scans
    for case in cases:
        view, anchored_view = case.description["view"], anchor_in_view(case)
        line = [f"seed {case.description['seed']} {view:9s} {case.description['modality']:6s}"]
        for name, models in runs.items():
            metrics, uncertain, after_one = score(models, case)
            if metrics["tp"] + metrics["fn"] == 0:
                continue
            for key in (view, "all views"):
                table[(name, key)].append((metrics, uncertain, anchored_view))
            if after_one is not None:
                fixes[name].append(after_one)
            line.append(f"{name} {metrics['correct_labels']}/{metrics['tp'] + metrics['fn']}"
                        f"{' uncertain' if uncertain else ''}"
                        + (f" (estimated {metrics['estimated_right']}/{metrics['estimated']})"
                           if metrics["estimated"] else "")
                        + ("" if anchored_view else " no-anchor-in-view")
                        + (f" (one point: {after_one[0]}/{after_one[1]})" if after_one else ""))
        print("  ".join(line), flush=True)
    print(f"\n{'method':8s} {'view':10s} cases  sensitivity  labelling  all right  uncertain  wrong unflagged"
          "  estimated (right)  | anchor in view: cases  labelling | none in view: cases  flagged uncertain")
    for (name, view), rows in sorted(table.items(), key=lambda item: (item[0][1] == "all views", item[0])):
        pooled = aggregate([metrics for metrics, _, _ in rows])
        all_right = sum(m["correct_labels"] == m["tp"] + m["fn"] for m, _, _ in rows)
        unflagged_wrong = sum(not u and m["correct_labels"] < m["tp"] + m["fn"] for m, u, _ in rows)
        seen = aggregate([metrics for metrics, _, anchor in rows if anchor]) if any(a for *_, a in rows) else None
        unseen = [uncertain for _, uncertain, anchor in rows if not anchor]
        print(f"{name:8s} {view:10s} {len(rows):5d}  {pooled['sensitivity']:10.1%}  {_rate(pooled):>9s}  "
              f"{all_right:9d}  {sum(u for _, u, _ in rows):9d}  {unflagged_wrong:15d}"
              f"  {pooled['estimated']:9d} ({pooled['estimated_right']})"
              f"  | {sum(a for *_, a in rows):5d}  {_rate(seen) if seen else 'n/a':>9s}"
              f" | {len(unseen):5d}  {sum(unseen):5d}")
    for name, rows in fixes.items():
        right, others = (sum(values) for values in zip(*rows))
        print(f"{name}: {len(rows)} flagged scans, after one user-set point (the middle detection named by hand) "
              f"{right} of {others} other vertebrae named right ({right / max(others, 1):.1%})")


def _rate(pooled: dict) -> str:
    value = pooled["labeling_accuracy"]
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.1%}"


if __name__ == "__main__":
    main()
