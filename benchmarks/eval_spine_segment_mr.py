"""2D MR vertebral-body mode on the real MR scans kept back in splits.json ('validation' lists).

Run (from the repository root, data beside it):
``OMP_NUM_THREADS=1 python benchmarks/eval_spine_segment_mr.py [--model FOLDER] [--part validation]``
Prints per-case and total per-vertebra Dice, mean surface distance (MONAI metrics, reference bodies
matched to instances by overlap), missed and false instances and the warm CPU time per scan;
``--json`` writes the same figures to a file. The figures in docs/spinesegment_results.md come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from spinebrain.spinesegment.metrics2d import evaluate_case  # noqa: E402
from spinebrain.spinesegment.pipeline2d import bodies_from_probability, body_probability, load_model_2d  # noqa: E402
from spinebrain.spinesegment.training2d import split_cases  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def evaluate(model, cases, variants: list[dict], log=print) -> dict:
    """Figures per inference variant (dicts of settings overriding the card's); the network runs once
    per case and flip setting, the instance step once per variant."""
    per_variant = {index: [] for index in range(len(variants))}
    for name, folder in cases:
        image = sitk.ReadImage(str(folder / "image.nii.gz"))
        reference = sitk.ReadImage(str(folder / "vertebrae.nii.gz"))
        si_index_axis = int(np.argmax(np.abs(np.array(reference.GetDirection()).reshape(3, 3)[2, :])))
        probabilities = {}
        for index, variant in enumerate(variants):
            settings = {**model.settings, **variant}
            started = time.perf_counter()
            if settings["flip"] not in probabilities:
                probabilities[settings["flip"]] = (body_probability(image, model, flip=settings["flip"])[0],
                                                   time.perf_counter() - started)
            probability, network_seconds = probabilities[settings["flip"]]
            started = time.perf_counter()
            segmentation = bodies_from_probability(image, probability, settings)
            seconds = network_seconds + time.perf_counter() - started
            # superior-inferior numpy axis of the reference: the index axis nearest S, as [k, j, i]
            scores = evaluate_case(reference, segmentation.label_image, segmentation.names, si_axis=2 - si_index_axis)
            scores.update(case=name, seconds=round(seconds, 1))
            per_variant[index].append(scores)
            if index == 0:
                _log_case(scores, log)
    figures = []
    for index, variant in enumerate(variants):
        log(f"variant {json.dumps(variant)}")
        figures.append({"variant": variant, **summarise(per_variant[index], log)})
    return {"variants": figures}


def _log_case(scores: dict, log) -> None:
    dice = [b["dice"] for b in scores["bodies"]]
    asd = [b["surface_mm"] for b in scores["bodies"] if np.isfinite(b["surface_mm"])]
    log(f"{scores['case']:45s} bodies {len(dice):2d}  Dice {np.mean(dice):.3f} (min {np.min(dice):.3f})  "
        f"ASD {np.mean(asd) if asd else float('nan'):.2f} mm  missed {scores['missed']}  false {scores['false']} "
        f"(in labelled span {scores['false_in_span']})  {scores['seconds']:.1f} s")


def summarise(results: list[dict], log=print) -> dict:
    bodies = [b for r in results for b in r["bodies"]]
    dice = np.array([b["dice"] for b in bodies])
    asd = np.array([b["surface_mm"] for b in bodies if np.isfinite(b["surface_mm"])])
    total = {
        "scans": len(results), "bodies": len(bodies),
        "mean_body_dice": round(float(dice.mean()), 4), "median_body_dice": round(float(np.median(dice)), 4),
        "mean_case_dice": round(float(np.mean([np.mean([b["dice"] for b in r["bodies"]]) for r in results])), 4),
        "mean_surface_distance_mm": round(float(asd.mean()), 3) if len(asd) else None,
        "missed": int(sum(r["missed"] for r in results)), "false": int(sum(r["false"] for r in results)),
        "false_in_labelled_span": int(sum(r["false_in_span"] for r in results)),
        "seconds_per_scan": round(float(np.mean([r["seconds"] for r in results])), 1),
    }
    log("TOTAL " + json.dumps(total))
    return {"total": total, "cases": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SPINEBRAIN_TEST_DATA", str(DEFAULT_DATA)))
    parser.add_argument("--model", default=None, help="model package folder or id (default: the installed one)")
    parser.add_argument("--part", default="validation", help="splits.json part: validation (default) or train")
    parser.add_argument("--cases", nargs="*", help="only these cases (e.g. A10_vb3_lumbar_mr/vb3_05)")
    parser.add_argument("--no-flip", action="store_true", help="no superior-inferior flip averaging")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--erosion-mm", type=float)
    parser.add_argument("--sweep", action="store_true", help="also try flip x threshold x erosion variants")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--merge", nargs="*", help="summarise the first variant of these --json files together "
                        "(parts of one evaluation run as separate processes) and exit")
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(Path(path).read_text(encoding="utf-8")) for path in args.merge]
        cases = [case for part in parts for case in part["variants"][0]["cases"]]
        for scores in cases:
            _log_case(scores, print)
        merged = summarise(cases)
        if args.json:
            Path(args.json).write_text(json.dumps(merged, indent=1), encoding="utf-8")
        return
    torch.set_num_threads(args.threads)
    cases = split_cases(args.data, args.part)
    if args.cases:
        cases = [c for c in cases if c[0] in set(args.cases)]
    settings = {key: value for key, value in {"flip": False if args.no_flip else None, "threshold": args.threshold,
                                               "erosion_mm": args.erosion_mm}.items() if value is not None}
    variants = [settings]
    if args.sweep:  # post-processing choices; tune them on training cases (--part train), never on validation
        variants += [{"flip": flip, "threshold": t, "erosion_mm": e} for flip in (False, True)
                     for t in (0.4, 0.5, 0.6) for e in (2.0, 3.0, 4.0)]
    model = load_model_2d(args.model, device="cpu")
    figures = evaluate(model, cases, variants)
    figures["card_settings"] = model.settings
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
