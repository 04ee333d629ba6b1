"""Per-vertebra evaluation of labelled points, with the definitions of Forsberg et al. 2017 (and VerSe's id rate).

Definitions (one case; ``aggregate`` pools the counts over cases, as the paper's Table 1 does):

* A predicted point is a **true positive** when it lies inside a reference vertebra: inside its
  mask when a reference label map is given, else within ``match_radius_mm`` of its reference
  centroid (the nearest one). Each vertebra counts once: a second point inside the same vertebra
  is a false positive (the one nearest the centroid is kept).
* **FP**: a point outside every vertebra (or a duplicate). **FN**: a reference vertebra with no
  point, except those in ``ref_partial`` (end vertebrae not fully visible are not false negatives).
* sensitivity = TP / (TP + FN); precision = TP / (TP + FP); accuracy = TP / (TP + FP + FN) --
  this is the paper's "accuracy": Table 1 lumbar T1 gives 740 / (740 + 1 + 2) = 99.6 %.
* **Localisation error**: distance from each TP point to the centroid of its vertebra, mean and
  sample SD (mm).
* **Labeling accuracy**: TPs that carry the vertebra's name / (TP + FN), the count of reference
  vertebrae (the denominator of most rows of the paper's Table 1); ``labeling_accuracy_strict``
  also counts false positives in the denominator (correct / (TP + FP + FN)).
* **Identification rate** (VerSe): a reference vertebra is identified when a point with its name
  lies within ``id_radius_mm`` (20 mm) of its centroid and that centroid is the reference one
  nearest to the point; rate over all reference vertebrae (partial ones included, as VerSe does).
* **Estimated points** (:func:`~spinebrain.points.is_estimate`: a level the labelling places between two named
  vertebrae where nothing was detected) are not detections: TP, FP, FN and localisation count detections only. A
  name is a name, though: an estimate inside the vertebra it names counts among the correct labels
  (``estimated_right`` says how many did; ``estimated``: how many there were; ``named``: reference vertebrae with
  a point inside, detected or estimated).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from spinebrain.anatomy import VERTEBRA_NAMES_BY_LABEL
from spinebrain.errors import InputError
from spinebrain.geometry import lps_to_ras, ras_to_index
from spinebrain.points import LabelledPoint, is_estimate

_COUNTS = ("tp", "fp", "fn", "correct_labels", "estimated_right", "identified", "n_reference", "n_predicted",
           "estimated", "named")


def reference_centroids(label_map: sitk.Image, names: dict[int, str] | None = None) -> dict[str, np.ndarray]:
    """Centroid (RAS mm) of every named vertebra in a label map (VerSe values by default)."""
    names = VERTEBRA_NAMES_BY_LABEL if names is None else names
    labels = sitk.Cast(sitk.Round(label_map), sitk.sitkUInt16) if label_map.GetPixelID() in (
        sitk.sitkFloat32, sitk.sitkFloat64) else label_map
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    return {names[value]: lps_to_ras(stats.GetCentroid(value)) for value in stats.GetLabels() if value in names}


def label_at(label_map: sitk.Image, ras, names: dict[int, str] | None = None) -> str | None:
    """Name of the vertebra containing the RAS point (nearest voxel), or None outside every vertebra."""
    names = VERTEBRA_NAMES_BY_LABEL if names is None else names
    ijk = np.rint(ras_to_index(label_map, ras)).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.array(label_map.GetSize())):
        return None
    return names.get(int(round(label_map[tuple(int(v) for v in ijk)])))


def evaluate_points(pred: list[LabelledPoint], ref_points: list[LabelledPoint] | None = None,
                    ref_labels: sitk.Image | None = None, ref_partial=frozenset(), *,
                    ref_names: dict[int, str] | None = None, match_radius_mm: float = 10.0,
                    id_radius_mm: float = 20.0) -> dict:
    """Detection, localisation and labeling metrics of one case (see the module text).

    The reference is ``ref_points`` (vertebra centroids), ``ref_labels`` (a label map; its
    centroids are used unless ``ref_points`` gives them), or both.
    """
    if ref_points is None and ref_labels is None:
        raise InputError("Give a reference: reference points, a reference label map, or both.")
    if ref_points is not None:
        centroids = {p.label: np.asarray(p.ras, dtype=float) for p in ref_points}
    else:
        centroids = reference_centroids(ref_labels, ref_names)
    if ref_labels is not None:
        centroids.update({k: v for k, v in reference_centroids(ref_labels, ref_names).items() if k not in centroids})
    inside = [_containing(p, centroids, ref_labels, ref_names, match_radius_mm) for p in pred]
    named = _match(pred, inside, centroids)  # reference name -> index of the point naming it (estimates too)
    detected = [k for k, point in enumerate(pred) if not is_estimate(point)]
    matches = _match([pred[k] for k in detected], [inside[k] for k in detected], centroids)
    matches = {name: detected[k] for name, k in matches.items()}  # reference name -> index of its TP detection
    distances = [float(np.linalg.norm(np.asarray(pred[k].ras) - centroids[name])) for name, k in matches.items()]
    missed = [name for name in centroids if name not in matches and name not in ref_partial]
    counts = {
        "tp": len(matches), "fp": len(detected) - len(matches), "fn": len(missed),
        "correct_labels": sum(pred[k].label == name for name, k in named.items()),
        "estimated_right": sum(pred[k].label == name and is_estimate(pred[k]) for name, k in named.items()),
        "identified": sum(_identified(name, pred, centroids, id_radius_mm) for name in centroids),
        "n_reference": len(centroids), "n_predicted": len(pred), "estimated": len(pred) - len(detected),
        "named": len(named),
    }
    return {**counts, **_rates(counts, distances), "distances_mm": distances,
            "missed": missed, "false_positives": [pred[k].label for k in detected if k not in matches.values()]}


def aggregate(results: list[dict]) -> dict:
    """Pool per-case results: counts summed, rates and localisation recomputed per vertebra."""
    counts = {key: sum(r[key] for r in results) for key in _COUNTS}
    distances = [d for r in results for d in r["distances_mm"]]
    return {**counts, **_rates(counts, distances), "cases": len(results)}


def _containing(point, centroids, label_map, names, radius) -> str | None:
    if label_map is not None:
        return label_at(label_map, point.ras, names)
    if not centroids:
        return None
    name, distance = min(((n, np.linalg.norm(np.asarray(point.ras) - c)) for n, c in centroids.items()),
                         key=lambda item: item[1])
    return name if distance <= radius else None


def _match(pred, inside, centroids) -> dict[str, int]:
    """Each reference vertebra keeps the point inside it that lies nearest its centroid."""
    matches: dict[str, int] = {}
    for k, name in enumerate(inside):
        if name is None or name not in centroids:
            continue
        distance = np.linalg.norm(np.asarray(pred[k].ras) - centroids[name])
        if name not in matches or distance < np.linalg.norm(np.asarray(pred[matches[name]].ras) - centroids[name]):
            matches[name] = k
    return matches


def _identified(name, pred, centroids, radius) -> bool:
    for point in pred:
        if point.label != name:
            continue
        position = np.asarray(point.ras, dtype=float)
        nearest = min(centroids, key=lambda n: np.linalg.norm(position - centroids[n]))
        if nearest == name and np.linalg.norm(position - centroids[name]) <= radius:
            return True
    return False


def _rates(counts: dict, distances: list[float]) -> dict:
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {
        "sensitivity": _ratio(tp, tp + fn), "precision": _ratio(tp, tp + fp), "accuracy": _ratio(tp, tp + fp + fn),
        "labeling_accuracy": _ratio(counts["correct_labels"], tp + fn),
        "labeling_accuracy_strict": _ratio(counts["correct_labels"], tp + fp + fn),
        "identification_rate": _ratio(counts["identified"], counts["n_reference"]),
        "localisation_mean_mm": float(np.mean(distances)) if distances else float("nan"),
        "localisation_sd_mm": _sample_sd(distances),
    }


def _sample_sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0 if values else float("nan")
    return float(np.std(values, ddof=1))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")
