"""Label image (one integer value per structure) <-> segmentation node, one segment per value.

Segments get their name, colour and standard terminology from :func:`spinebrain.anatomy.structure`
and share one binary-labelmap layer holding the original label values, so a ``.seg.nrrd`` written
by Slicer keeps them (``SegmentN_LabelValue``) and ``slicerio`` reads the same values back.
The label value is also kept in the tag ``SpineBrain.LabelValue``, which survives editing in the
Segment Editor (that may renumber the layers) and saving as ``.seg.nrrd``.

Segment IDs are ``Segment_<label value>`` (:func:`segment_id_for_label`), as the CLI's
``.seg.nrrd`` writer (:mod:`spinebrain.outputs`) names them, so a result keeps its IDs whether it
came in through a file or in process, and when it is redone.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from spinebrain.anatomy import structure
from spinebrain.errors import InputError
from spinebrain.geometry import ijk_to_ras_matrix, set_geometry_from_ijk_to_ras
from spinebrain.validate import check_label_map

from .nodes import array_to_matrix, ijk_to_ras_of, output_node
from .volumes import check_volume_node, grid_image

SEGMENTATION = "vtkMRMLSegmentationNode"
TAG_PREFIX = "SpineBrain."
LABEL_VALUE_TAG = TAG_PREFIX + "LabelValue"
COMPLETE_KEY = "Complete"
INCOMPLETE_OPACITY = 0.3  # incomplete vertebrae stay visible but clearly set apart


def binary_labelmap_name() -> str:
    return slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


def register_segmentation_converters() -> None:
    """Register Slicer's labelmap <-> closed-surface conversion rules once (idempotent).

    The Slicer application does this when its Segmentations module starts; the slicer-core wheel
    does not. A segmentation copies the registered rules when it is created, so this runs on
    import of the bridge, before any segmentation node exists.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for rule_class in (
        slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
        slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
    ):
        if rule_class.__name__ not in registered:
            factory.RegisterConverterRule(rule_class())


def segmentation_node_from_labels(
    scene,
    label_image: sitk.Image,
    names: dict[int, str],
    reference_volume_node=None,
    node=None,
    name: str = "Segmentation",
):
    """Fill ``node`` (or a new segmentation node) with one segment per non-zero label value.

    ``names`` maps label values to segment names; values without a name become ``Label <n>``,
    named values absent from the image become empty segments. With ``reference_volume_node`` the
    label image must lie on its grid, and the segmentation takes it as reference geometry.
    A given node's previous segments are all replaced; its ID and name stay.
    """
    values = _label_values_in(label_image)
    if reference_volume_node is not None:
        check_label_map(label_image, grid_image(reference_volume_node))
    all_values = sorted(set(values) | {int(v) for v in names})
    segment_names = {value: names.get(value) or f"Label {value}" for value in all_values}
    _check_unique(segment_names.values())
    if any(value <= 0 for value in all_values):
        raise InputError("Label values must be positive whole numbers (0 is background).")

    register_segmentation_converters()
    node = output_node(scene, SEGMENTATION, name, node, kind="segmentation")
    # on the reference grid, take its exact matrix: Slicer then sees identical geometries
    matrix = ijk_to_ras_matrix(label_image) if reference_volume_node is None else ijk_to_ras_of(reference_volume_node)
    labelmap = _oriented_image(label_image, matrix, max(all_values, default=1))
    segmentation = node.GetSegmentation()
    was_modifying = node.StartModify()
    try:
        segmentation.RemoveAllSegments()
        segmentation.SetSourceRepresentationName(binary_labelmap_name())
        if reference_volume_node is not None:
            node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        else:
            segmentation.SetConversionParameter(
                slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
                slicer.vtkSegmentationConverter.SerializeImageGeometry(labelmap),
            )
        for value in all_values:
            # every segment holds the same labelmap object: Slicer keeps them in one shared layer
            segmentation.AddSegment(_new_segment(segment_names[value], value, labelmap), segment_id_for_label(value))
    finally:
        node.EndModify(was_modifying)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def segment_id_for_label(value: int) -> str:
    """ID of the segment holding label ``value`` in segmentations written by this project."""
    return f"Segment_{int(value)}"


