"""``spinebrain evaluate brain-seg``: compare a tissue or lesion segmentation with a reference.

``--target tissue`` (default): both are label maps with 1 CSF, 2 GM, 3 WM (a ``.seg.nrrd`` written by
``spinebrain brain-seg``, or a NIfTI / NRRD label map); per class Dice, HD95 and ASSD in mm, volumes
and their difference. ``--target lesion``: the prediction's lesions (label 4 of a BrainSeg
segmentation, or any non-zero voxel of a binary map) against a binary reference mask: every metric of
:mod:`.lesion_metrics` (Dice, TPR, PPV, volume difference, HD, HD95, ASSD, lesion-wise TPR / PPV).
The reference is brought onto the prediction's grid (nearest neighbour). Writes the table with
``--out`` and prints it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def add_arguments(parser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--prediction", required=True, help="tissue segmentation (.seg.nrrd or label map)")
    parser.add_argument("--reference", required=True, help="reference label map (1 CSF, 2 GM, 3 WM; lesion: mask)")
    parser.add_argument("--target", choices=("tissue", "lesion"), default="tissue", help="what to compare")
    parser.add_argument("--min-lesion-size", type=float, default=10.0, metavar="MM3",
                        help="lesion-wise scores count lesions of at least this size (mm³, default 10)")
    parser.add_argument("--out", help="metrics table to write (.csv or .tsv)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)


def read_tissue_map(path):
    import SimpleITK as sitk

    from ..io import load_volume
    from ..outputs import read_segmentation

    if str(path).lower().endswith(".seg.nrrd"):
        labels, _ = read_segmentation(path)
    else:
        labels = load_volume(path, name="label map")
    labels = sitk.Cast(labels, sitk.sitkUInt8)
    values = set(int(v) for v in __import__("numpy").unique(sitk.GetArrayViewFromImage(labels)))
    if not values <= {0, 1, 2, 3}:
        raise InputError(f"{Path(path).name} holds values {sorted(values)}; a tissue map has 0 background, 1 CSF, "
                         "2 GM and 3 WM.")
    return labels


def run(args, progress) -> None:
    from ..outputs import check_output_file, write_table
    from ..resample import resample_like
    from .quantify import METRIC_COLUMNS, tissue_metrics

    if args.out:
        check_output_file(Path(args.out), args.overwrite)
    if args.target == "lesion":
        return _run_lesion(args, progress)
    predicted, reference = read_tissue_map(args.prediction), read_tissue_map(args.reference)
    reference = resample_like(reference, predicted, is_label=True, default_value=0)
    records = tissue_metrics(predicted, reference)
    for record in records:
        progress.log(f"{record['structure']}: Dice {record['dice']:.3f}, HD95 {record['hd95']:.1f} mm, "
                     f"ASSD {record['assd']:.2f} mm, volume {record['volume difference']:+.1f} %")
    if args.out:
        path = write_table(records, list(METRIC_COLUMNS), args.out)
        progress.result(path, kind="table")


def read_lesion_map(path, lesion_value: int = 4):
    """Binary lesions of a BrainSeg ``.seg.nrrd`` (its Lesion label) or of any label map (non-zero)."""
    import SimpleITK as sitk

    from ..io import load_volume
    from ..outputs import read_segmentation

    if str(path).lower().endswith(".seg.nrrd"):
        labels, names = read_segmentation(path)
        value = next((v for v, n in names.items() if n == "Lesion"), lesion_value)
        return sitk.Cast(labels == value, sitk.sitkUInt8)
    return sitk.Cast(load_volume(path, name="label map") != 0, sitk.sitkUInt8)


def _run_lesion(args, progress) -> None:
    from ..outputs import write_table
    from ..resample import resample_like
    from .lesion_metrics import LESION_METRIC_COLUMNS, lesion_metrics

    predicted = read_lesion_map(args.prediction)
    reference = resample_like(read_lesion_map(args.reference), predicted, is_label=True, default_value=0)
    record = lesion_metrics(predicted, reference, args.min_lesion_size)
    progress.log(f"Lesions: Dice {record['dice']:.3f}, TPR {record['tpr']:.3f}, PPV {record['ppv']:.3f}, "
                 f"HD95 {record['hd95']:.1f} mm, lesion-wise TPR {record['lesion-wise tpr']:.3f} / PPV "
                 f"{record['lesion-wise ppv']:.3f}, volume {record['volume difference']:+.1f} %")
    if args.out:
        path = write_table([record], list(LESION_METRIC_COLUMNS), args.out)
        progress.result(path, kind="table")
