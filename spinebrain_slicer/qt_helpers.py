"""Slicer-side glue for the dependency installer: check, ask, install, report (runs in Slicer only).

All decisions are in :mod:`dependencies`; this file only connects them to Slicer's dialogs, to
``slicer.util.pip_install`` and to the PyTorch extension. A module widget calls
:func:`dependencies_ready` before its first run (e.g. from its Apply or Install button).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import slicer

from . import dependencies

WINDOW_TITLE = "SlicerSpineBrain"


def current_environment() -> dependencies.EnvironmentInfo:
    """This Slicer's Python environment, with the running Slicer's version."""
    version = f"{slicer.app.majorVersion}.{slicer.app.minorVersion}"
    return dependencies.EnvironmentInfo.current(slicer_version=version)


def slicer_pip_install(requirements: list[str], constraints: Path) -> None:
    """Install with Slicer's pip wrapper, passing the constraints file the way this Slicer accepts it."""
    if importlib.util.find_spec("slicer.packaging") is not None:  # Slicer 5.11+: constraints is an argument
        slicer.util.pip_install(requirements, constraints=str(constraints))
    else:  # Slicer 5.10: the list goes to `pip install` as it is
        slicer.util.pip_install([*requirements, "--constraint", str(constraints)])


def install_torch_with_extension(version_requirement: str):
    """Install torch through the PyTorch extension; returns the torch module, or None if it was aborted."""
    import PyTorchUtils  # the PyTorch extension's module; the plan only asks for this when it is present

    logic = PyTorchUtils.PyTorchUtilsLogic()
    # We asked the user already; the extension chooses the CPU / CUDA build for this machine.
    return logic.installTorch(askConfirmation=False, torchVersionRequirement=version_requirement)


def dependencies_ready(parent=None) -> bool:
    """Make sure torch, MONAI and the rest are installed; ask before a large download.

    Returns True when everything can be used now; False when the user declined, an install failed
    (an error dialog says why), Slicer itself must be updated, or Slicer must be restarted first.
    """
    plan = dependencies.plan_install(environment=current_environment())
    if plan.nothing_to_do:
        return True
    if plan.problems:
        slicer.util.errorDisplay(plan.user_message(), windowTitle=WINDOW_TITLE, parent=parent)
        return False
    if plan.needs_confirmation and not slicer.util.confirmOkCancelDisplay(
        plan.user_message(), windowTitle=WINDOW_TITLE, parent=parent
    ):
        logging.info("SlicerSpineBrain: installation of Python packages declined")
        return False
    try:
        with slicer.util.tryWithErrorDisplay("Installing Python packages for SlicerSpineBrain failed.", waitCursor=True):
            if not _execute(plan):
                return False
    except Exception:  # already shown to the user by tryWithErrorDisplay
        logging.exception("SlicerSpineBrain: installing Python packages failed")
        return False
    if plan.restart_required:
        if slicer.util.confirmYesNoDisplay(
            "Python packages were updated. Restart Slicer now to use them?", windowTitle=WINDOW_TITLE, parent=parent
        ):
            slicer.util.restart()
        return False
    return True


def _execute(plan: dependencies.InstallPlan) -> bool:
    """Run the plan; False when the user cancelled the PyTorch installation (not an error)."""
    from spinebrain.errors import CancelledError

    try:
        dependencies.execute_plan(plan, pip_install=slicer_pip_install, install_torch=install_torch_with_extension)
    except CancelledError:
        logging.info("SlicerSpineBrain: PyTorch installation cancelled")
        return False
    return True
