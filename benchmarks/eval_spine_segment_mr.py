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
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from spinebrain.spinesegment.evaluation2d import SETTING_GRID, _log_case, evaluate, summarise  # noqa: E402
from spinebrain.spinesegment.pipeline2d import load_model_2d  # noqa: E402
from spinebrain.spinesegment.training2d import split_cases  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SPINEBRAIN_TEST_DATA", str(DEFAULT_DATA)))
    parser.add_argument("--model", default=None, help="model package folder or id (default: the installed one)")
    parser.add_argument("--part", default="validation", help="splits.json part: validation (default) or train")
    parser.add_argument("--cases", nargs="*", help="only these cases (e.g. A10_vb3_lumbar_mr/vb3_05)")
    parser.add_argument("--no-flip", action="store_true", help="no superior-inferior flip averaging")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--erosion-mm", type=float)
    parser.add_argument("--smooth-mm", type=float, help="Gaussian smoothing of the stacked slice probabilities")
    parser.add_argument("--sweep", action="store_true", help="also try the settings grid (evaluation2d.SETTING_GRID)")
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
                                               "erosion_mm": args.erosion_mm, "smooth_mm": args.smooth_mm}.items() if value is not None}
    variants = [settings]
    if args.sweep:  # post-processing choices; tune them on training cases (--part train), never on validation
        variants += list(SETTING_GRID)
    model = load_model_2d(args.model, device="cpu")
    figures = evaluate(model, cases, variants)
    figures["card_settings"] = model.settings
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
