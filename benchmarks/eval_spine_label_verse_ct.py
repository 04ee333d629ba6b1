"""SpineLabel on CT synthesised from the real VerSe label map of A8 (T9-L5, no sacrum, no ribs).

Usage: python benchmarks/eval_spine_label_verse_ct.py [--data ../shared/data] [--model ID] [--seeds 1 2 ...]

The issue's target for these scans: every vertebra detected, and the names right where an anchor is
claimed, else every name flagged uncertain. The label map holds no sacrum and no ribs, so the
lumbar model's L5 anchor (taught with the sacrum in view) has little to go on: an anchor it claims
is judged by the names it gives. Localisation is measured to the whole-vertebra mask centroid (the
map has no body sub-region), so it reads ~10 mm more than a body-centre error. Each seed deforms the map and draws a new CT
contrast (``spinebrain.synth.synthesize_from_labels``, as the 3D SpineSegment training does).
Vertebrae touching the field's border are partial: missing them is not counted. Nothing here is
tuned to these scans.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from spinebrain.spinelabel.metrics import evaluate_points
from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model, load_spine_label_models
from spinebrain.spinesegment.data3d import label_map_case

LABEL_MAP = Path("A8_verse_sub-verse004_labels_only") / "sub-verse004_seg-vert_msk.nii.gz"


def score_seed(model, label_map: Path, seed: int) -> dict:
    case = label_map_case(label_map, seed)
    names = case.label_names()
    partial = {r.name for r in case.vertebrae if not r.complete}
    result = label_spine(case.image, model)
    metrics = evaluate_points(result.points, case.points, case.labels, partial, ref_names=names)
    anchored = bool(result.labelling.anchored)
    flagged = any("labels are uncertain" in warning for warning in result.warnings)
    return {"seed": seed, "modality": case.metadata.get("modality", "ct"), "reference": sorted(names.values()),
            "points": [p.label for p in result.points], "tp": metrics["tp"], "fp": metrics["fp"], "fn": metrics["fn"],
            "mean_error_mm": float(np.mean(metrics["distances_mm"])) if metrics["distances_mm"] else None,
            "anchored": anchored, "names_right": metrics["correct_labels"],
            "verdict": ("names right" if anchored and metrics["correct_labels"] == metrics["named"]
                        else "false or wrong anchor" if anchored
                        else "flagged uncertain" if flagged else "unanchored but not flagged"),
            "flagged_uncertain": flagged, "seconds": round(result.seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default=None, help="a lumbar or whole-spine model id (default: the lumbar default)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = (load_spine_label_models("auto", args.model, device="cpu")[0] if args.model  # lumbar or whole-spine
             else load_spine_label_model("lumbar", device="cpu"))
    rows = [score_seed(model, args.data / LABEL_MAP, seed) for seed in args.seeds]
    for row in rows:
        print(f"seed {row['seed']}: tp {row['tp']} fn {row['fn']} fp {row['fp']} "
              f"error {row['mean_error_mm'] or float('nan'):.1f} mm  {row['verdict']}  | {' '.join(row['points'])}")
    tp, fn = sum(r["tp"] for r in rows), sum(r["fn"] for r in rows)
    summary = {"model": model.card.id, "scans": len(rows), "sensitivity": tp / max(tp + fn, 1),
               "false_positives": sum(r["fp"] for r in rows),
               "anchored": sum(r["anchored"] for r in rows),
               "anchored_and_all_named_right": sum(r["verdict"] == "names right" for r in rows),
               "flagged_uncertain": sum(r["flagged_uncertain"] for r in rows),
               "scans_all_detected": sum(r["fn"] == 0 for r in rows)}
    print(json.dumps({"summary": summary, "cases": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
