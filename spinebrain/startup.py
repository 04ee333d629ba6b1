"""Cold start of the inference commands: MONAI without the back-ends only training and plotting use.

``import monai`` imports every MONAI submodule (its package init walks them), and with them, eagerly,
the optional back-ends they wrap: ignite (training engines and handlers), scikit-learn (one metric),
pandas (profiling tables), scipy.signal (two transforms) and matplotlib (MONAI's plotting). No inference
path uses these through MONAI, yet they cost about half of MONAI's import time (4.4 s -> 2.2 s here),
which is most of what a cold ``spinebrain spine-label`` spends before it reads the scan. Hiding them while
MONAI imports leaves MONAI's stand-ins for them (what it uses when they are not installed); they are
importable again right after, so the project's own imports of them (the PNG overview's matplotlib) are
unaffected.

Only ``python -m spinebrain`` running an inference command does this (:func:`prepare_command`): a
process that may go on to train (``spinebrain train``, the test suite, Slicer) imports MONAI whole.
"""

from __future__ import annotations

import sys

from .tasks import available_tasks

#: What MONAI imports eagerly that no inference path needs through MONAI.
UNUSED_AT_INFERENCE = ("ignite", "sklearn", "scipy.signal", "matplotlib", "pandas")
#: Commands that only run models (the pipeline of each task, and the demo).
INFERENCE_COMMANDS = frozenset([task.name for task in available_tasks()] + ["demo"])


def command_of(argv: list[str]) -> str | None:
    """The subcommand of a ``spinebrain`` command line (its first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def import_monai_for_inference() -> None:
    """Import MONAI with :data:`UNUSED_AT_INFERENCE` hidden (nothing to do when MONAI is imported already)."""
    if "monai" in sys.modules:
        return
    hidden = [name for name in UNUSED_AT_INFERENCE if name not in sys.modules]
    for name in hidden:  # None in sys.modules makes "import name" fail, as for a package not installed
        sys.modules[name] = None
    try:
        import monai  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def prepare_command(argv: list[str]) -> None:
    """Before ``spinebrain``'s main: the lean MONAI import when the command only runs models."""
    if command_of(argv) in INFERENCE_COMMANDS:
        import_monai_for_inference()
