"""SpineLabel: detect the vertebrae of a spine scan and name them (C1...S1); correct them in seconds.

Thin Slicer layer: the widget reads the UI and calls the logic (SpineLabelLib, which runs without
Qt and is tested on slicer-core); the work itself is in the `spinebrain` core.
"""

import importlib.util
import logging
import os
import sys

# From a source checkout (this folder added to Slicer's module paths) the core packages sit one
# folder up; in the built extension they are installed next to this file and already importable.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_CHECKOUT, "spinebrain_slicer")) and _CHECKOUT not in sys.path:
    sys.path.append(_CHECKOUT)

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

import spinebrain
from SpineLabelLib.logic import REGION_CHOICES
from SpineLabelLib.logic import SpineLabelLogic as SceneLogic

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEFAULT_MODEL = "default"


class SpineLabel(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineLabel"
        self.parent.categories = ["Spine"]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["The SlicerSpineBrain contributors"]
        self.parent.helpText = (
            "Detects the vertebrae in an MR or CT scan and names them (C1...C7, T1...T12, L1...L5, S1): one point "
            "per vertebra at the centre of its body, with its confidence.<br>"
            "Correct with one point: move, place or delete a point (or rename one) and the others are relabelled "
            "around it; the points you set are locked and never changed silently. <b>Shift up</b> gives every point "
            "the name of the vertebra above it, <b>Shift down</b> the one below; <b>Undo</b> reverts the last change."
            f"<br><br><b>{spinebrain.RESEARCH_NOTICE}</b>"
        )
        self.parent.acknowledgementText = (
            "Method after Forsberg et al., Detection and labeling of vertebrae in MR images using deep learning "
            "with clinical annotations as training data, J Digit Imaging 2017. Built on PyTorch, MONAI, SimpleITK "
            "and 3D Slicer."
        )


class SpineLabelWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/SpineLabel.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = SpineLabelLogic()

        self.ui.regionComboBox.addItems(list(REGION_CHOICES))
        self.ui.deviceComboBox.addItems(list(DEVICE_CHOICES))
        self.ui.installButton.setVisible(not _core_dependencies_installed())
        self.fillModels()

        self.ui.applyButton.connect("clicked()", self.onApply)
        self.ui.relabelButton.connect("clicked()", lambda: self.edit(self.logic.relabel))
        self.ui.shiftUpButton.connect("clicked()", lambda: self.edit(self.logic.shift_up))
        self.ui.shiftDownButton.connect("clicked()", lambda: self.edit(self.logic.shift_down))
        self.ui.undoButton.connect("clicked()", lambda: self.edit(self.logic.undo))
        self.ui.loadSampleButton.connect("clicked()", self.onLoadSample)
        self.ui.installButton.connect("clicked()", self.onInstall)
        self.ui.autoRelabelCheckBox.connect("toggled(bool)", lambda _: self.updateObservation())
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda _: self.updateButtons())
        self.ui.outputSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda _: self.updateObservation())
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda *_: self.logic.stop_observing())
        self.updateObservation()

    def cleanup(self):
        self.removeObservers()
        if self.logic is not None:
            self.logic.stop_observing()

    # ------------------------------------------------------------------ UI state

    def fillModels(self):
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItem(DEFAULT_MODEL)
        try:
            from spinebrain.models.registry import ModelRegistry

            self.ui.modelComboBox.addItems([e.card.id for e in ModelRegistry().list_models(task="spine-label")])
        except ImportError:  # torch not installed yet: only the default until the Install button is used
            pass

    def updateObservation(self):
        self.logic.stop_observing()
        if self.ui.autoRelabelCheckBox.checked:
            self.logic.observe(self.ui.outputSelector.currentNode())
        self.updateButtons()

    def updateButtons(self):
        points = self.ui.outputSelector.currentNode()
        self.ui.applyButton.enabled = self.ui.inputSelector.currentNode() is not None
        for button in (self.ui.relabelButton, self.ui.shiftUpButton, self.ui.shiftDownButton):
            button.enabled = points is not None
        self.ui.undoButton.enabled = points is not None and self.logic.can_undo(points)

    def onProgress(self, stage, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = f"{stage}: {message}" if message else stage
        slicer.app.processEvents()

    # ------------------------------------------------------------------ actions

    def onInstall(self):
        from spinebrain_slicer.qt_helpers import dependencies_ready

        if dependencies_ready(parent=slicer.util.mainWindow()):
            self.ui.installButton.hide()
            self.fillModels()

    def onApply(self):
        if not _core_dependencies_installed():
            self.onInstall()
            return
        model = self.ui.modelComboBox.currentText
        device = self.ui.deviceComboBox.currentText
        with slicer.util.tryWithErrorDisplay("SpineLabel could not label this volume.", waitCursor=True):
            node = self.logic.run(
                self.ui.inputSelector.currentNode(), self.ui.outputSelector.currentNode(),
                region=self.ui.regionComboBox.currentText, model=None if model == DEFAULT_MODEL else model,
                device=None if device == "auto" else device, progress=self.onProgress,
            )
            self.ui.outputSelector.setCurrentNode(node)
            result = self.logic.last_result
            self.ui.statusLabel.text = " ".join(
                [f"{node.GetNumberOfControlPoints()} vertebrae ({result.region}, {result.seconds:.1f} s)."]
                + list(result.warnings))
        self.updateButtons()

    def edit(self, operation):
        with slicer.util.tryWithErrorDisplay("SpineLabel could not change the labels.", waitCursor=True):
            operation(self.ui.outputSelector.currentNode())
            self.ui.statusLabel.text = "Labels updated."
        self.updateButtons()

    def onLoadSample(self):
        from spinebrain_slicer.samples import load_spine_sample

        with slicer.util.tryWithErrorDisplay("Could not make the sample.", waitCursor=True):
            sample = load_spine_sample(slicer.mrmlScene, seed=0, modality="ct", view="lumbar")
            self.ui.inputSelector.setCurrentNode(sample["volume"])
            slicer.util.setSliceViewerLayers(background=sample["volume"], fit=True)
            self.ui.statusLabel.text = "Sample loaded; its reference points are in 'Sample spine CT body centres'."


class SpineLabelLogic(SceneLogic, ScriptedLoadableModuleLogic):
    """The module logic on Slicer's scene (see SpineLabelLib.logic for every method).

    SceneLogic comes first: ScriptedLoadableModuleLogic.__init__ calls super().__init__() with no
    arguments, which must reach object, not SceneLogic.
    """

    def __init__(self, scene=None):
        ScriptedLoadableModuleLogic.__init__(self)
        SceneLogic.__init__(self, scene if scene is not None else slicer.mrmlScene)


def _core_dependencies_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "monai"))


