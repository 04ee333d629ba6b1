"""Moved to :mod:`spinebrain.outputs.pictures` (outputs mirror ``spinebrain_slicer.bridge``); kept for old imports."""

from .outputs.pictures import MAX_PIXELS, PLANE_AXES, PLANE_LETTERS, Panel, save_montage_png, save_overview_png

__all__ = ["MAX_PIXELS", "PLANE_AXES", "PLANE_LETTERS", "Panel", "save_montage_png", "save_overview_png"]
