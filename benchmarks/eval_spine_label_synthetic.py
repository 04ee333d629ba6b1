"""Re-measure a SpineLabel model package on held-out synthetic cases (the training's validation seeds).

Usage: python benchmarks/eval_spine_label_synthetic.py PACKAGE_DIR [--cases N] [--seed S] [--update-card] [--by-view]
       [--turn DEGREES] [--first-seed N]

The cases are the ones ``train spine-label --seed S`` validates on (seeds S*100000 + 50001 ...),
never used in training. ``--update-card`` writes the metrics into the package's model_card.json
(for example after a change of the candidate or graph code, which does not touch the weights).
``--by-view`` also prints the figures apart for the scans with the model's anchor fully in view and for the
others, which cannot be named without a user-set point (they are flagged uncertain, yet count as wrong above).
``--turn`` turns every case (image, labels, points) by that angle about A-P through its volume centre, on its
own grid: a spine tilted in the coronal plane.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from spinebrain.models import ModelRegistry
from spinebrain.spinelabel import training
from spinebrain.spinelabel.pipeline import load_spine_label_model
from spinebrain.turn import turn_scan


def anchor_in_view(case, anchor_level: str) -> bool:
    """Whether the case shows its anchor vertebra whole."""
    return any(p.label == anchor_level for p in case.points) and anchor_level not in case.partial


def turned(case, degrees: float):
    """The case turned about A-P through its volume centre, on its own grid (as the variants benchmark does)."""
    image, labels, points = turn_scan(case.image, case.labels, case.points, degrees)
    return replace(case, image=image, labels=labels, points=points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first-seed", type=int, help="the first generator seed (default: SEED * 100000 + 50001)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--update-card", action="store_true")
    parser.add_argument("--turn", type=float, default=0.0, help="turn each case this many degrees about A-P")
    parser.add_argument("--by-view", action="store_true", help="also the figures with and without the anchor in view")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    card_path = args.package / "model_card.json"
    card = json.loads(card_path.read_text())
    registry = ModelRegistry(args.package.parent, args.package.parent / "__none__")
    model = load_spine_label_model(card["region"], card["id"], registry=registry, device="cpu")
    first_seed = args.first_seed if args.first_seed is not None else args.seed * 100_000 + 50_001
    cases = training.generate_cases(card["region"], args.cases, first_seed, what="validation",
                                    max_voxels=training.VALIDATION_MAX_VOXELS[card["region"]])
    if args.turn:
        cases = [turned(case, args.turn) for case in cases]
    metrics = training.validate(model, cases)
    print(json.dumps(metrics, indent=1))
    if args.by_view:
        for in_view in (True, False):
            chosen = [c for c in cases if anchor_in_view(c, model.anchor_level) == in_view]
            figures = training.validate(model, chosen) if chosen else {}
            shown = {k: figures.get(k) for k in ("cases", "sensitivity", "labeling_accuracy", "anchored_cases")}
            print(f"anchor {model.anchor_level} {'in view' if in_view else 'not in view'}:", json.dumps(shown))
    if args.update_card:
        metrics["training_seconds"] = card.get("metrics", {}).get("training_seconds")
        card["metrics"] = metrics
        temporary = card_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(card, indent=2) + "\n")
        temporary.replace(card_path)


if __name__ == "__main__":
    main()
