"""After a training run elsewhere (a GPU): package its best weights and measure them like the bundled model.

``python -m spinebrain.spinesegment.postrun2d --run RUN --models SCRATCH_MODELS --data ../shared/data``

1. Builds the package ``SCRATCH_MODELS/spine-segment-mr-2d/`` from ``RUN/best.safetensors`` and
   ``RUN/history.json`` (:func:`.package2d.export_package`), with the bundled card's inference
   settings (threshold, erosion, ROI ...), which were chosen on held-out *training* scans.
2. Evaluates it on the 'validation' scans of splits.json with the same code as the bundled card's
   figures (:func:`.evaluation2d.evaluate`, as ``benchmarks/eval_spine_segment_mr.py``): per-body
   Dice, surface distance, missed and false instances, CPU seconds per scan.
3. Writes the figures into the new card (``metrics``), to ``--json``, and prints them beside the
   bundled card's (or, with ``--rerun-bundled``, beside the bundled model measured again on the same
   scans now: the fair comparison when only some scans are evaluated).

With ``--tune`` the inference settings are chosen first, on the held-out *training* scans of the
run (:data:`.engine2d.EARLY_STOP_CASES`), among the bundled card's and a flip x threshold x smoothing
grid (:data:`.evaluation2d.SETTING_GRID`), by mean body Dice minus 0.01 per missed body or false
instance inside the labelled span per scan; the 'validation' scans are used only for the final figures.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from .evaluation2d import SETTING_GRID, evaluate  # noqa: E402
from .package2d import MODEL_ID, export_package  # noqa: E402
from .pipeline2d import load_model_2d  # noqa: E402
from .training2d import split_cases  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[2] / "Resources" / "Models" / MODEL_ID
#: Figures compared with the bundled card: (card metrics key, evaluation total key).
COMPARED = (("mean_body_dice", "mean_body_dice"), ("median_body_dice", "median_body_dice"),
            ("mean_surface_distance_mm", "mean_surface_distance_mm"), ("bodies", "bodies"),
            ("missed_bodies", "missed"), ("false_instances", "false"),
            ("false_instances_in_labelled_span", "false_in_labelled_span"))


def card_metrics(total: dict, cases: list[dict], part: str) -> dict:
    """The evaluation's totals in the bundled card's ``metrics`` layout."""
    metrics = {card_key: total[key] for card_key, key in COMPARED}
    metrics["measured_on"] = f"splits.json '{part}' lists of A10-A12 ({total['scans']} real MR scans)"
    metrics["seconds_per_scan_wall_1_thread_shared_machine"] = total["seconds_per_scan"]
    per_set: dict[str, list[float]] = {}
    for case in cases:
        per_set.setdefault(case["case"].split("/")[0], []).extend(b["dice"] for b in case["bodies"])
    metrics["mean_body_dice_per_set"] = {name: round(sum(d) / len(d), 4) for name, d in per_set.items()}
    metrics["benchmark"] = "benchmarks/eval_spine_segment_mr.py (spinebrain.spinesegment.postrun2d)"
    return metrics


def compare(new: dict, bundled: dict) -> str:
    rows = [f"{'figure':36s} {'bundled':>10s} {'new':>10s}"]
    for card_key, _ in COMPARED:
        rows.append(f"{card_key:36s} {str(bundled.get(card_key)):>10s} {str(new.get(card_key)):>10s}")
    return "\n".join(rows)


def tune(folder: Path, data: str, inference: dict) -> dict:
    """Inference settings chosen on the held-out training scans (see the module docstring)."""
    from .engine2d import EARLY_STOP_CASES

    cases = [case for case in split_cases(data, "train") if case[0] in EARLY_STOP_CASES]
    figures = evaluate(load_model_2d(str(folder), device="cpu"), cases, [{}, *SETTING_GRID])["variants"]

    def score(total: dict) -> float:
        return total["mean_body_dice"] - 0.01 * (total["missed"] + total["false_in_labelled_span"]) / total["scans"]

    best = max(figures, key=lambda figure: score(figure["total"]))
    print(f"tuned on {len(cases)} held-out training scans: {json.dumps(best['variant'])} "
          f"score {score(best['total']):.4f} (card settings {score(figures[0]['total']):.4f})", flush=True)
    return {**inference, **best["variant"]}


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="folder with best.safetensors and history.json")
    parser.add_argument("--models", required=True, help="scratch models folder (the package goes in a sub-folder)")
    parser.add_argument("--data", required=True, help="folder with splits.json and the A10-A12 MR sets")
    parser.add_argument("--part", default="validation")
    parser.add_argument("--cases", nargs="*", help="only these cases (a quick check; the card then says so)")
    parser.add_argument("--version", default="1.2")
    parser.add_argument("--command", default="", help="training command for the card")
    parser.add_argument("--json", help="also write the evaluation to this file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tune", action="store_true", help="choose threshold / smoothing / flip on held-out train scans")
    parser.add_argument("--rerun-bundled", action="store_true", help="also measure the bundled model on these scans")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundled = json.loads((BUNDLED / "model_card.json").read_text(encoding="utf-8"))
    inference = bundled.get("inference", {})
    folder = export_package(args.run, args.models, {}, inference, args.command, version=args.version)
    print(f"package: {folder}", flush=True)
    if args.tune:
        inference = tune(folder, args.data, inference)
        folder = export_package(args.run, args.models, {}, inference, args.command, version=args.version)
    cases = split_cases(args.data, args.part)
    if args.cases:
        cases = [case for case in cases if case[0] in set(args.cases)]
    started = time.time()
    figures = evaluate(load_model_2d(str(folder), device="cpu"), cases, [{}])
    result = figures["variants"][0]
    metrics = card_metrics(result["total"], result["cases"], args.part)
    if args.cases:
        metrics["measured_on"] += f", only {', '.join(args.cases)}"
    folder = export_package(args.run, args.models, metrics, inference, args.command, version=args.version)
    print(f"evaluated {len(cases)} scans in {time.time() - started:.0f} s; package with figures: {folder}")
    reference = bundled["metrics"]
    if args.rerun_bundled:
        again = evaluate(load_model_2d(str(BUNDLED), device="cpu"), cases, [{}])["variants"][0]
        reference = card_metrics(again["total"], again["cases"], args.part)
        print("bundled model measured again on the same scans:")
    print(compare(metrics, reference), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"metrics": metrics, "inference": inference, "bundled": reference,
                                               **figures}, indent=1), encoding="utf-8")
    return metrics


if __name__ == "__main__":
    main()
