"""What a module's selectors offer and what the user chose last, without Qt (tested headless).

The model list comes from the model registry (through the task registry's card tasks), so a newly
installed or trained package appears without code changes; the device list is the command line's
``--device`` choices. :class:`RememberedChoices` keeps chosen values between Slicer sessions in a
settings store with QSettings' ``contains`` / ``value`` / ``setValue`` / ``remove``
(:mod:`spinebrain_slicer.qt_parameters` passes ``qt.QSettings()``). The Qt side
(:mod:`spinebrain_slicer.qt_choices`) only fills the combo boxes from these lists.
"""

from __future__ import annotations

import importlib.util

DEFAULT_MODEL = "default"  # the installed default for the task (and region)
DEVICE_CHOICES = ("auto", "cpu", "cuda")  # a parameter node Choice: the connector fills the device box
CORE_PACKAGES = ("torch", "monai")
SETTINGS_GROUP = "SlicerSpineBrain"


def core_dependencies_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in CORE_PACKAGES)


def model_choices(task: str, region: str | None = None, registry=None) -> list[str]:
    """``default`` plus the id of every usable installed model package of ``task`` (and ``region``).

    Without torch / MONAI only ``default`` (the module still opens and offers Install dependencies).
    """
    if registry is None:
        if not core_dependencies_installed():
            return [DEFAULT_MODEL]
        from spinebrain.models.registry import ModelRegistry

        registry = ModelRegistry()
    return [DEFAULT_MODEL, *(entry.card.id for entry in registry.list_models(task=task, region=region))]


def model_argument(text: str) -> str | None:
    """The Logic's ``model`` argument for a selector's text: None for the default, else the package id."""
    return None if text in ("", DEFAULT_MODEL) else text


def device_argument(text: str) -> str | None:
    """The Logic's ``device`` argument: None lets the core choose (``auto``)."""
    return None if text in ("", "auto") else text


class RememberedChoices:
    """Plain-value parameters (str, bool, int, float) of one module, kept in a settings store between sessions."""

    def __init__(self, store, module_name: str, names=()):
        self.store, self.module_name, self.names = store, module_name, tuple(names)

    def key(self, name: str) -> str:
        return f"{SETTINGS_GROUP}/{self.module_name}/{name}"

    def restore(self, target, names=None) -> list[str]:
        """Set ``target``'s attributes ``names`` (default: all) from the store; the names restored.

        A stored value that no longer fits (another type, a choice no longer offered: the setter
        raises) is dropped from the store and the target keeps its value.
        """
        restored = []
        for name in self.names if names is None else names:
            if not self.store.contains(self.key(name)):
                continue
            try:
                setattr(target, name, as_type(self.store.value(self.key(name)), type(getattr(target, name))))
                restored.append(name)
            except Exception:  # noqa: BLE001 -- a stale or foreign setting: keep the default
                self.store.remove(self.key(name))
        return restored

    def remember(self, target) -> None:
        for name in self.names:
            self.store.setValue(self.key(name), getattr(target, name))


def as_type(value, kind):
    """A stored value as ``kind``: QSettings gives strings back on some platforms ("true", "0.5")."""
    if kind is bool:
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1")
    return kind(value)
