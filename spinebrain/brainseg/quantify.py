"""Tissue volumes and the evaluation metrics of a tissue map.

Volumes: voxel count x voxel volume (mm³ / 1000 = mL); the intracranial volume (ICV) is CSF + GM + WM
(+ lesions, when segmented: lesion voxels are counted as Lesion, not as the tissue they lie in) --
everything inside the brain mask the segmentation was made in -- and each fraction is of the ICV.
Metrics per class against a reference map (MONAI): Dice, HD95 and ASSD in mm (voxel spacing
passed), and the volume difference (predicted - reference, mL and % of the reference).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..tables import Column

TISSUE_ORDER = ((2, "Grey matter"), (3, "White matter"), (1, "Cerebrospinal fluid"))
ICV = "Intracranial volume"

VOLUME_COLUMNS = (
    Column("structure", "text"),
    Column("volume", "float", "mL", 2),
    Column("fraction of intracranial volume", "float", "", 4),
    Column("voxels", "int"),
)


def voxel_volume_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


def tissue_volumes(labels: sitk.Image, names: dict[int, str] | None = None) -> list[dict]:
    """One record per tissue (GM, WM, CSF) and one for the intracranial volume, in mL, for :data:`VOLUME_COLUMNS`."""
    names = names or dict((value, name) for value, name in TISSUE_ORDER)
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=4)
    per_voxel = voxel_volume_ml(labels)
    icv_voxels = int(sum(counts[value] for value, _ in TISSUE_ORDER))
    records = []
    for value, _ in TISSUE_ORDER:
        voxels = int(counts[value])
        records.append({"structure": names[value], "volume": voxels * per_voxel, "voxels": voxels,
                        "fraction of intracranial volume": voxels / icv_voxels if icv_voxels else 0.0})
    records.append({"structure": ICV, "volume": icv_voxels * per_voxel, "voxels": icv_voxels,
                    "fraction of intracranial volume": 1.0 if icv_voxels else 0.0})
    return records


def brain_volumes(labels: sitk.Image, names: dict[int, str], brain_mask: sitk.Image | None = None) -> list[dict]:
    """Volumes of every named class present in ``names`` (GM, WM, CSF in :data:`TISSUE_ORDER`'s order, then the
    rest, e.g. 4 Lesion) and the intracranial volume, for :data:`VOLUME_COLUMNS`. The intracranial volume is every
    named voxel, or the ``brain_mask`` when given (lesions alone, without tissue classes)."""
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=max(names, default=0) + 1)
    per_voxel = voxel_volume_ml(labels)
    order = [v for v, _ in TISSUE_ORDER if v in names] + sorted(v for v in names if v not in dict(TISSUE_ORDER))
    icv_voxels = int(sum(counts[v] for v in order))
    if brain_mask is not None:
        icv_voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(brain_mask)))
    records = [{"structure": names[v], "volume": int(counts[v]) * per_voxel, "voxels": int(counts[v]),
                "fraction of intracranial volume": int(counts[v]) / icv_voxels if icv_voxels else 0.0} for v in order]
    records.append({"structure": ICV, "volume": icv_voxels * per_voxel, "voxels": icv_voxels,
                    "fraction of intracranial volume": 1.0 if icv_voxels else 0.0})
    return records


METRIC_COLUMNS = (
    Column("structure", "text"),
    Column("dice", "float", "", 4),
    Column("hd95", "float", "mm", 2),
    Column("assd", "float", "mm", 2),
    Column("volume predicted", "float", "mL", 2),
    Column("volume reference", "float", "mL", 2),
    Column("volume difference", "float", "%", 1),
)


def tissue_metrics(predicted: sitk.Image, reference: sitk.Image, ignore: sitk.Image | None = None) -> list[dict]:
    """Dice, HD95, ASSD and volume difference per tissue class (MONAI metrics); ``ignore`` voxels count for neither."""
    import torch
    from monai.metrics import compute_dice

    pred = sitk.GetArrayFromImage(predicted).astype(np.int64)
    ref = sitk.GetArrayFromImage(reference).astype(np.int64)
    if ignore is not None:
        skip = sitk.GetArrayViewFromImage(ignore).astype(bool)
        pred[skip], ref[skip] = 0, 0
    spacing = predicted.GetSpacing()[::-1]  # arrays are (k, j, i)
    per_voxel = voxel_volume_ml(predicted)
    records = []
    for value, name in TISSUE_ORDER:
        p = torch.from_numpy(pred == value)[None, None].float()
        r = torch.from_numpy(ref == value)[None, None].float()
        dice = float(compute_dice(y_pred=p, y=r, include_background=True)[0, 0])
        records.append({"structure": name, "dice": dice, **surface_distances(p, r, spacing),
                        **volumes_compared(float(p.sum()), float(r.sum()), per_voxel)})
    return records


def surface_distances(predicted, reference, spacing) -> dict:
    """HD95 and ASSD (symmetric) in mm of two binary (1, 1, k, j, i) tensors (MONAI), ``spacing`` in (k, j, i)."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    both = {"y_pred": predicted, "y": reference, "include_background": True, "spacing": spacing}
    return {"hd95": float(compute_hausdorff_distance(**both, percentile=95)[0, 0]),
            "assd": float(compute_average_surface_distance(**both, symmetric=True)[0, 0])}


def volumes_compared(predicted_voxels: float, reference_voxels: float, per_voxel_ml: float) -> dict:
    """Predicted and reference volume in mL and their difference in % of the reference (NaN without a reference)."""
    v_pred, v_ref = predicted_voxels * per_voxel_ml, reference_voxels * per_voxel_ml
    return {"volume predicted": v_pred, "volume reference": v_ref,
            "volume difference": 100.0 * (v_pred - v_ref) / v_ref if v_ref else float("nan")}
