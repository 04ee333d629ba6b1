"""SpineLabel on held-out real MR (splits.json 'validation' of A10-A12) and on the real CT crops A3, A5, A6.

Usage: python benchmarks/eval_spine_label_real_mr.py [--data DIR] [--models ID_OR_FOLDER ...] [--json OUT]

Per model (default: every installed lumbar spine-label model) the full pipeline (detector + graph)
runs on every validation scan; nothing here was trained on or tuned to these patients.

Scoring (real MR). The reference is the body masks (VerSe values; A12: 26 = S1 body). A point is
a true positive when it lies inside a body mask (one per body; :mod:`spinebrain.spinelabel.metrics`).
Bodies in view but not masked are not false positives: points above the topmost masked body or
below the lowest one (S1 in A10 / A11, T9 and above everywhere) are not scored. Bodies touching the
top or bottom face of the image are partial and not counted as missed (A12's thin left-right field
of view makes many touch the side faces; those still count). Localisation: distance to the mask
centroid. Labeling: true positives carrying the mask's level name / (TP + FN).

CT crops (no L5 / sacrum in view in any of them): every point should lie inside a vertebra (A3, A6:
any vertebra mask; A5 has only T12 labelled, so only the point nearest T12 is judged) and no
labelling may be anchored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spinebrain.anatomy import VERTEBRA_NAMES_BY_LABEL
from spinebrain.errors import InputError
from spinebrain.io import load_volume, read_image
from spinebrain.models import ModelRegistry
from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.metrics import aggregate, evaluate_points, label_at, reference_centroids
from spinebrain.spinelabel.pipeline import TASK, label_spine, load_spine_label_models, relabel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("A10_vb3_lumbar_mr", "A11_vb2_t2_lumbar", "A12_vb1_thoracolumbar_pathology")


#: Train-split patients the heatmap recipe holds out to choose its epoch and settings (never trained on).
SELECT = ("vb3_27", "vb3_29", "vb2_20")


def validation_cases(data: Path, split: str = "validation") -> list[Path]:
    """The splits.json 'validation' scans; ``split="select"``: the recipe's selection scans; "train": every train scan."""
    splits = json.loads((data / "splits.json").read_text())
    if split == "select":
        return [data / name / case for name in SETS for case in splits[name]["train"] if case in SELECT]
    if split == "train":  # every train-split scan: the detector was taught on most of them, other parts were not
        return [data / name / case for name in SETS for case in splits[name]["train"]]
    return [data / name / case for name in SETS for case in splits[name]["validation"]]


