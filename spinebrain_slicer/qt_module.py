"""What the module files (BrainSeg, SpineLabel, SpineSegment, SpineBrainTraining) share in Slicer.

Runs in Slicer only (Qt); checked statically in CI. Each module file still defines the classes Slicer
discovers by name (``<Name>``, ``<Name>Widget``, ``<Name>Logic``, ``<Name>Test``); this file holds the
parts they had written four times: the module description, the widget's opening of its ``.ui``,
the life cycle of a task widget (parameter node, scene close, background run ended) and the
self-test's empty scene and its skip when torch / MONAI are missing. No logic here: the widgets call
their Logic.
"""

from __future__ import annotations

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest,
                                          ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from . import qt_choices
from .qt_parameters import first_volume_node
from .qt_task import TaskRunPanel

CONTRIBUTORS = ("The SlicerSpineBrain contributors",)


def describe_module(parent, title: str, categories, dependencies, help_text: str, acknowledgement: str) -> None:
    """Slicer's module description, written the same way for every module (the research notice ends the help)."""
    from spinebrain import RESEARCH_NOTICE  # the core is imported lazily in the qt_ files

    parent.title = title
    parent.categories = list(categories)
    parent.dependencies = list(dependencies)
    parent.contributors = list(CONTRIBUTORS)
    parent.helpText = f"{help_text}<br><br><b>{RESEARCH_NOTICE}</b>"
    parent.acknowledgementText = acknowledgement


def init_module_logic(logic, scene_logic_class, scene=None) -> None:
    """``__init__`` of a module's ``<Name>Logic(SceneLogic, ScriptedLoadableModuleLogic)``, on Slicer's scene
    unless another is given.

    The headless Logic (``scene_logic_class``) comes first among the bases: ScriptedLoadableModuleLogic.__init__
    calls super().__init__() with no arguments, which must reach object, not the headless Logic; so both are
    initialised here by name.
    """
    ScriptedLoadableModuleLogic.__init__(logic)
    scene_logic_class.__init__(logic, scene if scene is not None else slicer.mrmlScene)


class ModuleSelfTest(ScriptedLoadableModuleTest):
    """A module's self-test: each test starts on an empty scene and is skipped where torch / MONAI are missing."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def skipped_without_core(self) -> bool:
        """True (and says so) when torch and MONAI are not installed, so the test is skipped."""
        if qt_choices.core_dependencies_installed():
            return False
        self.delayDisplay("Skipped: torch and MONAI are not installed (use the Install button).")
        return True


class ModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """A module widget that observes the scene and is built from ``Resources/UI/<module name>.ui``."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def load_ui(self) -> None:
        """Slicer's standard start of ``setup()``: the module's .ui under the widget as ``self.ui``, on the scene."""
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)

    def core_ready(self) -> bool:
        """True when torch and MONAI are installed; otherwise presses the Install button (it asks first)."""
        if qt_choices.core_dependencies_installed():
            return True
        self.ui.installButton.click()
        return False


class TaskModuleWidget(ModuleWidget):
    """A module whose Apply runs one task in the background (TaskRunPanel) on choices kept in a parameter node.

    A subclass sets ``parameterNodeClass`` (its parameterNodeWrapper) and ``firstVolumeParameter`` (the
    input a new parameter node starts with: the scene's first volume), calls :meth:`add_task_panel` and
    :meth:`follow_the_scene` in its ``setup()``, and defines ``onApply`` and ``onLoadSample``.
    """

    parameterNodeClass = None
    firstVolumeParameter = "inputVolume"

    def __init__(self, parent=None):
        ModuleWidget.__init__(self, parent)
        self.panel = None
        self.parameters = None
        self._parameterNode = None

    def add_task_panel(self, on_finished, can_apply) -> None:
        """Apply / Cancel / progress / status / log of the module's .ui drive one background run at a time."""
        self.panel = TaskRunPanel(self.ui.applyButton, self.ui.cancelButton, self.ui.progressBar, self.ui.statusLabel,
                                  self.ui.logTextEdit, on_finished=on_finished, can_apply=can_apply)
        self.ui.applyButton.connect("clicked()", self.onApply)

    def follow_the_scene(self) -> None:
        """The end of ``setup()``: Load sample, the scene-close observers and the parameter node."""
        self.ui.loadSampleButton.connect("clicked()", self.onLoadSample)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def let_go_of_the_scene(self) -> None:
        """What else of the module observes the scene's nodes: stopped before the scene closes (a hook)."""

    def refresh_models(self) -> None:
        """Refill the model lists when the module is shown (models trained since appear; a hook)."""

    def cleanup(self):
        if self.logic is not None:
            self.let_go_of_the_scene()  # first: it may remove an observer of its own, which must still be there
        self.removeObservers()
        if self.panel is not None:
            self.panel.stop()
        if self.parameters is not None:
            self.parameters.release()

    def enter(self):
        self.refresh_models()
        self.initializeParameterNode()

    def exit(self):
        self.parameters.release()

    def onSceneStartClose(self, caller, event):
        self.panel.stop()  # a run's result must not land in the next scene
        self.let_go_of_the_scene()
        self.parameters.release()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self._parameterNode = self.parameters.set(self.logic.getParameterNode(), self.parameterNodeClass)
        if self._parameterNode is not None and not getattr(self._parameterNode, self.firstVolumeParameter):
            setattr(self._parameterNode, self.firstVolumeParameter, first_volume_node())

    def start_task(self, start_run) -> None:
        """Apply: install torch / MONAI first if they are missing, else start ``start_run(**callbacks)`` in the
        background; bad input raises at once and is shown."""
        if not self.core_ready():
            return
        with slicer.util.tryWithErrorDisplay(f"{self.moduleName} could not start.", waitCursor=True):
            self.panel.start(start_run)

    def run_succeeded(self, run, failure: str) -> bool:
        """For ``on_finished``: True when the run succeeded (its output is in the scene); a failed run is shown as
        ``<failure>: <error>`` with its details, a cancelled one silently (either way the scene is unchanged)."""
        if run.state.value == "succeeded":
            return True
        if run.state.value != "cancelled":
            slicer.util.errorDisplay(f"{failure}: {run.error}", detailedText=run.result.details if run.result else "")
        return False
