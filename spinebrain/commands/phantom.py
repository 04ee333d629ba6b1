"""``spinebrain phantom spine|brain``: write one generated case in Slicer formats, to look at.

The files (volume, named segmentation, body-centre points, table with units, metadata, overview
picture) open in 3D Slicer by drag and drop; see :mod:`spinebrain.synth.cases`.
"""

from __future__ import annotations

from pathlib import Path

from .. import RESEARCH_NOTICE
from ..errors import InputError
from ..protocol import output_kind

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
    _common(spine)
    spine.add_argument("--modality", default="ct", choices=SPINE_MODALITIES, help="image type (default ct)")
    spine.add_argument("--view", default="lumbar", choices=SPINE_VIEWS, help="part of the spine (default lumbar)")
    spine.add_argument("--orientation", default="sagittal", choices=SPINE_ORIENTATIONS,
                       help="slice orientation of the acquisition (default sagittal)")
    spine.set_defaults(run=run_spine)

    brain = kinds.add_parser("brain", help="a synthetic brain MR scan with tissue and lesion labels")
    _common(brain)
    brain.add_argument("--contrasts", default="t1,flair",
                       help=f"comma-separated MR contrasts from {', '.join(BRAIN_CONTRASTS)} (default t1,flair)")
    brain.add_argument("--lesions", default="none", choices=BRAIN_LESIONS, help="lesions to add (default none)")
    brain.add_argument("--skull", action="store_true", help="keep a skull and scalp around the brain")
    brain.set_defaults(run=run_brain)


def _common(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same case (default 0)")
    parser.add_argument("--spacing", type=float, default=None,
                        help="isotropic voxel size in mm (default: drawn like a clinical scan for the spine, 1 mm for the brain)")


def run_spine(args, progress) -> None:
    from ..synth.cases import write_spine_case
    from ..synth.spine import generate_spine

    out = _output_folder(args.out)
    progress.update("generate", 0.05, f"generating a synthetic {args.view} spine ({args.modality})")
    case = generate_spine(args.seed, modality=args.modality, view=args.view, spacing=args.spacing,
                          orientation=args.orientation)
    progress.update("write", 0.7, f"writing the case to {out}")
    _announce(write_spine_case(case, out), progress)


def run_brain(args, progress) -> None:
    from ..synth.brain import generate_brain
    from ..synth.cases import write_brain_case

    out = _output_folder(args.out)
    contrasts = parse_contrasts(args.contrasts)
    lesions = None if args.lesions == "none" else args.lesions
    progress.update("generate", 0.05, f"generating a synthetic brain ({', '.join(contrasts)})")
    case = generate_brain(args.seed, contrasts=contrasts, lesions=lesions, skull=args.skull, spacing=args.spacing)
    progress.update("write", 0.7, f"writing the case to {out}")
    _announce(write_brain_case(case, out), progress)


def parse_contrasts(text: str) -> tuple[str, ...]:
    """``"t1,flair"`` -> ``("t1", "flair")``, checked against the contrasts the generator makes."""
    contrasts = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [c for c in contrasts if c not in BRAIN_CONTRASTS]
    if not contrasts or unknown:
        raise InputError(f"Unknown contrast {unknown[0] if unknown else '(none given)'!r} in --contrasts; "
                         f"use a comma-separated list of {', '.join(BRAIN_CONTRASTS)}.")
    return tuple(dict.fromkeys(contrasts))


def _output_folder(text: str) -> Path:
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the phantom's files.")
    return out


def _announce(paths: list[Path], progress) -> None:
    for path in paths:
        progress.result(path, kind=output_kind(path))
    progress.update("done", 1.0, f"wrote {len(paths)} files to {paths[0].parent}")
    progress.log("\n".join(["Phantom files (open them in 3D Slicer with drag and drop):", *[f"  {p}" for p in paths]]))
