"""``spinebrain demo``: the README's first command, runnable on a fresh machine with no data.

Generates a synthetic lumbar CT (or reads the user's scan with ``--input``), reads it back the
way a user's file is read, resamples it to 1 mm, and writes what 3D Slicer opens: the volumes,
the reference vertebra segmentation (.seg.nrrd), the vertebra centres (.mrk.json), a table with
units (.csv) and an overview picture (.png).
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..io import load_volume, write_image
from ..resample import resample_to_spacing

DEMO_SPACING_MM = (1.0, 1.0, 1.0)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the demo on a generated scan (no data needed) and write Slicer-format outputs",
        description="Generate a synthetic lumbar CT with known vertebrae (or read your own scan with "
        "--input), resample it to 1 mm and write Slicer-format outputs and an overview PNG into --out. "
        + RESEARCH_NOTICE,
    )
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--input", help="use this scan (NIfTI, NRRD, MHA or DICOM folder) instead of a generated one")
    parser.add_argument("--series", help="DICOM series UID when --input is a folder with several series")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated scan (default 0)")
    parser.set_defaults(run=run)


def run(args, progress) -> None:
    out = Path(args.out)
    if args.input:
        progress.update("read", 0.1, f"reading {args.input}")
        image, case = load_volume(args.input, args.series), None
    else:
        image, case = _generated_scan(args.seed, out, progress)
    progress.update("resample", 0.4, "resampling to 1 mm isotropic")
    resampled = resample_to_spacing(image, DEMO_SPACING_MM)
    written = [write_image(resampled, out / "scan_1mm.nrrd")]
    if case is not None:
        written += _write_reference(case, out, progress)
    progress.update("picture", 0.9, "drawing the overview picture")
    written.append(_overview(image, case, out / "overview.png"))
    for path in written:
        progress.result(path, kind=_kind(path))
    progress.update("done", 1.0, f"wrote {len(written)} files to {out}")
    progress.log("\n".join(["Demo outputs (open them in 3D Slicer with drag and drop):", *[f"  {p}" for p in written]]))


def _generated_scan(seed: int, out: Path, progress):
    from ..synth.spine import generate_spine

    progress.update("generate", 0.05, "generating a synthetic lumbar CT")
    case = generate_spine(seed=seed, modality="ct", view="lumbar", orientation="sagittal")
    source = write_image(case.image, out / "scan.nrrd")
    progress.update("read", 0.3, f"reading {source.name} back")
    return load_volume(source), case


def _write_reference(case, out: Path, progress) -> list[Path]:
    from ..anatomy import vertebra_name
    from ..outputs import write_markups, write_segmentation, write_table
    from ..tables import Column

    progress.update("write", 0.6, "writing reference vertebrae")
    names = {v.label: vertebra_name(v.label) for v in case.vertebrae}
    columns = [
        Column("name", "text"), Column("complete", "bool"), Column("volume", "float", "mm³"),
        Column("R", "float", "mm"), Column("A", "float", "mm"), Column("S", "float", "mm"),
    ]
    records = [
        {"name": v.name, "complete": v.complete, "volume": v.volume_mm3,
         "R": v.centroid_ras[0], "A": v.centroid_ras[1], "S": v.centroid_ras[2]}
        for v in case.vertebrae
    ]
    return [
        write_segmentation(case.labels, names, out / "vertebrae.seg.nrrd"),
        write_markups(case.points, out / "vertebra_centres.mrk.json", name="Vertebra centres"),
        write_table(records, columns, out / "vertebrae.csv"),
    ]


def _overview(image, case, path: Path) -> Path:
    from ..pictures import save_overview_png

    if case is None:
        return save_overview_png(image, path, title="Input scan")
    names = {v.label: v.name for v in case.vertebrae}
    return save_overview_png(image, path, points=case.points, label_image=case.labels, names=names,
                             title="Synthetic lumbar CT with reference vertebrae")


def _kind(path: Path) -> str:
    name = path.name
    for suffix, kind in ((".seg.nrrd", "segmentation"), (".mrk.json", "markups"), (".csv", "table"),
                         (".png", "picture")):
        if name.endswith(suffix):
            return kind
    return "volume"
