"""What the modules' selectors offer (from the model and task registries) and the choices kept between sessions.

spinebrain_slicer.choices has no Qt; the Qt files only put these lists into combo boxes. The
model lists are read from real model packages (the bundled ones, and packages written here).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spinebrain.models.registry import ModelRegistry
from spinebrain_slicer.choices import (
    DEFAULT_MODEL, RememberedChoices, as_type, device_argument, model_argument, model_choices,
)

REPO = Path(__file__).resolve().parents[1]


def bundled_registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(bundled_dir=REPO / "Resources" / "Models", user_dir=tmp_path / "none")


def test_model_selector_lists_the_default_then_the_tasks_installed_models(tmp_path):
    registry = bundled_registry(tmp_path)
    spine = model_choices("spine-label", registry=registry)
    assert spine[0] == DEFAULT_MODEL and {"spine-label-lumbar", "spine-label-cervical"} <= set(spine[1:])
    assert "brain-tissue-synth" not in spine
    assert "spine-label-cervical" not in model_choices("spine-label", "lumbar", registry=registry)
    # a command name stands for its finer card tasks (spine-segment serves spine-segment-2d cards)
    assert "spine-segment-mr-2d" in model_choices("spine-segment", registry=registry)
    empty = ModelRegistry(bundled_dir=tmp_path / "no-bundled", user_dir=tmp_path / "no-user")
    assert model_choices("spine-label", registry=empty) == [DEFAULT_MODEL]


def test_selector_texts_become_the_logics_arguments():
    assert model_argument(DEFAULT_MODEL) is None and model_argument("") is None
    assert model_argument("spine-label-lumbar") == "spine-label-lumbar"
    assert device_argument("auto") is None and device_argument("cuda") == "cuda" and device_argument("cpu") == "cpu"


class TextSettings:
    """A settings store that gives every value back as text, as QSettings does with an INI file."""

    def __init__(self):
        self.values = {}

    def contains(self, key):
        return key in self.values

    def value(self, key):
        return self.values[key]

    def setValue(self, key, value):  # noqa: N802 -- QSettings' name
        self.values[key] = str(value).lower() if isinstance(value, bool) else str(value)

    def remove(self, key):
        self.values.pop(key, None)


class Parameters:
    """Like a parameter node wrapper: typed values, and a Choice that refuses what it does not offer."""

    REGIONS = ("auto", "lumbar", "cervical")

    def __init__(self):
        self.model, self.auto_relabel, self.threshold, self._region = DEFAULT_MODEL, False, 0.5, "auto"

    @property
    def region(self):
        return self._region

    @region.setter
    def region(self, value):
        if value not in self.REGIONS:
            raise ValueError(f"{value!r} is not a choice")
        self._region = value


def test_remembered_choices_come_back_typed_in_a_new_session():
    store = TextSettings()
    names = ("region", "model", "auto_relabel", "threshold")
    first = Parameters()
    first.region, first.model, first.auto_relabel, first.threshold = "lumbar", "spine-label-lumbar", True, 0.7
    RememberedChoices(store, "SpineLabel", names).remember(first)
    assert store.values["SlicerSpineBrain/SpineLabel/auto_relabel"] == "true"

    later = Parameters()  # a new scene or session
    assert RememberedChoices(store, "SpineLabel", names).restore(later) == list(names)
    assert (later.region, later.model, later.auto_relabel, later.threshold) == ("lumbar", "spine-label-lumbar", True,
                                                                                0.7)
    other_module = Parameters()
    assert RememberedChoices(store, "BrainSeg", names).restore(other_module) == []  # kept per module


def test_a_stale_remembered_choice_is_dropped_and_the_default_kept():
    store = TextSettings()
    store.setValue("SlicerSpineBrain/SpineLabel/region", "thoracic")  # a region a later version no longer offers
    store.setValue("SlicerSpineBrain/SpineLabel/threshold", "high")
    target = Parameters()
    assert RememberedChoices(store, "SpineLabel", ("region", "threshold")).restore(target) == []
    assert target.region == "auto" and target.threshold == 0.5 and store.values == {}


@pytest.mark.parametrize("stored, kind, expected", [("true", bool, True), ("false", bool, False), (True, bool, True),
                                                    ("1", bool, True), ("3", int, 3), ("0.25", float, 0.25)])
def test_stored_text_is_read_as_the_parameters_type(stored, kind, expected):
    assert as_type(stored, kind) == expected and type(as_type(stored, kind)) is kind
