"""``spinebrain evaluate brain-seg``: compare a tissue segmentation with a reference, per class.

Both are label maps with 1 CSF, 2 GM, 3 WM (a ``.seg.nrrd`` written by ``spinebrain brain-seg``, or a
NIfTI / NRRD label map); the reference is brought onto the prediction's grid (nearest neighbour).
Writes a table (Dice, HD95 and ASSD in mm, volumes and their difference) with ``--out`` and prints it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def add_arguments(parser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--prediction", required=True, help="tissue segmentation (.seg.nrrd or label map)")
    parser.add_argument("--reference", required=True, help="reference label map (1 CSF, 2 GM, 3 WM)")
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
    predicted, reference = read_tissue_map(args.prediction), read_tissue_map(args.reference)
    reference = resample_like(reference, predicted, is_label=True, default_value=0)
    records = tissue_metrics(predicted, reference)
    for record in records:
        progress.log(f"{record['structure']}: Dice {record['dice']:.3f}, HD95 {record['hd95']:.1f} mm, "
                     f"ASSD {record['assd']:.2f} mm, volume {record['volume difference']:+.1f} %")
    if args.out:
        path = write_table(records, list(METRIC_COLUMNS), args.out)
        progress.result(path, kind="table")
