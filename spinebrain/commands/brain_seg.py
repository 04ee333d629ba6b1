"""``spinebrain brain-seg``: brain tissue (GM, WM, CSF) and / or MS lesions of one case, with volumes.

One case: ``--t1`` / ``--flair`` / ``--t2`` / ``--t1c`` (at least one; the lesion model's card says
which it needs), ``--out`` a folder. Writes ``<name>.seg.nrrd`` (segments Grey matter, White
matter, Cerebrospinal fluid, Lesion with the project's terminology and colours),
``<name>_volumes.csv`` (mL, fractions of the intracranial volume), ``<name>_lesions.csv`` for the
lesion tasks (per lesion: volume, centroid, location) and, with ``--png``, ``<name>.png``.
``<name>`` is the reference scan's file name without its extension (the T1, else the FLAIR...).

Batch: ``--input-dir DIR`` with one sub-folder per subject; in each, the sequences are matched by
file name (:func:`match_sequences`: a name containing ``flair``, ``t1c`` / ``t1ce`` / ``t1post`` /
``t1gd``, ``t1``, ``t2`` or ``mask`` / ``brainmask`` as a word); ``--out`` receives one sub-folder
per subject and one ``summary.csv`` (volumes, lesion count and load per subject).

Every input is read and checked before a model loads; bad input is one sentence and exit code 2
with nothing written; results are staged and moved in only on success, never over existing files
without ``--overwrite``.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import RESEARCH_NOTICE
from ..errors import InputError
from ..protocol import output_kind

SEGMENTATION_SUFFIX = ".seg.nrrd"
SEQUENCE_OPTIONS = ("t1", "flair", "t2", "t1c")
_PATTERNS = (("T1C", r"t1c|t1ce|t1gd|t1post|t1_?contrast"), ("FLAIR", r"flair|fla"), ("T1", r"t1w?"),
             ("T2", r"t2w?"), ("MASK", r"mask|brainmask|brain_mask"))


def add_arguments(parser) -> None:
    """Fill ``spinebrain brain-seg``'s parser (the task registry creates it, see :mod:`spinebrain.tasks`)."""
    from ..brainseg.case import TASK_CHOICES
    from ..brainseg.preprocess import NORMALISATIONS

    parser.description = (
        "Segment brain tissue (grey matter, white matter, CSF; any MR contrast) and MS / white-matter lesions (FLAIR, "
        "with T1 / T2 when given) with 3D U-Nets trained on images synthesised from label maps, and measure the "
        "volumes and lesions. " + RESEARCH_NOTICE)
    add = parser.add_argument
    add("--t1", metavar="IMAGE", help="T1-weighted scan (the reference grid when given; any MR contrast for tissue)")
    add("--flair", metavar="IMAGE", help="FLAIR scan (required by the lesion model)")
    add("--t2", metavar="IMAGE", help="T2-weighted scan (optional input of the lesion model)")
    add("--t1c", metavar="IMAGE", help="contrast-enhanced T1 scan (checked and aligned; not used by today's models)")
    add("--input-dir", metavar="DIR", help="batch: one sub-folder per subject, sequences matched by file name")
    add("--mask", metavar="IMAGE", help="brain mask (non-zero = brain); default: a skull-stripped input is used "
        "as it is, else the brain is found by the tissue network")
    add("--out", dest="out_dir", required=True, metavar="DIR", help="output folder (created if missing)")
    add("--task", default="tissue", choices=TASK_CHOICES, help="tissue (default), lesion, or both")
    add("--model", help="tissue model package id or folder (default: the installed brain-tissue model)")
    add("--lesion-model", help="lesion model package id or folder (default: the installed brain-lesion model)")
    add("--n4", action="store_true", help="N4 bias-field correction first (default off: the models are trained "
        "with random bias fields; N4 adds about a minute on two cores)")
    add("--normalise", default="zscore", choices=NORMALISATIONS, help="intensity normalisation within the brain: "
        "zscore (default, as in training) or nyul (piecewise-linear histogram standardisation)")
    add("--no-register", dest="register", action="store_false", help="do not register sequences that are on "
        "another grid (default: rigid registration to the reference); they must then share world coordinates")
    add("--no-refine", dest="refine", action="store_false", help="tissue: the network's argmax alone (default: "
        "refined by a Gaussian mixture fitted to the scan with the network as prior)")
    add("--min-lesion-size", type=float, metavar="MM3", help="drop lesions smaller than this (mm³; default: the "
        "lesion model card's, 10 mm³)")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    add("--png", action="store_true", help="also write an axial overview picture")
    add("--overwrite", action="store_true", help="replace results that already exist in --out")
    parser.set_defaults(run=run)


