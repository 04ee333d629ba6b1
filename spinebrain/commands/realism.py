"""``spinebrain realism spine|brain``: put generated and real cases side by side.

Writes a montage PNG (real row over generated row), intensity histograms per tissue with a
statistics table, and (spine) vertebra sizes per level against real masks and published
morphometry, as CSV with units plus a plot. See :mod:`spinebrain.synth.realism`.
"""

from __future__ import annotations

import sys

from .. import RESEARCH_NOTICE
from ..errors import InputError
from ..outputs import check_output_folder, staged_outputs
from ..protocol import output_kind


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "realism",
        help="compare generated cases with real ones: montage, intensity histograms, vertebra sizes",
        description="Generate a few synthetic cases at a coarse grid and compare them with the real cases of the "
        "real-data folder: a PNG montage (real vs generated, same modality), intensity histograms per tissue, "
        "and for the spine vertebra sizes per level against real masks and published morphometry (CSV with "
        "units + PNG). Without the real-data folder the report holds generated cases only. " + RESEARCH_NOTICE,
    )
    parser.add_argument("kind", choices=("spine", "brain"), help="which generator to check")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--data", default=None,
                        help="real-data folder (default: $SPINEBRAIN_TEST_DATA, else ../shared/data beside the repository)")
    parser.add_argument("--cases", type=int, default=None,
                        help="generated cases per kind (default 3 for the spine, 1 for the brain)")
    parser.add_argument("--spacing", type=float, default=2.0, help="voxel size of the generated cases in mm (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier report in --out (default: refuse and write nothing)")
    parser.set_defaults(run=run)


def run(args, progress) -> None:
    from ..synth.realism import brain_report, spine_report

    cases = args.cases if args.cases is not None else (3 if args.kind == "spine" else 1)
    if cases < 1:
        raise InputError(f"--cases {cases} is too small; generate at least one case.")
    if not 0.5 <= args.spacing <= 6.0:
        raise InputError(f"--spacing {args.spacing:g} mm is outside 0.5-6 mm; use e.g. 2.")
    out = check_output_folder(args.out)
    report_function = spine_report if args.kind == "spine" else brain_report
    with staged_outputs(out, args.overwrite) as stage:  # the report appears whole or not at all
        report = report_function(stage.path(""), data_dir=args.data, cases=cases, spacing=args.spacing,
                                 progress=progress)
    for note in report.notes:
        progress.log(note)
    for path in report.files:
        progress.result(stage.final(path), kind=output_kind(path))
    text = "\n".join([*report.summary, *(f"Note: {n}" for n in report.notes[:1]), f"Report written to {out}"])
    if progress.json_lines:
        progress.log(text)
    else:
        progress.close()
        print(text, file=sys.stdout, flush=True)