def _label_values_in(label_image: sitk.Image) -> list[int]:
    if label_image.GetDimension() != 3 or label_image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("The label map must be a single-component 3D image.")
    array = sitk.GetArrayViewFromImage(label_image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise InputError("The label map holds non-integer values; a label map must hold whole numbers.")
    values = np.unique(array)
    if values.size and values[0] < 0:
        raise InputError("The label map holds negative values; label values must be 0 (background) or positive.")
    return [int(v) for v in values if v != 0]


def _check_unique(segment_names) -> None:
    seen = set()
    for segment_name in segment_names:
        if segment_name in seen:
            raise InputError(f"Two label values are both named '{segment_name}'; give each structure its own name.")
        seen.add(segment_name)


def _oriented_image(label_image: sitk.Image, ijk_to_ras, max_value: int):
    """The label image as a vtkOrientedImageData (smallest unsigned type that holds the values)."""
    dtype = _label_dtype(max_value)
    array = sitk.GetArrayViewFromImage(label_image).astype(dtype)
    labelmap = slicer.vtkOrientedImageData()
    labelmap.SetDimensions(*label_image.GetSize())
    labelmap.AllocateScalars(numpy_support.get_vtk_array_type(np.dtype(dtype)), 1)
    numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())[:] = array.ravel()
    labelmap.SetImageToWorldMatrix(array_to_matrix(ijk_to_ras))
    return labelmap


def _label_dtype(max_value: int):
    return np.uint8 if max_value <= 255 else np.uint16 if max_value <= 65535 else np.int32


def _new_segment(segment_name: str, value: int, labelmap):
    info = structure(segment_name)
    segment = slicer.vtkSegment()
    segment.SetName(segment_name)
    segment.SetNameAutoGenerated(False)
    segment.SetColor(*info.color)
    segment.SetColorAutoGenerated(False)
    if info.code:  # unknown names have no code: leave Slicer's default terminology
        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), info.terminology_entry())
    segment.SetLabelValue(value)
    segment.SetTag(LABEL_VALUE_TAG, str(value))
    segment.AddRepresentation(binary_labelmap_name(), labelmap)
    return segment


def labels_from_segmentation_node(segmentation_node, reference_volume_node) -> tuple[sitk.Image, dict[int, str]]:
    """Export all segments as one label image on the reference volume's grid, with value -> name.

    Label values: the ``SpineBrain.LabelValue`` tag where present, else the VerSe value of a
    vertebra name (e.g. ``L3`` -> 22), else the next free number. Where segments overlap, the
    later segment wins.
    """
    if segmentation_node is None or not segmentation_node.IsA(SEGMENTATION):
        raise InputError("Select a segmentation node to export.")
    check_volume_node(reference_volume_node)
    segmentation = segmentation_node.GetSegmentation()
    segment_ids = list(segmentation.GetSegmentIDs())
    if not segment_ids:
        raise InputError(
            f"The segmentation '{segmentation_node.GetName()}' has no segments; add or load segments first."
        )
    register_segmentation_converters()
    if not segmentation.ContainsRepresentation(binary_labelmap_name()):
        if not segmentation_node.CreateBinaryLabelmapRepresentation():
            raise InputError(
                f"The segmentation '{segmentation_node.GetName()}' could not be converted to a labelmap; "
                "create its binary labelmap representation in the Segmentations module."
            )
    values = _export_values(segmentation, segment_ids)
    merged = _merged_labelmap(segmentation_node, reference_volume_node, segment_ids)
    lookup = np.zeros(len(segment_ids) + 1, dtype=_label_dtype(max(values)))
    lookup[1:] = values  # merged labelmap numbers segments 1..n in the order given
    image = sitk.GetImageFromArray(lookup[merged])
    set_geometry_from_ijk_to_ras(image, ijk_to_ras_of(reference_volume_node))
    names = {value: segmentation.GetSegment(sid).GetName() for value, sid in zip(values, segment_ids)}
    return image, names