def case_name(path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def output_names(name: str, task: str, png: bool) -> list[str]:
    names = [f"{name}{SEGMENTATION_SUFFIX}", f"{name}_volumes.csv"]
    names += [f"{name}_lesions.csv"] if task != "tissue" else []
    return names + ([f"{name}.png"] if png else [])


def match_sequences(folder: Path) -> dict[str, Path]:
    """Sequence name (T1, FLAIR, T2, T1C, MASK) -> file of ``folder``, from the file names (see the module doc)."""
    from ..batch import _IMAGE_FILE_SUFFIXES

    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_IMAGE_FILE_SUFFIXES)):
        words = re.split(r"[^a-z0-9]+", case_name(path).lower())
        kind = next((k for k, pattern in _PATTERNS if any(re.fullmatch(pattern, w) for w in words)), None)
        if kind is None:
            continue
        if kind in found:
            raise InputError(f"{folder.name} has two {kind} files ({found[kind].name}, {path.name}); keep one per "
                             "sequence in each subject folder.")
        found[kind] = path
    if not set(found) - {"MASK"}:
        raise InputError(f"No sequence found in {folder.name}; name the files with t1, flair, t2 or t1c "
                         "(e.g. T1.nii.gz, FLAIR.nii.gz).")
    return found


def run(args, progress) -> None:
    from ..brainseg.case import BrainSegOptions

    options = BrainSegOptions(task=args.task, n4=args.n4, normalisation=args.normalise, register=args.register,
                              refine=args.refine, minimum_lesion_mm3=args.min_lesion_size)
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the segmentation, volumes table and picture.")
    if args.input_dir:
        return _run_batch(args, options, progress)
    paths = {option.upper(): getattr(args, option) for option in SEQUENCE_OPTIONS if getattr(args, option)}
    if not paths:
        raise InputError("Give at least one scan (--t1, --flair, --t2 or --t1c), or --input-dir for a batch.")
    _run_one(paths, args.mask, options, args, out, progress)


def _run_one(paths: dict[str, str], mask_path, options, args, out: Path, progress, batch=False) -> dict:
    """Check, load models, segment and write one case into ``out``; returns the summary fields."""
    from ..brainseg.case import reference_name
    from ..brainseg.pipeline import looks_skull_stripped
    from ..device import select_device
    from ..io import load_volume
    from ..outputs import check_output_file, staged_outputs

    name = case_name(paths[reference_name(paths)])
    files = output_names(name, options.task, args.png)
    if not batch:
        for file_name in files:
            check_output_file(out / file_name, args.overwrite)
    sequences = {kind: load_volume(path, name=f"--{kind.lower()} image") for kind, path in paths.items()}
    mask = load_volume(mask_path, name="--mask") if mask_path else None
    _check_before_models(sequences, mask, options)
    reference = sequences[reference_name(sequences)]
    need_tissue = mask is None and not looks_skull_stripped(reference)
    result = _segment(sequences, mask, options, args, select_device(args.device), need_tissue, progress)
    if batch:
        written = write_results(reference, result, out, name, args.png)
    else:
        with staged_outputs(out, args.overwrite) as stage:
            written = write_results(reference, result, stage.path(""), name, args.png)
        written = [stage.final(p) for p in written]
        for path in written:
            progress.result(path, kind=output_kind(path))
        progress.log("Wrote " + ", ".join(str(p) for p in written))
    return _summary_fields(result, written)


