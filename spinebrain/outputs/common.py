"""What every output writer shares: the software tag and an atomic text write."""

from __future__ import annotations

import os
from pathlib import Path

from .. import __version__
from ..io import atomic_path

SOFTWARE = f"SlicerSpineBrain {__version__}"


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically: a failure leaves any previous file untouched."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
