"""Result files that 3D Slicer opens natively; one module per kind, like :mod:`spinebrain_slicer.bridge`.

    * :mod:`.markups` -- ``.mrk.json`` point lists (written in LPS, as Slicer writes them; read in LPS or RAS)
    * :mod:`.segmentations` -- ``.seg.nrrd`` segmentations and NIfTI label maps with a names sidecar
    * :mod:`.tables` -- ``.csv`` / ``.tsv`` tables with Slicer's schema sidecar
    * :mod:`.pictures` -- overview PNGs and montages
    * :mod:`.staging` -- where a run writes: a temporary folder beside the destination whose files
      move in only when the run succeeds, never over an existing file unless asked (``--overwrite``)

Research notice
    Every file carries :data:`spinebrain.RESEARCH_NOTICE`: a top-level ``"notice"`` key in
    ``.mrk.json`` (the schema allows extra properties; Slicer ignores it), a
    ``SpineBrain_Notice`` header field in ``.seg.nrrd``, a ``"notice"`` key in the label-map
    sidecar, the description of the first column in the table schema sidecar and the footer of
    every picture.

All writes are atomic (:func:`spinebrain.io.atomic_path`): a failed write leaves any previous
file untouched and no temporary files behind. ``from spinebrain.outputs import write_markups``
(and the other names below) is the public way in.
"""

from .common import SOFTWARE, write_text
from .markups import MARKUPS_SCHEMA, read_markups, write_markups
from .segmentations import (
    LABEL_VALUE_TAG,
    label_map_sidecar,
    read_label_map,
    read_segmentation,
    write_label_map,
    write_segmentation,
)
from .staging import StagedOutputs, check_output_file, check_output_folder, staged_outputs
from .tables import read_table, table_schema_path, write_table

_PICTURES = ("Panel", "save_montage_png", "save_overview_png")


def __getattr__(name):
    """The picture writers import matplotlib, so they load on first use, not with every command."""
    if name in _PICTURES:
        from . import pictures

        return getattr(pictures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LABEL_VALUE_TAG", "MARKUPS_SCHEMA", "SOFTWARE", "Panel", "StagedOutputs", "check_output_file",
    "check_output_folder", "label_map_sidecar", "read_label_map", "read_markups", "read_segmentation",
    "read_table", "save_montage_png", "save_overview_png", "staged_outputs", "table_schema_path",
    "write_label_map", "write_markups", "write_segmentation", "write_table", "write_text",
]
