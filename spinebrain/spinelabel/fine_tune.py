"""Fine-tuning a SpineLabel detector pair (``spinebrain train spine-label --init-from MODEL``).

A fine-tuned labelling model must read scans exactly as the one it starts from: the same detector
kind (the paper's two patch CNNs, not the heatmap U-Net), the same region and anchor, the same pixel
size and patch sizes, since the detectors are patch classifiers at a fixed pixel size. Only the
weights change (the shape model is fitted again from the new cases). :func:`check_start_card` says in
one sentence what differs, before anything is generated or trained. No torch import here, so the
Slicer Logic can run the check in its own process.
"""

from __future__ import annotations

from ..errors import InputError
from .architectures import DETECTOR_PAIR as PAIR_ARCHITECTURE

TASK = "spine-label"


def check_start_card(card, region: str, pixel_mm: float, patch: int, anchor_patch: int) -> None:
    """InputError when ``card`` cannot be fine-tuned into a ``region`` paper-pair model of these sizes."""
    if card.task != TASK:
        raise InputError(f"Model {card.id!r} is a {card.task} model, not a vertebra labelling model; choose a "
                         "spine-label model or train from scratch.")
    if card.network.get("architecture") != PAIR_ARCHITECTURE:
        raise InputError(f"Model {card.id!r} is a {card.network.get('architecture')} detector; fine-tuning from the "
                         "scene trains the paper's two patch detectors, so choose such a model or train from scratch.")
    if card.region != region:
        raise InputError(f"Model {card.id!r} labels the {card.region} spine, not the {region} spine; choose the region "
                         f"{card.region} or a {region} model.")
    kwargs = card.network.get("kwargs", {})
    sizes = (int(kwargs.get("vertebra", {}).get("patch", -1)), int(kwargs.get("anchor", {}).get("patch", -1)))
    if sizes != (patch, anchor_patch):
        raise InputError(f"Model {card.id!r} has {sizes[0]}/{sizes[1]}-pixel patches; the trainer uses "
                         f"{patch}/{anchor_patch} for the {region} spine, so it cannot be fine-tuned; train from "
                         "scratch.")
    if abs(float(card.spacing[0]) - pixel_mm) > 1e-6:
        raise InputError(f"Model {card.id!r} reads {card.spacing[0]} mm pixels; the trainer uses {pixel_mm} mm for "
                         f"the {region} spine, so it cannot be fine-tuned; train from scratch.")


def read_start_card(model: str, registry=None):
    """The card of the model to fine-tune (id or package folder); InputError when there is none."""
    from ..errors import ModelError
    from ..models import ModelCard
    from ..models.registry import resolve_package

    try:
        return ModelCard.read(resolve_package(model, TASK, registry))
    except ModelError as error:
        raise InputError(f"The model to fine-tune cannot be used: {error}") from None
