"""3D CT mode (iterative instances, seed 002): held-out generated CT, the real CT crops, speed, start points.

Run (from the repository root, data beside it):
``OMP_NUM_THREADS=1 python benchmarks/eval_spine_segment_ct3d.py --model FOLDER --synthetic 9000:9006 --json out.json``
Prints per-case JSON lines and a summary: per-vertebra Dice, mean surface distance (MONAI), completeness
accuracy, false and missed instances per scan (:mod:`spinebrain.spinesegment.evaluation3d`), wall and CPU
seconds per scan (warm: model loaded, in-process) and traversal steps, then the same generated scans
started at their labelled points (what SpineLabel gives) to measure the steps saved.
Seeds 9000+ are never used in training (training 0-199, checkpoint choice 5000+ / 90000+).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from spinebrain.spinesegment.evaluation3d import real_ct_scores, summarise, synthetic_scores  # noqa: E402
from spinebrain.spinesegment.pipeline3d import load_model_3d, segment_vertebrae  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def start_point_steps(model, first: int, last: int, log=print) -> list[dict]:
    """Traversal steps without and with the reference points as start positions (and naming from them)."""
    from spinebrain.synth import generate_spine

    rows = []
    for seed in range(first, last):
        case = generate_spine(seed, modality="ct", view="lumbar")
        plain = segment_vertebrae(case.image, model)
        started = segment_vertebrae(case.image, model, case.points)
        row = {"seed": seed, "steps_plain": plain.steps, "steps_with_points": started.steps,
               "names_with_points": [v.name for v in started.vertebrae]}
        log(json.dumps(row))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SPINEBRAIN_TEST_DATA", str(DEFAULT_DATA)))
    parser.add_argument("--model", default=None, help="model package folder or id (default: the installed one)")
    parser.add_argument("--synthetic", default="9000:9006", help="held-out generated CT seeds FIRST:LAST")
    parser.add_argument("--start-points", type=int, default=2, help="generated scans for the start-point comparison")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model_3d(args.model, device="cpu")
    first, last = (int(x) for x in args.synthetic.split(":"))
    cpu = time.process_time()
    synthetic = synthetic_scores(model, first, last)
    figures = {"model": model.card.id, "synthetic_seeds": args.synthetic, "synthetic": summarise(synthetic),
               "synthetic_cases": [asdict(s) for s in synthetic],
               "cpu_seconds_total_synthetic_incl_generation": round(time.process_time() - cpu, 1)}
    print("synthetic:", json.dumps(figures["synthetic"]))
    if Path(args.data).is_dir():
        real = real_ct_scores(model, Path(args.data))
        figures["real_ct"] = [asdict(s) for s in real]
    if args.start_points:
        figures["start_points"] = start_point_steps(model, first, first + args.start_points)
    import resource

    figures["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kB
    print("peak memory (MB):", figures["peak_memory_mb"])
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
