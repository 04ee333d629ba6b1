"""Rebuild a network from its model card (architecture name + constructor kwargs), then load weights.

No pickled code is involved: the card names a class of ``monai.networks.nets`` (``"BasicUNet"``)
or a dotted class path inside ``spinebrain`` or ``monai`` (``"spinebrain.networks.X"``), and the
weights are a verified state dict.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ModelError
from .card import ModelCard
from .registry import load_model_package

if TYPE_CHECKING:
    import torch

#: Packages a dotted architecture path may come from (importing anything else could run code).
ALLOWED_PACKAGES = ("spinebrain", "monai")


def network_class(architecture: str) -> type[torch.nn.Module]:
    import torch

    if "." in architecture:
        module_name, _, class_name = architecture.rpartition(".")
        if module_name.split(".")[0] not in ALLOWED_PACKAGES:
            raise ModelError(
                f"Network architecture {architecture!r} is outside {' and '.join(ALLOWED_PACKAGES)}; "
                "a model card may only name classes from those packages."
            )
    else:
        module_name, class_name = "monai.networks.nets", architecture
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise ModelError(
            f"Network architecture {architecture!r} is not available in this version; "
            "update SlicerSpineBrain or use a model made for this version."
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ModelError(f"{architecture!r} is not a network class; fix the model card's network entry.")
    return cls


def build_network(card: ModelCard) -> torch.nn.Module:
    """A freshly initialised network as the card describes it (no weights loaded)."""
    architecture = card.network["architecture"]
    kwargs = card.network.get("kwargs", {})
    try:
        return network_class(architecture)(**kwargs)
    except (TypeError, ValueError) as error:
        raise ModelError(f"Cannot build network {architecture} of model {card.id!r} from its card ({error}).") from None


def load_network(path_or_id=None, task: str | None = None, registry=None, region: str | None = None,
                 device: torch.device | str = "cpu") -> tuple[ModelCard, torch.nn.Module]:
    """Verified card + network with its weights, in eval mode, on ``device``."""
    card, state_dict = load_model_package(path_or_id, task=task, registry=registry, region=region)
    network = build_network(card)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise ModelError(
            f"The weights of model {card.id!r} do not fit the network its card describes ({first_line}); "
            "the package is inconsistent: re-create or re-train it."
        ) from None
    return card, network.to(device).eval()
