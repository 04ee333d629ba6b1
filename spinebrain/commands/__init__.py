"""The ``spinebrain`` subcommands (one module each) and what several of them share."""

from __future__ import annotations

import shlex
import sys


def command_line() -> str:
    """The command as typed (``spinebrain ...``), for the model card."""
    return "spinebrain " + " ".join(shlex.quote(a) for a in sys.argv[1:])
