"""The MRML bridge: the only code converting between MRML nodes and the core's data.

Core side: SimpleITK images (LPS geometry), label images with ``{value: name}``, labelled RAS
points (:class:`spinebrain.points.LabelledPoint`) and records with :class:`spinebrain.tables.Column`.
MRML side: scalar volume, segmentation, point list and table nodes.

Everything runs on the slicer-core wheel as well as in Slicer: no ``slicer.mrmlScene``,
``slicer.app`` or Qt; every function takes the scene or the node. Functions that write a result
update the node they are given (same ID, content fully replaced) or create a new node with a
unique name, and touch no other node.
"""

from .markups import check_output_markups_node, markups_node_from_points, points_from_markups_node
from .segmentations import (
    get_segment_flag,
    labels_from_segmentation_node,
    register_segmentation_converters,
    segment_id_for_label,
    segmentation_node_from_labels,
    set_segment_complete,
    set_segment_flag,
    show_completeness,
)
from .storage import load_node, save_node, storage_node_for
from .tables import records_from_table_node, table_node_from_records
from .volumes import check_volume_node, grid_image, image_from_volume_node, volume_node_from_image

__all__ = [
    "check_output_markups_node",
    "check_volume_node",
    "get_segment_flag",
    "grid_image",
    "image_from_volume_node",
    "labels_from_segmentation_node",
    "load_node",
    "markups_node_from_points",
    "points_from_markups_node",
    "records_from_table_node",
    "register_segmentation_converters",
    "save_node",
    "segment_id_for_label",
    "segmentation_node_from_labels",
    "set_segment_complete",
    "set_segment_flag",
    "show_completeness",
    "storage_node_for",
    "table_node_from_records",
    "volume_node_from_image",
]
