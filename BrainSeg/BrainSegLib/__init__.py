"""BrainSeg's logic without Qt (tested on the slicer-core wheel); the widget is BrainSeg.py."""
