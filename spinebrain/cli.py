"""The ``spinebrain`` command line.

Each subcommand lives in its own module under :mod:`spinebrain.commands` and provides
``register(subparsers)``, which adds a parser whose defaults hold ``run=function(args, progress)``.
The function returns normally on success, raises :class:`~spinebrain.errors.InputError` for
unusable input; this module maps the outcome to the exit codes of :mod:`spinebrain.errors`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from . import RESEARCH_NOTICE, __version__
from .errors import EXIT_FAILED, EXIT_OK, SpineBrainError
from .protocol import Progress, cancel_on_terminate

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES = [
    "spinebrain.commands.info",
    "spinebrain.commands.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinebrain",
        description=(
            "Spine labeling, vertebra segmentation and brain segmentation from the command line -- "
            "the same pipelines the SlicerSpineBrain modules run. Outputs are files 3D Slicer opens "
            f"(.mrk.json, .seg.nrrd, .csv, .png). {RESEARCH_NOTICE}"
        ),
        epilog="Run 'spinebrain COMMAND --help' for the options of one command. Exit codes: 0 done, "
        "1 internal failure, 2 bad input, 3 cancelled.",
    )
    parser.add_argument("--version", action="version", version=f"spinebrain {__version__}")
    parser.add_argument(
        "--progress-json", action="store_true",
        help="print progress and results as JSON lines on stdout (used by Slicer's background runner)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_OK
    progress = Progress(json_lines=args.progress_json, quiet=args.quiet)
    try:
        with cancel_on_terminate():
            args.run(args, progress)
        code = EXIT_OK
    except SpineBrainError as error:
        code = error.exit_code
        _report(progress, code, str(error))
    except Exception as error:  # noqa: BLE001 -- last resort: say what broke, exit "failed"
        code = EXIT_FAILED
        _report(progress, code, f"Internal error: {error}", traceback.format_exc())
    finally:
        progress.close()
    progress.emit("done", code=code)
    return code


def _report(progress: Progress, code: int, message: str, details: str = "") -> None:
    if progress.json_lines:
        progress.emit("error", code=code, message=message, details=details)
    else:
        if details:
            print(details, file=sys.stderr)
        print(f"spinebrain: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