def _export_values(segmentation, segment_ids) -> list[int]:
    values: dict[str, int] = {}
    for sid in segment_ids:
        tagged = _tag(segmentation.GetSegment(sid), LABEL_VALUE_TAG)
        if tagged is not None and tagged.isdigit() and int(tagged) > 0 and int(tagged) not in values.values():
            values[sid] = int(tagged)
    for sid in segment_ids:
        known = structure(segmentation.GetSegment(sid).GetName()).label
        if sid not in values and known is not None and known not in values.values():
            values[sid] = known
    next_free = 1
    for sid in segment_ids:
        if sid not in values:
            while next_free in values.values():
                next_free += 1
            values[sid] = next_free
    return [values[sid] for sid in segment_ids]


def _merged_labelmap(segmentation_node, reference_volume_node, segment_ids) -> np.ndarray:
    ids = vtk.vtkStringArray()
    for sid in segment_ids:
        ids.InsertNextValue(sid)
    merged = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GenerateMergedLabelmapInReferenceGeometry(
        segmentation_node, reference_volume_node, ids, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, merged
    )
    expected = reference_volume_node.GetImageData().GetExtent()
    if tuple(merged.GetExtent()) != tuple(expected):
        raise RuntimeError(f"merged labelmap extent {merged.GetExtent()} differs from the reference extent {expected}")
    dims = merged.GetDimensions()
    return numpy_support.vtk_to_numpy(merged.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])


def _segment(segmentation_node, segment_id: str):
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(f"The segmentation '{segmentation_node.GetName()}' has no segment '{segment_id}'.")
    return segment


def _tag(segment, key: str) -> str | None:
    value = vtk.reference("")
    return str(value) if segment.GetTag(key, value) else None


def set_segment_flag(segmentation_node, segment_id: str, key: str, value) -> None:
    """Store ``value`` in the segment's tag ``SpineBrain.<key>`` (bools as ``true``/``false``).

    Tags are saved in ``.seg.nrrd`` files and scenes.
    """
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    _segment(segmentation_node, segment_id).SetTag(TAG_PREFIX + key, text)


def get_segment_flag(segmentation_node, segment_id: str, key: str) -> str | None:
    """The text stored by :func:`set_segment_flag`, or None where the segment has no such tag."""
    return _tag(_segment(segmentation_node, segment_id), TAG_PREFIX + key)


def set_segment_complete(segmentation_node, segment_id: str, complete: bool) -> None:
    """Tag a segment complete/incomplete and show an incomplete one semi-transparent.

    Opacity lives in the display node (saved with the scene, not in ``.seg.nrrd``); after loading
    a ``.seg.nrrd``, call :func:`show_completeness` to show the tags again.
    """
    set_segment_flag(segmentation_node, segment_id, COMPLETE_KEY, bool(complete))
    _show_complete(segmentation_node, segment_id, complete)


def show_completeness(segmentation_node) -> None:
    """Apply the semi-transparent look to every segment tagged incomplete."""
    for segment_id in segmentation_node.GetSegmentation().GetSegmentIDs():
        flag = get_segment_flag(segmentation_node, segment_id, COMPLETE_KEY)
        if flag is not None:
            _show_complete(segmentation_node, segment_id, flag == "true")


def _show_complete(segmentation_node, segment_id: str, complete: bool) -> None:
    display = segmentation_node.GetDisplayNode()
    if display is None:
        return
    opacity = 1.0 if complete else INCOMPLETE_OPACITY
    display.SetSegmentOpacity3D(segment_id, opacity)
    display.SetSegmentOpacity2DFill(segment_id, opacity)


register_segmentation_converters()