def _s_extent(labels: sitk.Image) -> tuple[float, float, set[str]]:
    """(lowest S, highest S) of the masked bodies (RAS mm) and the bodies touching the top / bottom face."""
    array = sitk.GetArrayFromImage(labels)
    kji = np.argwhere(array > 0)
    s = np.array([labels.TransformContinuousIndexToPhysicalPoint([float(v) for v in p[::-1]])[2] for p in
                  kji[:: max(len(kji) // 4000, 1)]])
    # axis along S: the image axis whose direction is most superior-inferior (LPS z)
    direction = np.array(labels.GetDirection()).reshape(3, 3)
    axis = int(np.argmax(np.abs(direction[2])))  # image axis i/j/k
    numpy_axis = 2 - axis
    faces = np.take(array, [0, array.shape[numpy_axis] - 1], axis=numpy_axis)
    partial = {VERTEBRA_NAMES_BY_LABEL[v] for v in np.unique(faces) if v in VERTEBRA_NAMES_BY_LABEL}
    return float(s.min()), float(s.max()), partial


def score_mr_case(folder: Path, model) -> dict:
    image = load_volume(folder / "image.nii.gz")
    labels = read_image(folder / "vertebrae.nii.gz")
    centroids = reference_centroids(labels)
    low, high, partial = _s_extent(labels)
    row = {"case": f"{folder.parent.name[:3]}/{folder.name}", "reference": sorted(centroids, key=list(centroids).index)}
    try:
        result = label_spine(image, model)
    except InputError as error:
        row.update(error=str(error), anchored=False, points=[])
        predicted = []
    else:
        predicted = result.points
        row.update(anchored=result.labelling.anchored, seconds=round(result.seconds, 2),
                   certainty=round(float(result.labelling.certainty), 3))
    # a point S-outside the annotated span lies in a visible but unmasked body (or the sacrum): not scored
    scored = [p for p in predicted if low - 3.0 <= p.ras[2] <= high + 3.0 or label_at(labels, p.ras) is not None]
    reference = [LabelledPoint(n, tuple(c)) for n, c in centroids.items()]
    metrics = evaluate_points(scored, reference, labels, partial)
    row.update(points=[f"{p.label}{'' if label_at(labels, p.ras) else '(out)'}" for p in predicted],
               not_scored=len(predicted) - len(scored), partial=sorted(partial))
    row.update({k: metrics[k] for k in ("tp", "fp", "fn", "correct_labels", "missed", "false_positives")})
    row["distances_mm"] = [round(d, 2) for d in metrics["distances_mm"]]
    row["metrics"] = metrics
    if predicted:
        row["after_one_point"] = _after_one_point(result, centroids, labels, low, high, partial)
    return row


def _after_one_point(result, centroids: dict, labels, low: float, high: float, partial) -> dict:
    """Relabel with one user-set point (the middle masked body, at its mask centroid); score the other points.

    As a user would: the run's detections are kept, the point fixes its level, the graph re-solves.
    """
    names = list(centroids)
    level = names[len(names) // 2]
    fixed = LabelledPoint(level, tuple(float(v) for v in centroids[level]), None, True)
    after = relabel(result, fixed_points=[fixed])
    others = [p for p in after.points if not p.user_set and (low - 3.0 <= p.ras[2] <= high + 3.0
                                                             or label_at(labels, p.ras) is not None)]
    reference = [LabelledPoint(n, tuple(c)) for n, c in centroids.items() if n != level]
    metrics = evaluate_points(others, reference, labels, set(partial) | {level})
    return {"fixed": level, "correct": metrics["correct_labels"], "of": metrics["tp"] + metrics["fn"]}


def ct_crops(data: Path, model) -> list[dict]:
    rows = []
    a6 = data / "A6_tptbox_sample_ct"
    rows.append(_ct_case("A6 CT L2-L4", load_volume(a6 / "sub-ct_label-22_ct.nii.gz"),
                         read_image(a6 / "sub-ct_seg-vert_label-22_msk.nii.gz"), model, lambda v: v > 0))
    a3 = data / "A3_ts_example_ct_dicom"
    rows.append(_ct_case("A3 CT T11-T12", load_volume(a3 / "dicom"), read_image(a3 / "seg_total_v2.nii.gz"), model,
                         lambda v: 25 <= v <= 50))  # TotalSegmentator v2 vertebra classes
    a5 = data / "A5_ts_aorta_ct_cropped"
    rows.append(_ct_case("A5 CT chest (T12 only labelled)", load_volume(a5 / "ct.nii.gz"),
                         read_image(a5 / "vertebrae_T12.nii.gz"), model, None))
    return rows


def _ct_case(name, image, labels, model, is_vertebra) -> dict:
    row = {"case": name}
    try:
        result = label_spine(image, model)
        row["mode"] = "labelled"
    except InputError:  # too little spine to name: detection only (no anchor can be claimed)
        result = label_spine(image, model, detection_only=True)
        row["mode"] = "detection only"
    row.update(points=[p.label for p in result.points], anchored=result.labelling.anchored,
               false_anchor=bool(result.labelling.anchored))
    if is_vertebra is not None:
        inside = [_value_at(labels, p.ras) for p in result.points]
        row["inside_vertebra"] = f"{sum(is_vertebra(v) for v in inside)}/{len(inside)}"
    else:
        centre = reference_centroids(labels, {1: "T12"})["T12"]
        nearest = min(result.points, key=lambda p: np.linalg.norm(np.subtract(p.ras, centre)), default=None)
        row["t12"] = None if nearest is None else {
            "label": nearest.label, "distance_mm": round(float(np.linalg.norm(np.subtract(nearest.ras, centre))), 1),
            "inside": _value_at(labels, nearest.ras) > 0}
    return row


def _value_at(labels: sitk.Image, ras) -> int:
    from spinebrain.geometry import ras_to_index

    ijk = np.rint(ras_to_index(labels, ras)).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.array(labels.GetSize())):
        return 0
    return int(round(labels[tuple(int(v) for v in ijk)]))


def summary(rows: list[dict]) -> dict:
    pooled = aggregate([r["metrics"] for r in rows])
    distances = [d for r in rows for d in r["metrics"]["distances_mm"]]
    return {"cases": len(rows), "sensitivity": round(pooled["sensitivity"], 4), "precision": round(pooled["precision"], 4),
            "localisation_mean_mm": round(pooled["localisation_mean_mm"], 2),
            "localisation_p90_mm": round(float(np.percentile(distances, 90)), 2) if distances else None,
            "labeling_accuracy": round(pooled["labeling_accuracy"], 4),
            "anchored": sum(bool(r.get("anchored")) for r in rows),
            "after_one_point": _pooled_one_point(rows),
            "cases_all_named_right": sum(r["fn"] == 0 and r["correct_labels"] == r["tp"] for r in rows),
            "tp": pooled["tp"], "fp": pooled["fp"], "fn": pooled["fn"]}


def _pooled_one_point(rows: list[dict]) -> float | None:
    """Share of the other bodies named right after one user-set point, pooled over the scans."""
    scored = [r["after_one_point"] for r in rows if "after_one_point" in r]
    total = sum(s["of"] for s in scored)
    return round(sum(s["correct"] for s in scored) / total, 4) if total else None


def evaluate_model(model_ref: str, data: Path, with_ct: bool = True, split: str = "validation",
                   settings: dict | None = None, evidence: dict | None = None) -> dict:
    model = load_spine_label_models("auto", model_ref, device="cpu")[0]  # a lumbar or a whole-spine package
    if settings:  # trying heatmap settings (on the selection split only)
        model.card.extra["heatmap"] = {**model.card.extra.get("heatmap", {}), **settings}
    if evidence:  # trying level-evidence settings (on the selection split only)
        model.card.extra["evidence"] = {**model.card.extra.get("evidence", {}), **evidence}
    rows = [score_mr_case(folder, model) for folder in validation_cases(data, split)]
    report = {"model": model.card.id, "detector": model.card.extra.get("detector", "paper patch CNN pair"),
              "summary": summary(rows), "cases": [{k: v for k, v in r.items() if k != "metrics"} for r in rows]}
    if with_ct:
        report["ct_crops"] = ct_crops(data, model)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--models", nargs="*", help="model ids or package folders (default: installed lumbar models)")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    parser.add_argument("--no-ct", action="store_true", help="skip the CT crops")
    parser.add_argument("--split", choices=("validation", "select", "train"), default="validation")
    parser.add_argument("--settings", default="{}", help="JSON overrides of a heatmap card's settings")
    parser.add_argument("--evidence", default="{}", help="JSON overrides of a card's level-evidence settings")
    args = parser.parse_args(argv)
    models = args.models or [e.card.id for e in ModelRegistry().list_models(task=TASK, region="lumbar")]
    reports = [evaluate_model(m, args.data, not args.no_ct, args.split, json.loads(args.settings),
                              json.loads(args.evidence)) for m in models]
    for report in reports:
        print(f"\n== {report['model']} ({report['detector']})")
        for row in report["cases"]:
            print(f"  {row['case']:<12} tp {row['tp']} fp {row['fp']} fn {row['fn']} named {row['correct_labels']}"
                  f" anchored {row.get('anchored')} | {' '.join(row['points'])} | err {row['distances_mm']}"
                  + (" | one point: {correct}/{of}".format(**row["after_one_point"]) if "after_one_point" in row else "")
                  + (f" | {row['error']}" if 'error' in row else ""))
        print("  total:", json.dumps(report["summary"]))
        for row in report.get("ct_crops", []):
            print("  ", json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1, default=float))


if __name__ == "__main__":
    main()
