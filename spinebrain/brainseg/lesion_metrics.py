"""Lesion segmentation metrics of the review the task follows (Akkus 2017): voxel-wise and lesion-wise.

Voxel-wise (MONAI): Dice (``compute_dice``), TPR = sensitivity and PPV = precision
(``get_confusion_matrix`` + ``compute_confusion_matrix_metric``), Hausdorff distance and its 95th
percentile (``compute_hausdorff_distance``), average symmetric surface distance
(``compute_average_surface_distance``), all in mm with the voxel spacing; and the volume
difference (predicted - reference, % of the reference).

Lesion-wise (hand-written: MONAI has no lesion detection metric): a lesion is a connected component
(26-connectivity) of at least ``minimum_mm3`` (smaller reference components are not counted as
lesions to find, smaller predicted ones not as detections, as in the MSSEG challenge's lesion-wise
scores); a reference lesion is *found* when a predicted lesion voxel overlaps it, a predicted lesion
is *true* when it overlaps a reference lesion voxel. Lesion-wise TPR = found / reference lesions,
lesion-wise PPV = true / predicted lesions.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..tables import Column
from .quantify import surface_distances, voxel_volume_ml, volumes_compared

LESION_METRIC_COLUMNS = (
    Column("dice", "float", "", 4),
    Column("tpr", "float", "", 4),
    Column("ppv", "float", "", 4),
    Column("volume predicted", "float", "mL", 3),
    Column("volume reference", "float", "mL", 3),
    Column("volume difference", "float", "%", 1),
    Column("hd", "float", "mm", 2),
    Column("hd95", "float", "mm", 2),
    Column("assd", "float", "mm", 2),
    Column("lesion-wise tpr", "float", "", 4),
    Column("lesion-wise ppv", "float", "", 4),
    Column("reference lesions", "int"),
    Column("predicted lesions", "int"),
    Column("minimum lesion", "float", "mm³", 1),
)


def lesion_metrics(predicted: sitk.Image, reference: sitk.Image, minimum_mm3: float = 0.0) -> dict:
    """Every metric of :data:`LESION_METRIC_COLUMNS` for two binary lesion maps on one grid."""
    import torch
    from monai.metrics import (compute_confusion_matrix_metric, compute_dice, compute_hausdorff_distance,
                               get_confusion_matrix)

    pred = sitk.GetArrayViewFromImage(predicted) > 0
    ref = sitk.GetArrayViewFromImage(reference) > 0
    spacing = predicted.GetSpacing()[::-1]  # arrays are (k, j, i)
    p = torch.from_numpy(pred)[None, None].float()
    r = torch.from_numpy(ref)[None, None].float()
    both = {"y_pred": p, "y": r}
    confusion = get_confusion_matrix(**both, include_background=True)
    found, reference_count, true, predicted_count = lesion_overlaps(predicted, reference, minimum_mm3)
    return {
        "dice": float(compute_dice(**both, include_background=True, ignore_empty=False)[0, 0]),
        "tpr": float(compute_confusion_matrix_metric("sensitivity", confusion)[0, 0]),
        "ppv": float(compute_confusion_matrix_metric("precision", confusion)[0, 0]),
        **volumes_compared(float(pred.sum()), float(ref.sum()), voxel_volume_ml(predicted)),
        "hd": float(compute_hausdorff_distance(**both, include_background=True, spacing=spacing)[0, 0]),
        **surface_distances(p, r, spacing),
        "lesion-wise tpr": found / reference_count if reference_count else float("nan"),
        "lesion-wise ppv": true / predicted_count if predicted_count else float("nan"),
        "reference lesions": reference_count, "predicted lesions": predicted_count,
        "minimum lesion": float(minimum_mm3),
    }


def lesion_overlaps(predicted: sitk.Image, reference: sitk.Image, minimum_mm3: float = 0.0) -> tuple[int, int, int, int]:
    """(reference lesions found, reference lesions, predicted lesions that are true, predicted lesions)."""
    ref_components, ref_count = _components(reference, minimum_mm3)
    pred_components, pred_count = _components(predicted, minimum_mm3)
    pred_any = sitk.GetArrayViewFromImage(predicted) > 0
    ref_any = sitk.GetArrayViewFromImage(reference) > 0
    found = len(set(np.unique(ref_components[pred_any]).tolist()) - {0})
    true = len(set(np.unique(pred_components[ref_any]).tolist()) - {0})
    return found, ref_count, true, pred_count


def _components(labels: sitk.Image, minimum_mm3: float) -> tuple[np.ndarray, int]:
    voxel_mm3 = float(np.prod(labels.GetSpacing()))
    minimum_voxels = max(1, int(np.ceil(minimum_mm3 / voxel_mm3 - 1e-9))) if minimum_mm3 > 0 else 1
    components = sitk.ConnectedComponent(sitk.Cast(labels > 0, sitk.sitkUInt8), True)
    relabelled = sitk.RelabelComponent(components, minimumObjectSize=minimum_voxels)
    array = sitk.GetArrayFromImage(relabelled)
    return array, int(array.max())
