"""The ``spinebrain`` command line.

Each subcommand lives in its own module under :mod:`spinebrain.commands` and provides
``register(subparsers)``, which adds a parser whose defaults hold ``run=function(args, progress)``.
The function returns normally on success, raises :class:`~spinebrain.errors.InputError` for
unusable input; this module maps the outcome to the exit codes of :mod:`spinebrain.errors`.
A command-line mistake is bad input too: with ``--progress-json`` it is reported as an ``error``
event like any other, so Slicer's runner shows argparse's message instead of an empty failure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from . import RESEARCH_NOTICE, __version__
from .errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, InputError, SpineBrainError
from .protocol import Progress, cancel_on_terminate

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES = [
    "spinebrain.commands.info",
    "spinebrain.commands.demo",
    "spinebrain.commands.phantom",
    "spinebrain.commands.realism",
    "spinebrain.commands.task",  # spinebrain spine-label ... (every available task of spinebrain.tasks)
    "spinebrain.commands.train",
    "spinebrain.commands.evaluate",
]


class UsageError(InputError):
    """The command line itself is wrong (unknown option, missing argument)."""

    def __init__(self, message: str, usage: str = "", prog: str = "spinebrain"):
        super().__init__(message)
        self.usage, self.prog = usage, prog


class _ArgumentParser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of exiting, so :func:`main` reports it like other errors."""

    def error(self, message):
        raise UsageError(message, self.format_usage(), self.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
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
    argv = global_flags_first(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return _usage_error(error, json_lines="--progress-json" in argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_OK
    return execute(args.run, args, Progress(json_lines=args.progress_json, quiet=args.quiet))


#: Options of the program that users also type after the subcommand (``spinebrain demo --progress-json``).
GLOBAL_FLAGS = ("--progress-json", "--quiet")


def exit_process(code: int, skip_teardown: bool = False) -> None:
    """End a command with ``code``; without the interpreter's teardown under torchrun with several processes, or
    when ``skip_teardown`` (a finished inference command: everything is written and closed by then).

    After a finished gloo run, static destructors at interpreter exit sometimes find a worker thread
    still joinable and abort ("terminate called without an active exception", SIGABRT): the work is
    done and written, yet torchrun reports the job failed. An inference command has nothing left to do at exit,
    yet tearing down torch and MONAI's modules takes 0.7-1 s of its cold start. Flushing and ``os._exit`` skip both.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not skip_teardown:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code or 0))


def global_flags_first(argv: list[str]) -> list[str]:
    """Move the global flags before the subcommand, wherever they were typed (not after a ``--``)."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    return flags + [a for a in argv[:end] if a not in GLOBAL_FLAGS] + argv[end:]


def execute(run, args, progress: Progress) -> int:
    """Call ``run(args, progress)`` under the protocol: cancel on terminate, map errors to exit codes.

    Always ends with a ``done`` event carrying the exit code (after an ``error`` event on failure).
    """
    try:
        with cancel_on_terminate():
            run(args, progress)
        code = EXIT_OK
    except SpineBrainError as error:
        code = error.exit_code
        _report(progress, code, str(error))
    except KeyboardInterrupt:  # Ctrl+C outside the signal handler (e.g. not the main thread): a cancel too
        code = EXIT_CANCELLED
        _report(progress, code, "Cancelled.")
    except Exception as error:  # noqa: BLE001 -- last resort: say what broke, exit "failed"
        cause = _project_error_behind(error)
        if cause is not None:  # e.g. a cancel raised inside a MONAI transform, which wraps it in a RuntimeError
            code = cause.exit_code
            _report(progress, code, str(cause))
        else:
            code = EXIT_FAILED
            _report(progress, code, f"Internal error: {error}", traceback.format_exc())
    finally:
        progress.close()
    progress.emit("done", code=code)
    return code


def _project_error_behind(error: BaseException) -> SpineBrainError | None:
    """The project's own error (cancel, bad input) that a library wrapped in its exception, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, SpineBrainError):
            return error
        error = error.__cause__ or error.__context__
    return None


def _usage_error(error: UsageError, json_lines: bool) -> int:
    progress = Progress(json_lines=json_lines)
    if json_lines:
        progress.emit("error", code=error.exit_code, message=f"{error.prog}: {error}", details=error.usage)
    else:  # the same text argparse prints
        print(f"{error.usage}{error.prog}: error: {error}", file=sys.stderr)
    progress.emit("done", code=error.exit_code)
    return error.exit_code


def _report(progress: Progress, code: int, message: str, details: str = "") -> None:
    if progress.json_lines:
        progress.emit("error", code=code, message=message, details=details)
    else:
        if details:
            print(details, file=sys.stderr)
        print(f"spinebrain: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
