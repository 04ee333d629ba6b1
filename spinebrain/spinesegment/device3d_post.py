"""After a GPU run of :mod:`.device3d`: the model package, its threshold, and the bundled card's evaluation.

Run (repository root, on CPU, data beside the repository):
``python -m spinebrain.spinesegment.device3d_post --run /work/runs/gpu/seg3d --models SCRATCH/models``

1. The traversal threshold is chosen on generated seeds 5000-5001 (never trained on, not the test
   seeds), as for the bundled model: mean of Dice and completeness accuracy, a miss counted as 0.
2. The package ``spine-segment-ct-3d`` is written to ``--models`` (``MODELS/spine-segment-ct-3d/``) from the
   run's best weights (the tuning packages go to ``MODELS/tune/``).
3. It is evaluated by ``benchmarks/eval_spine_segment_ct3d.py`` (held-out generated CT seeds
   9000-9005 and the real CT crops A6, A3, A5): the script and cases of the bundled card.
4. The package is written again with those figures in its card, and both cards' figures are printed
   side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .training3d import MODEL_ID, export_package

REPOSITORY = Path(__file__).resolve().parents[2]
BUNDLED_CARD = REPOSITORY / "Resources" / "Models" / MODEL_ID / "model_card.json"
EVAL_SCRIPT = REPOSITORY / "benchmarks" / "eval_spine_segment_ct3d.py"
SUMMARY_KEYS = ("dice_mean", "dice_mean_complete", "surface_mm_mean", "completeness_accuracy", "false_per_scan",
                "missed_per_scan", "seconds_per_scan", "steps_per_scan")


def tuning_score(summary: dict) -> float:
    """Mean of Dice (0 when nothing matched) and completeness accuracy, missed vertebrae counted as wrong."""
    matched, total = summary["matched"], max(summary["reference_vertebrae"], 1)
    dice = (summary["dice_mean"] or 0.0) * matched / total
    accuracy = (summary["completeness_accuracy"] or 0.0) * matched / total
    return 0.5 * (dice + accuracy)


def choose_threshold(run: Path, models: Path, thresholds: list[float], seeds: tuple[int, int], log=print) -> float:
    from .evaluation3d import summarise, synthetic_scores
    from .pipeline3d import load_model_3d

    scores = {}
    for threshold in thresholds:
        folder = export_package(run, models / "tune" / f"threshold-{threshold:g}", metrics={}, threshold=threshold)
        summary = summarise(synthetic_scores(load_model_3d(str(folder), device="cpu"), *seeds, log=lambda _: None))
        scores[threshold] = tuning_score(summary)
        log(f"threshold {threshold:g}: score {scores[threshold]:.4f} " + json.dumps(summary))
    return max(scores, key=scores.get)


def card_metrics(figures: dict, threshold: float, tune_seeds: tuple[int, int]) -> dict:
    """The evaluation script's figures in the bundled card's layout."""
    real = {}
    for case in figures.get("real_ct", []):
        real[case["case"]] = {v["name"]: {"dice": v["dice"], "reference_complete": v["reference_complete"],
                                          "predicted_complete": v["predicted_complete"]} for v in case["vertebrae"]}
    return {"measured_on": "held-out generated lumbar CT, seeds " + figures["synthetic_seeds"].replace(":", "-")
            + " (end exclusive; never trained on), and the real CT crops A6, A3, A5 of ../shared/data",
            "synthetic_heldout": figures["synthetic"], "real_ct": real,
            "threshold_chosen_on": f"generated seeds {tune_seeds[0]}-{tune_seeds[1] - 1}: {threshold:g}",
            "command": f"OMP_NUM_THREADS=1 python benchmarks/eval_spine_segment_ct3d.py --model {MODEL_ID} "
                       f"--synthetic {figures['synthetic_seeds']}"}


def compare(bundled: dict, new: dict, log=print) -> None:
    log(f"{'figure':<24}{'bundled':>12}{'GPU run':>12}")
    for key in SUMMARY_KEYS:
        log(f"{key:<24}{str(bundled['synthetic_heldout'].get(key)):>12}{str(new['synthetic_heldout'].get(key)):>12}")
    for case, vertebrae in new["real_ct"].items():
        for name, record in vertebrae.items():
            old = bundled.get("real_ct", {}).get(case, {}).get(name, {})
            log(f"{case} {name}: Dice {old.get('dice')} -> {record['dice']}, complete "
                f"{old.get('predicted_complete')} -> {record['predicted_complete']} "
                f"(reference {record['reference_complete']})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="the GPU run's folder (best.safetensors, options.json)")
    parser.add_argument("--models", required=True, type=Path, help="scratch models folder for the packages")
    parser.add_argument("--data", default=str(REPOSITORY.parent / "shared" / "data"))
    parser.add_argument("--synthetic", default="9000:9006")
    parser.add_argument("--thresholds", default="0.5,0.7,0.85")
    parser.add_argument("--tune-seeds", default="5000:5002")
    parser.add_argument("--command", default="python -m spinebrain.spinesegment.device3d --device cuda (see "
                                             "options.json in the run folder)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    tune_seeds = tuple(int(x) for x in args.tune_seeds.split(":"))
    threshold = choose_threshold(args.run, args.models, [float(t) for t in args.thresholds.split(",")], tune_seeds)
    print(f"threshold {threshold:g} chosen on generated seeds {args.tune_seeds}", flush=True)
    package = export_package(args.run, args.models, metrics={}, command=args.command, threshold=threshold)
    figures_path = args.models / "eval.json"
    subprocess.run([sys.executable, str(EVAL_SCRIPT), "--model", str(package), "--synthetic", args.synthetic,
                    "--data", args.data, "--json", str(figures_path)],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    figures = json.loads(figures_path.read_text(encoding="utf-8"))
    metrics = card_metrics(figures, threshold, tune_seeds)
    summary = args.run / "summary.json"
    if summary.is_file():
        metrics["gpu_training"] = json.loads(summary.read_text(encoding="utf-8"))
    package = export_package(args.run, args.models, metrics=metrics, command=args.command, threshold=threshold)
    bundled = json.loads(BUNDLED_CARD.read_text(encoding="utf-8"))["metrics"]
    compare(bundled, metrics)
    print("package:", package, flush=True)


if __name__ == "__main__":
    main()
