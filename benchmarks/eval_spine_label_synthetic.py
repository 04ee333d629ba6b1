"""Re-measure a SpineLabel model package on held-out synthetic cases (the training's validation seeds).

Usage: python benchmarks/eval_spine_label_synthetic.py PACKAGE_DIR [--cases N] [--seed S] [--update-card]

The cases are the ones ``train spine-label --seed S`` validates on (seeds S*100000 + 50001 ...),
never used in training. ``--update-card`` writes the metrics into the package's model_card.json
(for example after a change of the candidate or graph code, which does not touch the weights).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spinebrain.models import ModelRegistry
from spinebrain.spinelabel import training
from spinebrain.spinelabel.pipeline import load_spine_label_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--update-card", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    card_path = args.package / "model_card.json"
    card = json.loads(card_path.read_text())
    registry = ModelRegistry(args.package.parent, args.package.parent / "__none__")
    model = load_spine_label_model(card["region"], card["id"], registry=registry, device="cpu")
    cases = training.generate_cases(card["region"], args.cases, args.seed * 100_000 + 50_001, what="validation",
                                    max_voxels=training.VALIDATION_MAX_VOXELS[card["region"]])
    metrics = training.validate(model, cases)
    print(json.dumps(metrics, indent=1))
    if args.update_card:
        metrics["training_seconds"] = card.get("metrics", {}).get("training_seconds")
        card["metrics"] = metrics
        temporary = card_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(card, indent=2) + "\n")
        temporary.replace(card_path)


if __name__ == "__main__":
    main()
