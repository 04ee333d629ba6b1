""""Load sample": generate a synthetic case straight into a scene -- no download, no files.

Each module puts one of these behind its "Load sample" button. The case comes from the same
generators as the training data (:mod:`spinebrain.synth`), so it has exact reference labels:
a spine sample gets a volume, a segmentation with one named segment per vertebra (incomplete ones
tagged and semi-transparent), the vertebral body centres as a point list and the per-vertebra
table; a brain sample gets one volume per contrast, the tissue and lesion segmentations and the
volumes table (mL). Runs on the slicer-core wheel: the scene is passed in.
"""

from __future__ import annotations

from spinebrain.synth.cases import VERTEBRA_COLUMNS, VOLUME_COLUMNS, vertebra_records, volume_records

from .bridge import (
    markups_node_from_points,
    segment_id_for_label,
    segmentation_node_from_labels,
    set_segment_complete,
    table_node_from_records,
    volume_node_from_image,
)

CT_BONE_WINDOW = (1800.0, 400.0)  # (window, level) in HU: vertebrae and discs both readable


def load_spine_sample(scene, seed: int = 0, modality: str = "ct", view: str = "lumbar", spacing=None) -> dict:
    """Generate a synthetic spine scan into ``scene``.

    Returns ``{"volume", "segmentation", "markups", "table"}`` nodes and the generated ``"case"``
    (:class:`spinebrain.synth.spine.SpineCase`). ``spacing`` (mm) defaults to a clinical-like grid.
    """
    from spinebrain.synth.spine import generate_spine

    case = generate_spine(seed, modality=modality, view=view, spacing=spacing, orientation="sagittal")
    title = f"Sample spine {case.metadata['modality'].upper()}"
    volume = volume_node_from_image(scene, case.image, title)
    if case.metadata["modality"] == "ct":
        _set_window(volume, *CT_BONE_WINDOW)
    segmentation = segmentation_node_from_labels(scene, case.labels, case.label_names(), reference_volume_node=volume,
                                                 name=f"{title} vertebrae")
    for record in case.vertebrae:
        set_segment_complete(segmentation, segment_id_for_label(record.label), record.complete)
    markups = markups_node_from_points(scene, case.points, name=f"{title} body centres")
    table = table_node_from_records(scene, vertebra_records(case), VERTEBRA_COLUMNS, name=f"{title} vertebrae table")
    return {"volume": volume, "segmentation": segmentation, "markups": markups, "table": table, "case": case}


def load_brain_sample(scene, seed: int = 0, contrasts=("t1", "flair"), lesions: str | None = "ms", spacing=None) -> dict:
    """Generate a synthetic brain MR into ``scene``.

    Returns ``{"volumes": {contrast: node}, "tissue", "lesions" (None without lesions), "table"}``
    and the generated ``"case"`` (:class:`spinebrain.synth.brain.BrainCase`).
    """
    from spinebrain.synth.brain import generate_brain

    case = generate_brain(seed, contrasts=contrasts, lesions=lesions, spacing=spacing)
    volumes = {contrast: volume_node_from_image(scene, image, f"Sample brain {contrast.upper()}")
               for contrast, image in case.images.items()}
    reference = next(iter(volumes.values()))
    tissue = segmentation_node_from_labels(scene, case.tissue, case.tissue_names, reference_volume_node=reference,
                                           name="Sample brain tissue")
    lesion_node = None
    if case.lesion_names:
        lesion_node = segmentation_node_from_labels(scene, case.lesions, case.lesion_names,
                                                    reference_volume_node=reference, name="Sample brain lesions")
    table = table_node_from_records(scene, volume_records(case), VOLUME_COLUMNS, name="Sample brain volumes")
    return {"volumes": volumes, "tissue": tissue, "lesions": lesion_node, "table": table, "case": case}


def _set_window(volume_node, window: float, level: float) -> None:
    display = volume_node.GetDisplayNode()
    if display is not None:
        display.AutoWindowLevelOff()
        display.SetWindowLevel(window, level)
