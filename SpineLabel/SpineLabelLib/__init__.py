"""SpineLabel's MRML-side logic (no Qt): runs in Slicer and on the slicer-core wheel.

Slicer puts the module folder (SpineLabel/) on sys.path, so the module file imports this package
as ``SpineLabelLib``; the tests do the same (see Testing/test_spinelabel_logic.py).
"""

from .logic import REGION_CHOICES, NodeState, SpineLabelLogic

__all__ = ["REGION_CHOICES", "NodeState", "SpineLabelLogic"]
