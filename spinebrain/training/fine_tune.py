"""Fine-tuning (transfer learning, seed 001): start a training run from an installed model's weights.

A fine-tuned model must be used exactly like the one it started from, so it keeps that model's label
set, input channels, voxel spacing, intensity normalisation, patch size and network; the only thing
that changes is the weights. :func:`check_compatible` says, in one sentence, what differs when a
request asks for anything else (a different label set, another spacing ...), before any training.
"""

from __future__ import annotations

from ..errors import InputError
from ..models import ModelCard


def load_start_model(model: str, task: str, registry=None) -> tuple[ModelCard, dict]:
    """The verified card and weights of the model to fine-tune (an id of the registry or a package folder)."""
    from ..errors import ModelError
    from ..models.registry import load_model_package

    try:
        card, weights = load_model_package(model, registry=registry)
    except ModelError as error:
        raise InputError(f"The model to fine-tune cannot be used: {error}") from None
    if card.task != task:
        raise InputError(f"Model {card.id!r} is a {card.task} model and cannot be fine-tuned into a {task} model; "
                         f"choose a {task} model or train from scratch.")
    if card.extra.get("mask_normalisation"):  # its pipeline normalises inside a mask, which a datalist run does not
        raise InputError(f"Model {card.id!r} normalises intensities within a brain mask in its own pipeline, which "
                         "datalist training does not reproduce; fine-tune it with 'spinebrain train brain-seg "
                         "--init-weights' instead.")
    return card, weights


def check_compatible(start: ModelCard, labels: dict | None, modalities: list | None,
                     spacing: list | None = None, patch_size: list | None = None,
                     normalisation: dict | None = None, network: dict | None = None) -> None:
    """InputError when the requested training differs from ``start`` in what fine-tuning keeps.

    ``None`` means "not requested" (take the model's). Labels compare by value and name.
    """
    if labels is not None and _labels(labels) != _labels(start.labels):
        raise InputError(f"The cases' labels {_shown(labels)} differ from those of model {start.id!r} "
                         f"{_shown(start.labels)}; fine-tuning keeps the model's label set, so rename the "
                         "segments to match or train from scratch.")
    if modalities is not None and len(modalities) != len(start.modalities):
        raise InputError(f"The cases have {len(modalities)} image channel(s), model {start.id!r} takes "
                         f"{len(start.modalities)} ({', '.join(start.modalities)}); give the same sequences or "
                         "train from scratch.")
    for name, asked, kept in (("spacing", spacing, start.spacing), ("patch size", patch_size, start.patch_size)):
        if asked is not None and [float(v) for v in asked] != [float(v) for v in kept]:
            raise InputError(f"Fine-tuning keeps the {name} of model {start.id!r} ({kept}); drop the {name} "
                             f"option ({list(asked)}) or train from scratch.")
    if normalisation is not None and normalisation != start.normalisation:
        raise InputError(f"Fine-tuning keeps the intensity normalisation of model {start.id!r} "
                         f"({start.normalisation}); drop the normalisation option or train from scratch.")
    if network is not None and network != start.network:
        raise InputError(f"Fine-tuning keeps the network of model {start.id!r} ({start.network['architecture']}); "
                         "drop the network options or train from scratch.")


def load_into(network, weights: dict, start: ModelCard) -> None:
    """Copy ``weights`` into ``network`` (strict: every tensor must fit)."""
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise InputError(f"The weights of model {start.id!r} do not fit the network to train "
                         f"({str(error).splitlines()[0]}); fine-tune with the model's own network.") from None


def _labels(labels: dict) -> dict[int, str]:
    return {int(value): str(name).strip().lower() for value, name in labels.items()}


def _shown(labels: dict) -> str:
    return "(" + ", ".join(f"{int(v)}: {n}" for v, n in sorted(labels.items(), key=lambda item: int(item[0]))) + ")"