class SpineLabelTest(ScriptedLoadableModuleTest):
    """Self-test: label a generated lumbar phantom with the bundled model, then correct it."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_label_and_correct_a_phantom()

    def test_label_and_correct_a_phantom(self):
        from spinebrain_slicer.samples import load_spine_sample

        if not _core_dependencies_installed():
            self.delayDisplay("Skipped: torch and MONAI are not installed (use the Install button).")
            return
        sample = load_spine_sample(slicer.mrmlScene, seed=1, modality="ct", view="lumbar")
        logic = SpineLabelLogic()
        node = logic.run(sample["volume"], None, region="lumbar")
        count = node.GetNumberOfControlPoints()
        self.assertGreaterEqual(count, 3)
        reference = {p.label for p in sample["case"].points}
        found = [node.GetNthControlPointLabel(i) for i in range(count)]
        self.assertGreaterEqual(len(reference.intersection(found)), 0.8 * count)
        lowest = found[-1]
        logic.set_label(node, count - 1, lowest)  # confirming a label locks it and keeps the names
        self.assertTrue(node.GetNthControlPointLocked(count - 1))
        self.assertTrue(logic.undo(node))
        logging.info("SpineLabel self-test: %d vertebrae labelled", count)
        self.delayDisplay("SpineLabel self-test passed")
