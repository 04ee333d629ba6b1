"""SpineLabel with the bundled models on the real crops in ../shared/data (see its README).

Usage: python benchmarks/eval_spine_label_real.py [DATA_DIR]

Per case: detection and localisation error against the reference vertebrae (body centroids where
sub-region masks give the body, else mask centroids), labeling accuracy (automatic, and after one
user-set point at the reference centre of one complete vertebra), anchored or not. Crops that
show too little spine to name vertebrae run with detection only. Nothing is tuned to these cases.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spinebrain.geometry import index_to_ras
from spinebrain.io import load_volume, read_image
from spinebrain.points import LabelledPoint
from spinebrain.spinelabel.metrics import evaluate_points
from spinebrain.spinelabel.pipeline import label_spine, load_spine_label_model

BODY_SUBREGIONS = (49, 50)  # TPTBox Vertebra_Corpus_border, Vertebra_Corpus


def body_centres(vert: sitk.Image, subreg: sitk.Image | None, names: dict[int, str]) -> dict[str, np.ndarray]:
    """RAS centroid of each vertebra's body (vertebra mask within the body sub-regions), else of its mask."""
    labels = sitk.GetArrayFromImage(vert)
    body = np.isin(sitk.GetArrayFromImage(subreg), BODY_SUBREGIONS) if subreg is not None else None
    centres = {}
    for value, name in names.items():
        mask = labels == value
        if body is not None and (mask & body).any():
            mask &= body
        if mask.any():
            kji = np.argwhere(mask).mean(axis=0)
            centres[name] = index_to_ras(vert, kji[::-1])
    return centres


def touching_border(vert: sitk.Image, names: dict[int, str]) -> set[str]:
    labels = sitk.GetArrayFromImage(vert)
    border = np.zeros(labels.shape, bool)
    for axis in range(3):
        index = [slice(None)] * 3
        index[axis] = 0
        border[tuple(index)] = True
        index[axis] = -1
        border[tuple(index)] = True
    return {names[v] for v in np.unique(labels[border]) if v in names}


def run_case(name, image, model, reference, labels, names, partial, fixed_level=None, detection_only=False):
    row = {"case": name, "region": model.region, "detection_only": detection_only}
    result = label_spine(image, model, detection_only=detection_only)
    ref_points = [LabelledPoint(n, tuple(p)) for n, p in reference.items()]
    metrics = evaluate_points(result.points, ref_points, labels, partial, ref_names=names)
    row.update(points=[p.label for p in result.points], anchored=result.labelling.anchored,
               sensitivity=metrics["sensitivity"], precision=metrics["precision"],
               localisation_mm=metrics["distances_mm"], seconds=round(result.seconds, 3),
               labeling_accuracy=None if detection_only else metrics["labeling_accuracy"], warnings=result.warnings)
    if fixed_level and not detection_only:
        fixed = LabelledPoint(fixed_level, tuple(reference[fixed_level]), None, True)
        after = label_spine(image, model, [fixed])
        others = [p for p in ref_points if p.label != fixed_level]
        m = evaluate_points([p for p in after.points if not p.user_set], others, labels,
                            partial | {fixed_level}, ref_names=names)
        row.update(after_one_point=[p.label for p in after.points], labeling_after_one_point=m["labeling_accuracy"],
                   labeled_correct_after_one_point=f"{m['correct_labels']}/{m['tp'] + m['fn']}")
    return row


