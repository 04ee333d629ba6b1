"""The choices every module offers, filled the same way: model, device, Install dependencies, Load sample.

Runs in Slicer only (Qt); checked statically in CI. The lists come from
:mod:`spinebrain_slicer.choices` (the model registry through lazy imports, tested headless), so a
Slicer without torch still opens the module and offers the Install button.
"""

from __future__ import annotations

import logging

import slicer

from .choices import DEFAULT_MODEL, DEVICE_CHOICES, core_dependencies_installed, device_argument, model_argument, \
    model_choices

__all__ = ["DEFAULT_MODEL", "DEVICE_CHOICES", "chosen_device", "chosen_model", "core_dependencies_installed",
           "fill_model_selector", "load_spine_sample_into_views", "setup_install_button"]


def fill_model_selector(combo_box, task: str, region: str | None = None) -> None:
    """``default`` plus every installed model package of ``task`` (and ``region``); keeps the current choice."""
    _fill(combo_box, model_choices(task, region), combo_box.currentText)


def chosen_model(combo_box):
    """The model argument for the Logic: None for the default, else the package id."""
    return model_argument(combo_box.currentText)


def chosen_device(combo_box):
    return device_argument(combo_box.currentText)


def _fill(combo_box, items: list[str], current: str) -> None:
    was_blocked = combo_box.blockSignals(True)  # refilling is not a user choice (the parameter node keeps it)
    try:
        combo_box.clear()
        combo_box.addItems(items)
        combo_box.setCurrentIndex(max(combo_box.findText(current), 0))
    finally:
        combo_box.blockSignals(was_blocked)


def setup_install_button(button, on_installed=None) -> None:
    """Show ``button`` while torch / MONAI are missing; clicking it installs them (asking first)."""
    from .qt_helpers import dependencies_ready

    def install():
        if dependencies_ready(parent=slicer.util.mainWindow()):
            button.hide()
            if on_installed:
                on_installed()

    button.setVisible(not core_dependencies_installed())
    button.connect("clicked()", install)


def load_spine_sample_into_views(modality: str = "ct", view: str = "lumbar", seed: int = 0):
    """Generate a spine sample into the scene and show it; returns the sample's nodes (see samples.py)."""
    from .samples import load_spine_sample

    sample = load_spine_sample(slicer.mrmlScene, seed=seed, modality=modality, view=view)
    slicer.util.setSliceViewerLayers(background=sample["volume"], fit=True)
    logging.info("SlicerSpineBrain: sample %s %s loaded", modality, view)
    return sample
