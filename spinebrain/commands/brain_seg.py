"""``spinebrain brain-seg``: brain tissue (GM, WM, CSF) of one MR scan, with volumes.

Writes into ``--out`` (a folder): ``<name>.seg.nrrd`` (segments Grey matter, White matter,
Cerebrospinal fluid with the project's terminology and colours), ``<name>_volumes.csv`` (mL,
fractions of the intracranial volume) and, with ``--png``, ``<name>.png`` (an axial overview).
``<name>`` is the T1 file's name without its extension. Every input is read and checked before the
model loads; bad input is one sentence and exit code 2 with nothing written; results are staged and
moved in only on success, never over existing files without ``--overwrite``.
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..errors import InputError
from ..protocol import output_kind
from ..tasks import BRAIN_SEG

SEGMENTATION_SUFFIX = ".seg.nrrd"
TASKS = ("tissue",)


def add_arguments(parser) -> None:
    """Fill ``spinebrain brain-seg``'s parser (the task registry creates it, see :mod:`spinebrain.tasks`)."""
    parser.description = (
        "Segment brain tissue (grey matter, white matter, CSF) with a 3D U-Net trained on images synthesised from "
        "label maps (any MR contrast), and measure the volumes. " + RESEARCH_NOTICE)
    add = parser.add_argument
    add("--t1", required=True, metavar="IMAGE", help="the reference MR scan (T1-weighted, or any MR contrast)")
    add("--t2", metavar="IMAGE", help="T2 scan (checked; used by the lesion task, not by the tissue model)")
    add("--flair", metavar="IMAGE", help="FLAIR scan (checked; used by the lesion task, not by the tissue model)")
    add("--mask", metavar="IMAGE", help="brain mask (non-zero = brain); default: a skull-stripped input is used "
        "as it is, else the brain is found by the network")
    add("--out", dest="out_dir", required=True, metavar="DIR", help="output folder (created if missing)")
    add("--task", default="tissue", choices=TASKS, help="tissue (lesions come in a later version)")
    add("--model", help="model package id or folder (default: the installed brain-tissue model)")
    add("--n4", action="store_true", help="N4 bias-field correction first (default off: the model is trained with "
        "random bias fields; N4 adds about a minute on two cores)")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    add("--png", action="store_true", help="also write an axial overview picture")
    add("--overwrite", action="store_true", help="replace results that already exist in --out")
    parser.set_defaults(run=run)


def output_names(t1_path) -> tuple[str, str, str]:
    name = case_name(t1_path)
    return f"{name}{SEGMENTATION_SUFFIX}", f"{name}_volumes.csv", f"{name}.png"


def case_name(path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def run(args, progress) -> None:
    from ..brainseg.pipeline import check_input, load_tissue_model, mask_on_image, segment_tissue
    from ..device import select_device
    from ..io import load_volume
    from ..outputs import check_output_file, staged_outputs

    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the segmentation, volumes table and picture.")
    seg_name, table_name, png_name = output_names(args.t1)
    for name in (seg_name, table_name) + ((png_name,) if args.png else ()):
        check_output_file(out / name, args.overwrite)
    image = load_volume(args.t1, name="--t1 image")  # 2D or unreadable input fails here
    extras = {option: load_volume(path, name=f"--{option} image") for option, path in
              (("t2", args.t2), ("flair", args.flair)) if path}
    mask = mask_on_image(load_volume(args.mask, name="--mask"), image) if args.mask else None
    for option, scan in (("t1", image), *extras.items()):  # the plausibility hook, before the model loads
        check_input(scan, BRAIN_SEG.modalities, f"--{option} image")
    device = select_device(args.device)
    progress.update("load", 0.0, "loading the brain tissue model")
    model = load_tissue_model(args.model, device="cpu")
    progress.log(f"Model: {model.card.id}")
    result = segment_tissue(image, model, mask=mask, n4=args.n4, device=device, progress=progress, name="--t1 image")
    for warning in result.warnings:
        progress.log(f"Warning: {warning}")
    progress.log(f"Brain mask: {result.mask_source}")
    with staged_outputs(out, args.overwrite) as stage:
        written = write_results(image, result, stage.path(seg_name), stage.path(table_name),
                                stage.path(png_name) if args.png else None, title=case_name(args.t1))
    for path in written:
        final = stage.final(path)
        progress.result(final, kind=output_kind(final))
    progress.log("Wrote " + ", ".join(str(stage.final(p)) for p in written))


def write_results(image, result, seg_path: Path, table_path: Path, png_path: Path | None, title: str = "") -> list[Path]:
    """The segmentation, the volumes table and (optionally) the overview picture of one result."""
    from ..brainseg.quantify import VOLUME_COLUMNS, tissue_volumes
    from ..outputs import write_segmentation, write_table

    written = [write_segmentation(result.labels, result.names, seg_path),
               write_table(tissue_volumes(result.labels, result.names), list(VOLUME_COLUMNS), table_path)]
    if png_path is not None:
        from ..outputs import save_overview_png

        written.append(save_overview_png(image, png_path, label_image=result.labels, names=result.names,
                                         plane="axial", title=f"{title}: brain tissue ({result.model_id})"))
    return written