def _check_before_models(sequences, mask, options) -> None:
    """The plausibility checks that need no model: 3D MR, not CT; a mask that overlaps the reference."""
    from ..brainseg.case import reference_name
    from ..brainseg.pipeline import check_input, mask_on_image

    for kind, image in sequences.items():
        check_input(image, ("T1", "T2", "FLAIR"), f"--{kind.lower()} image")
    if mask is not None:
        mask_on_image(mask, sequences[reference_name(sequences)])
    if options.task != "tissue" and "FLAIR" not in sequences:
        raise InputError("The lesion task needs a FLAIR scan; give it with --flair.")


def _segment(sequences, mask, options, args, device, need_tissue, progress):
    from ..brainseg.case import load_models, segment_case

    progress.update("load", 0.0, "loading the BrainSeg models")
    models = load_models(options.task, args.model, args.lesion_model, device="cpu", need_tissue=need_tissue)
    result = segment_case(sequences, models, options, mask=mask, device=device, progress=progress)
    progress.log(f"Models: {result.model_id}; brain mask: {result.mask_source}; reference: {result.reference}")
    for warning in result.warnings:
        progress.log(f"Warning: {warning}")
    return result


def write_results(image, result, folder: Path, name: str, png: bool) -> list[Path]:
    """The segmentation, the volumes table, the lesion table (lesion tasks) and the picture of one result."""
    from ..brainseg.lesions import LESION_COLUMNS
    from ..brainseg.quantify import VOLUME_COLUMNS
    from ..outputs import write_segmentation, write_table

    folder = Path(folder)
    written = [write_segmentation(result.labels, result.names, folder / f"{name}{SEGMENTATION_SUFFIX}"),
               write_table(result.volumes, list(VOLUME_COLUMNS), folder / f"{name}_volumes.csv")]
    if 4 in result.names:
        written.append(write_table(result.lesions, list(LESION_COLUMNS), folder / f"{name}_lesions.csv"))
    if png:
        from ..outputs import save_overview_png

        written.append(save_overview_png(image, folder / f"{name}.png", label_image=result.labels,
                                         names=result.names, plane="axial",
                                         title=f"{name}: BrainSeg ({result.model_id})"))
    return written


def _summary_fields(result, written) -> dict:
    from ..brainseg.lesions import lesion_summary

    fields = {"reference": result.reference, "mask": result.mask_source, "models": result.model_id}
    for record in result.volumes:
        fields[f"{record['structure']} (mL)"] = round(float(record["volume"]), 2)
    if 4 in result.names:
        summary = lesion_summary(result.lesions)
        fields["lesions"] = summary["lesion count"]
        fields["lesion load (mL)"] = round(summary["total lesion load"], 3)
    fields["outputs"] = list(written)
    return fields


def _run_batch(args, options, progress) -> None:
    from ..batch import Case, check_output_folder, run_batch

    root = Path(args.input_dir)
    if not root.is_dir():
        raise InputError(f"--input-dir {root} is not a folder; give a folder with one sub-folder per subject.")
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subjects:
        raise InputError(f"{root} has no subject sub-folders; put each subject's sequences in its own folder.")
    cases = [Case(p.name, p) for p in subjects]
    check_output_folder(Path(args.out_dir), args.overwrite, [c.name for c in cases] + ["summary.csv"])

    def process(case, folder: Path) -> dict:
        found = match_sequences(case.path)
        mask = found.pop("MASK", None)
        return _run_one({k: str(v) for k, v in found.items()}, str(mask) if mask else None, options, args,
                        folder, progress, batch=True)

    report = run_batch(cases, process, args.out_dir, progress, overwrite=args.overwrite)
    report.raise_for_failures()
