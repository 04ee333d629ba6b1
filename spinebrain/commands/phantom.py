"""``spinebrain phantom spine|brain``: write one generated case in Slicer formats, to look at.

The files (volume, named segmentation, body-centre points, table with units, metadata, overview
picture) open in 3D Slicer by drag and drop; see :mod:`spinebrain.synth.cases`. They are staged
beside ``--out`` and moved in only when the case is complete, never over existing files unless
``--overwrite``.
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..errors import InputError
from ..outputs import check_output_folder, staged_outputs
from ..protocol import output_kind
from ..validate import argparse_type, check_seed, check_spacing_option

SPINE_MODALITIES = ("ct", "t1", "t2", "random")
SPINE_VIEWS = ("lumbar", "cervical", "thoracic", "whole", "short", "random")
SPINE_ORIENTATIONS = ("sagittal", "axial", "coronal", "oblique", "random")
BRAIN_CONTRASTS = ("t1", "t2", "flair", "t1c")
BRAIN_LESIONS = ("none", "ms", "tumour")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="generate a synthetic spine or brain case and write it in Slicer formats",
        description="Generate a synthetic spine or brain scan with exact reference labels and write what "
        "3D Slicer opens: volume(s), .seg.nrrd segmentations with names, .mrk.json points (spine), a .csv "
        "table with units, metadata .json and an overview .png. " + RESEARCH_NOTICE,
    )
    kinds = parser.add_subparsers(title="kind", metavar="KIND", dest="kind", required=True)

    spine = kinds.add_parser("spine", help="a synthetic spine CT or MR scan with named vertebrae")
    _common(spine, "isotropic voxel size in mm (default: drawn at random like a clinical spine scan)")
    spine.add_argument("--modality", default="ct", choices=SPINE_MODALITIES, help="image type (default ct)")
    spine.add_argument("--view", default="lumbar", choices=SPINE_VIEWS, help="part of the spine (default lumbar)")
    spine.add_argument("--orientation", default="sagittal", choices=SPINE_ORIENTATIONS,
                       help="slice orientation of the acquisition (default sagittal)")
    spine.set_defaults(run=run_spine)

    brain = kinds.add_parser("brain", help="a synthetic brain MR scan with tissue and lesion labels")
    _common(brain, "isotropic voxel size in mm (default 1 mm)")
    brain.add_argument("--contrasts", default="t1,flair",
                       help=f"comma-separated MR contrasts from {', '.join(BRAIN_CONTRASTS)} (default t1,flair)")
    brain.add_argument("--lesions", default="none", choices=BRAIN_LESIONS, help="lesions to add (default none)")
    brain.add_argument("--skull", action="store_true", help="keep a skull and scalp around the brain")
    brain.set_defaults(run=run_brain)


def _common(parser, spacing_help: str) -> None:
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--seed", type=argparse_type(check_seed), default=0,
                        help="random seed from 0 to 2**32-1; the same seed gives the same case (default 0)")
    parser.add_argument("--spacing", type=argparse_type(check_spacing_option), default=None, help=spacing_help)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files of an earlier run in --out (default: refuse and write nothing)")


def run_spine(args, progress) -> None:
    from ..synth.cases import write_spine_case
    from ..synth.spine import generate_spine

    out = _output_folder(args.out)
    progress.update("generate", 0.05, f"generating a synthetic {args.view} spine ({args.modality})")
    case = generate_spine(args.seed, modality=args.modality, view=args.view, spacing=args.spacing,
                          orientation=args.orientation)
    progress.update("write", 0.7, f"writing the case to {out}")
    with staged_outputs(out, args.overwrite) as stage:
        written = write_spine_case(case, stage.path(""))
    _announce([stage.final(p) for p in written], out, progress)


def run_brain(args, progress) -> None:
    from ..synth.brain import generate_brain
    from ..synth.cases import write_brain_case

    out = _output_folder(args.out)
    contrasts = parse_contrasts(args.contrasts)
    lesions = None if args.lesions == "none" else args.lesions
    progress.update("generate", 0.05, f"generating a synthetic brain ({', '.join(contrasts)})")
    case = generate_brain(args.seed, contrasts=contrasts, lesions=lesions, skull=args.skull, spacing=args.spacing)
    progress.update("write", 0.7, f"writing the case to {out}")
    with staged_outputs(out, args.overwrite) as stage:
        written = write_brain_case(case, stage.path(""))
    _announce([stage.final(p) for p in written], out, progress)


def parse_contrasts(text: str) -> tuple[str, ...]:
    """``"t1,flair"`` -> ``("t1", "flair")``, checked against the contrasts the generator makes."""
    contrasts = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [c for c in contrasts if c not in BRAIN_CONTRASTS]
    if not contrasts or unknown:
        raise InputError(f"Unknown contrast {unknown[0] if unknown else '(none given)'!r} in --contrasts; "
                         f"use a comma-separated list of {', '.join(BRAIN_CONTRASTS)}.")
    return tuple(dict.fromkeys(contrasts))


def _output_folder(text: str) -> Path:
    return check_output_folder(text)  # existing files are refused when the run moves its files in


def _announce(paths: list[Path], out: Path, progress) -> None:
    for path in paths:
        progress.result(path, kind=output_kind(path))
    progress.update("done", 1.0, f"wrote {len(paths)} files to {out}")
    progress.log("\n".join(["Phantom files (open them in 3D Slicer with drag and drop):", *[f"  {p}" for p in paths]]))
