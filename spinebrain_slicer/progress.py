"""Progress of in-process work for a Slicer widget: the core's Progress, forwarded to a callback.

Both live in the core (:mod:`spinebrain.protocol`) so the Python API takes a callable too; kept
here under their old import path.
"""

from __future__ import annotations

from spinebrain.protocol import CallbackProgress, as_progress

__all__ = ["CallbackProgress", "as_progress"]