def main(data: Path) -> None:
    lumbar, cervical = load_spine_label_model("lumbar", device="cpu"), load_spine_label_model("cervical", device="cpu")
    rows = []
    # A6: CT around L3 (VerSe values), body from sub-regions
    a6 = data / "A6_tptbox_sample_ct"
    vert, names = read_image(a6 / "sub-ct_seg-vert_label-22_msk.nii.gz"), {21: "L2", 22: "L3", 23: "L4"}
    ref = body_centres(vert, read_image(a6 / "sub-ct_seg-subreg_label-22_msk.nii.gz"), names)
    rows.append(run_case("A6 CT L2-L4", load_volume(a6 / "sub-ct_label-22_ct.nii.gz"), lumbar, ref, vert, names,
                         touching_border(vert, names), fixed_level="L3"))
    # A7: T2 MR around C6
    a7 = data / "A7_tptbox_sample_mri"
    vert, names = read_image(a7 / "sub-mri_seg-vert_label-6_msk.nii.gz"), {5: "C5", 6: "C6", 7: "C7"}
    ref = body_centres(vert, read_image(a7 / "sub-mri_seg-subreg_label-6_msk.nii.gz"), names)
    rows.append(run_case("A7 T2 C5-C7", load_volume(a7 / "sub-mri_label-6_T2w.nii.gz"), cervical, ref, vert, names,
                         touching_border(vert, names), fixed_level="C6"))
    # A3: 40 mm of CT: detection only (T11, T12 both partial)
    a3 = data / "A3_ts_example_ct_dicom"
    vert, names = read_image(a3 / "seg_total_v2.nii.gz"), {32: "T12", 33: "T11"}
    ref = body_centres(vert, None, names)
    rows.append(run_case("A3 CT T11-T12 (detection only)", load_volume(a3 / "dicom"), lumbar, ref, vert, names,
                         set(names.values()), detection_only=True))
    # A5: only T12 labelled: the T12 point and its name; other detections are not scored as false positives
    a5 = data / "A5_ts_aorta_ct_cropped"
    vert, names = read_image(a5 / "vertebrae_T12.nii.gz"), {1: "T12"}
    image = load_volume(a5 / "ct.nii.gz")
    result = label_spine(image, lumbar)
    t12 = body_centres(vert, None, names)["T12"]
    nearest = min(result.points, key=lambda p: np.linalg.norm(np.subtract(p.ras, t12)))
    rows.append({"case": "A5 CT (only T12 labelled)", "region": "lumbar", "points": [p.label for p in result.points],
                 "anchored": result.labelling.anchored, "t12_point_label": nearest.label,
                 "t12_distance_mm": float(np.linalg.norm(np.subtract(nearest.ras, t12))),
                 "warnings": result.warnings, "seconds": round(result.seconds, 3)})
    # A9: cervical T2, C2-C5 projected on the cord: name of each point vs the cord level at its height
    a9 = data / "A9_sct_t2_cervical"
    rows.append(a9_case(load_volume(a9 / "t2.nii.gz"), read_image(a9 / "t2_seg-manual_labeled.nii.gz"), cervical))
    print(json.dumps(rows, indent=1, default=float))


def a9_case(image, cord, model) -> dict:
    """Levels along S from the labelled cord; each point is right when its name is the cord level at its height.

    One-point correction as a user would do it: the detection at the height of cord level C3 is named
    C3 (kept where it is, user-set), the rest re-solved and judged by the cord levels again.
    """
    cord_array = np.rint(sitk.GetArrayFromImage(cord)).astype(int)
    kji = np.argwhere(cord_array > 0)
    heights = index_to_ras(cord, kji[:, ::-1].astype(float))[:, 2]
    values = cord_array[tuple(kji.T)]
    spans = {f"C{v}": (heights[values == v].min(), heights[values == v].max()) for v in np.unique(values)}

    def judge(points):
        pairs = [(p.label, next((n for n, (lo, hi) in spans.items() if lo <= p.ras[2] <= hi), None)) for p in points]
        return [pair for pair in pairs if pair[1] is not None]

    result = label_spine(image, model)
    judged = judge(result.points)
    row = {"case": "A9 T2 C2-C5 (cord levels)", "region": "cervical", "points": [p.label for p in result.points],
           "anchored": result.labelling.anchored, "judged": judged,
           "labeling_accuracy": (sum(a == b for a, b in judged) / len(judged)) if judged else None,
           "warnings": result.warnings, "seconds": round(result.seconds, 3)}
    at_c3 = [p for p in result.points if spans["C3"][0] <= p.ras[2] <= spans["C3"][1]]
    if at_c3:
        fixed = LabelledPoint("C3", tuple(at_c3[0].ras), None, True)
        after = judge([p for p in label_spine(image, model, [fixed]).points if not p.user_set])
        row.update(judged_after_one_point=after, labeled_correct_after_one_point=
                   f"{sum(a == b for a, b in after)}/{len(after)}")
    return row


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
