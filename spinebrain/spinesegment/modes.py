"""The task registry's ``load_models`` / ``run_case`` for SpineSegment: one entry point, two modes.

``mode`` "2d" (MR vertebral bodies, slice-wise) or "3d" (CT vertebrae, iterative with completeness)
chooses the pipeline when loading; running follows the loaded model's kind, so the CLI and the
Slicer Logic call the same two functions whatever the mode.
"""

from __future__ import annotations

from ..errors import InputError
from . import pipeline2d, pipeline3d

MODES = ("2d", "3d")


def load_models(region=None, model=None, device="auto", mode: str = "2d"):
    """The model of ``mode``: the installed default, or a package id / folder."""
    if mode == "3d":
        return pipeline3d.load_models(region, model, device=device)
    if mode == "2d":
        return pipeline2d.load_models(region, model, device=device)
    raise InputError(f"Unknown SpineSegment mode {mode!r}; choose one of {', '.join(MODES)}.")


def run_case(image, models, fixed_points=(), device=None, progress=None, direction: str = "down", **options):
    """One scan in memory with a loaded model (2D or 3D); SpineLabel points name the vertebrae."""
    if isinstance(models, pipeline3d.Model3D):
        return pipeline3d.run_case(image, models, fixed_points, device=device, progress=progress,
                                   direction=direction)
    return pipeline2d.run_case(image, models, fixed_points, device=device, progress=progress)
