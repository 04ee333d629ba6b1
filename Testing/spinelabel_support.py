"""The shipped SpineLabel models for tests: loaded once per call, the test skipped where one is not installed."""

from __future__ import annotations

import pytest

from spinebrain.errors import ModelError
from spinebrain.models import ModelRegistry

SHIPPED = "spine-label-lumbar-heatmap"


def shipped_lumbar_default():
    if not any(e.card.id == SHIPPED for e in ModelRegistry().list_models()):
        pytest.skip(f"{SHIPPED} is not installed")
    from spinebrain.spinelabel.pipeline import load_spine_label_model

    return load_spine_label_model("lumbar", SHIPPED, device="cpu")


def shipped_whole():
    from spinebrain.spinelabel.pipeline import load_spine_label_model

    try:
        return load_spine_label_model("whole", device="cpu")
    except ModelError:
        pytest.skip("no whole-spine model installed")
