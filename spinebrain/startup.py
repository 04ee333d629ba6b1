"""Cold start of the inference commands: the scan is read while MONAI imports, and MONAI without the back-ends
only training and plotting use.

``import monai`` imports every MONAI submodule (its package init walks them), and with them, eagerly,
the optional back-ends they wrap: ignite (training engines and handlers), scikit-learn (one metric),
pandas (profiling tables), scipy.signal (two transforms), matplotlib (MONAI's plotting) and requests (its
downloads). No inference path uses these through MONAI, yet they cost about half of MONAI's import time
(4.4 s -> 2.2 s here). While MONAI imports they are hidden from the importing thread (MONAI then keeps its
stand-ins for them, what it uses when they are not installed); afterwards they import as usual, so the project's
own imports of them (the PNG overview's matplotlib) are unaffected.

torch and MONAI take seconds to import, holding the interpreter most of that time, while reading a scan mostly
does not (ITK's reader and the file checks let it go). So the command's one input file is read on a thread
meanwhile (:func:`spinebrain.io.prefetch_image`). The import itself stays on the main thread: a second thread
importing MONAI's packages beside the command's own imports can meet one of MONAI's circular imports half-way
(tried: "cannot import name 'Convolution' from partially initialized module").

Where every model of the command runs from its ONNX export on the CPU (the task's ``runs_without_torch``),
MONAI is not imported at all; the scan is still read ahead.

Only ``python -m spinebrain`` running an inference command does this (:func:`prepare_command`): a
process that may go on to train (``spinebrain train``, the test suite, Slicer) imports MONAI whole.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading

from .tasks import available_tasks

#: What MONAI imports eagerly that no inference path needs through MONAI.
UNUSED_AT_INFERENCE = ("ignite", "sklearn", "scipy.signal", "matplotlib", "pandas", "requests")
#: Commands that only run models (the pipeline of each task, and the demo).
INFERENCE_COMMANDS = frozenset([task.name for task in available_tasks()] + ["demo"])
#: Options after which the command line does no work (argparse prints and exits).
_PRINT_ONLY = ("-h", "--help", "--version")


class _HiddenFromThread(importlib.abc.MetaPathFinder):
    """An import finder that makes ``names`` (and their submodules) look not installed, to one thread only."""

    def __init__(self, names, thread: threading.Thread):
        self.names, self.thread = tuple(names), thread

    def find_spec(self, fullname, path=None, target=None):
        if threading.current_thread() is self.thread and any(
                fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None  # not ours: the next finder looks


def command_of(argv: list[str]) -> str | None:
    """The subcommand of a ``spinebrain`` command line (its first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def import_monai_for_inference() -> None:
    """Import MONAI with :data:`UNUSED_AT_INFERENCE` hidden from this thread (nothing to do when MONAI is imported
    already; a module imported already stays as it is)."""
    if "monai" in sys.modules:
        return
    hider = _HiddenFromThread(UNUSED_AT_INFERENCE, threading.current_thread())
    sys.meta_path.insert(0, hider)
    try:
        import monai  # noqa: F401
    finally:
        sys.meta_path.remove(hider)


def parse_command(argv: list[str]):
    """The command line's arguments, or None where it only prints (``--help``) or main will report a mistake."""
    if any(word in _PRINT_ONLY for word in argv):
        return None
    from .cli import build_parser, global_flags_first
    from .errors import SpineBrainError

    try:
        args, _unknown = build_parser().parse_known_args(global_flags_first(argv))
    except SpineBrainError:
        return None  # a mistake in the command line: main reports it
    return args


def prefetch_input(args) -> None:
    """Start reading the command's input scan, when it names exactly one image file (``inputs``); ``args`` from
    :func:`parse_command` (None: nothing to read)."""
    from .io import prefetch_image

    inputs = getattr(args, "inputs", None) or []
    if len(inputs) == 1:
        prefetch_image(inputs[0])


def needs_torch(command: str, args) -> bool:
    """Whether the command's models need torch: False only where its task says they all run from ONNX exports."""
    from .errors import InputError
    from .tasks import get_task

    try:
        task = get_task(command)
    except InputError:
        return True  # not a task's command (the demo)
    if task.runs_without_torch is None or args is None:
        return True
    return not task.entry("runs_without_torch")(getattr(args, "region", None) or "auto", getattr(args, "model", None),
                                                None, getattr(args, "device", None))


def prepare_command(argv: list[str]) -> None:
    """Before ``spinebrain``'s main, for a command that only runs models: read its scan ahead, import MONAI lean
    (not at all when its models run without torch)."""
    command = command_of(argv)
    if command in INFERENCE_COMMANDS:
        args = parse_command(argv)
        prefetch_input(args)
        if needs_torch(command, args):
            import_monai_for_inference()
