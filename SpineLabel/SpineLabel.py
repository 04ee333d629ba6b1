"""SpineLabel: detect the vertebrae of a spine scan and name them (C1...S1); correct them in seconds.

Thin Slicer layer: the widget reads the UI and calls the logic (SpineLabelLib, which runs without
Qt and is tested on slicer-core); the work itself is in the `spinebrain` core.
"""

import logging
import os
import sys

# From a source checkout (this folder added to Slicer's module paths) the core packages sit one
# folder up; in the built extension they are installed next to this file and already importable.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_CHECKOUT, "spinebrain_slicer")) and _CHECKOUT not in sys.path:
    sys.path.append(_CHECKOUT)

from typing import Annotated

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic

from SpineLabelLib.logic import REGION_CHOICES
from SpineLabelLib.logic import SpineLabelLogic as SceneLogic
from spinebrain.tasks import SPINE_LABEL
from spinebrain_slicer import qt_choices
from spinebrain_slicer.qt_module import ModuleSelfTest, TaskModuleWidget, describe_module, init_module_logic
from spinebrain_slicer.qt_parameters import ParameterNodeGui

TASK = SPINE_LABEL.name


@parameterNodeWrapper
class SpineLabelParameterNode:
    """The module's choices, saved with the scene; model, device and region also kept between sessions."""

    inputVolume: vtkMRMLScalarVolumeNode
    outputPoints: vtkMRMLMarkupsFiducialNode
    region: Annotated[str, Choice(list(REGION_CHOICES))] = "auto"
    model: str = qt_choices.DEFAULT_MODEL  # the installed models change: bound by ParameterNodeGui, not the .ui
    device: Annotated[str, Choice(list(qt_choices.DEVICE_CHOICES))] = "auto"
    autoRelabel: bool = True


class SpineLabel(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(
            self.parent, "SpineLabel", categories=["Spine"], dependencies=["Markups"],
            help_text=(
                "Detects the vertebrae in an MR or CT scan and names them (C1...C7, T1...T12, L1...L5, S1): one point "
                "per vertebra at the centre of its body, with its confidence.<br>Correct with one point: move, place "
                "or delete a point (or rename one) and the others are relabelled around it; the points you set are "
                "locked and never changed silently. <b>Shift up</b> gives every point the name of the vertebra above "
                "it, <b>Shift down</b> the one below; <b>Undo</b> reverts the last change."),
            acknowledgement=(
                "Method after Forsberg et al., Detection and labeling of vertebrae in MR images using deep learning "
                "with clinical annotations as training data, J Digit Imaging 2017. Built on PyTorch, MONAI, SimpleITK "
                "and 3D Slicer."))


class SpineLabelWidget(TaskModuleWidget):
    """Reads the UI, calls the Logic. Apply runs in the background (TaskRunPanel); edits are instant."""

    parameterNodeClass = SpineLabelParameterNode

    def setup(self):
        self.load_ui()
        self.logic = SpineLabelLogic()

        self.refresh_models()
        qt_choices.setup_install_button(self.ui.installButton, self.refresh_models)
        self.add_task_panel(on_finished=self.onLabelled,
                            can_apply=lambda: self.ui.inputSelector.currentNode() is not None)
        self.parameters = ParameterNodeGui("SpineLabel", self.ui, remembered=("region", "model", "device"),
                                           free_choices={"model": self.ui.modelComboBox},
                                           on_modified=self.updateObservation)

        self.ui.relabelButton.connect("clicked()", lambda: self.edit(self.logic.relabel))
        self.ui.shiftUpButton.connect("clicked()", lambda: self.edit(self.logic.shift_up))
        self.ui.shiftDownButton.connect("clicked()", lambda: self.edit(self.logic.shift_down))
        self.ui.undoButton.connect("clicked()", lambda: self.edit(self.logic.undo))
        self.follow_the_scene()

    # ------------------------------------------------------------------ UI state

    def refresh_models(self):  # also on enter: models trained since (Training module) appear
        qt_choices.fill_model_selector(self.ui.modelComboBox, TASK)

    def let_go_of_the_scene(self):  # on cleanup and before the scene closes
        self.logic.stop_observing()

    def updateObservation(self):
        self.logic.stop_observing()
        if self.ui.autoRelabelCheckBox.checked:
            self.logic.observe(self.ui.outputSelector.currentNode())
        self.updateButtons()

    def updateButtons(self):
        points = self.ui.outputSelector.currentNode()
        self.panel.refresh()
        for button in (self.ui.relabelButton, self.ui.shiftUpButton, self.ui.shiftDownButton):
            button.enabled = points is not None
        self.ui.undoButton.enabled = points is not None and self.logic.can_undo(points)

    # ------------------------------------------------------------------ actions

    def onApply(self):
        self.start_task(lambda **callbacks: self.logic.start_labelling(
            self.ui.inputSelector.currentNode(), self.ui.outputSelector.currentNode(),
            region=self.ui.regionComboBox.currentText, model=qt_choices.chosen_model(self.ui.modelComboBox),
            device=qt_choices.chosen_device(self.ui.deviceComboBox), **callbacks))

    def onLabelled(self, run):
        """The background run ended: on success the points are in the scene; otherwise nothing changed."""
        if self.run_succeeded(run, "SpineLabel could not label this volume"):
            node = run.output
            self.ui.outputSelector.setCurrentNode(node)
            self.ui.statusLabel.text = (f"{node.GetNumberOfControlPoints()} vertebrae "
                                        f"({node.GetAttribute('SpineLabel.Region')}); see the log for warnings.")
        self.updateObservation()

    def edit(self, operation):
        with slicer.util.tryWithErrorDisplay("SpineLabel could not change the labels.", waitCursor=True):
            operation(self.ui.outputSelector.currentNode())
            self.ui.statusLabel.text = "Labels updated."
        self.updateButtons()

    def onLoadSample(self):
        with slicer.util.tryWithErrorDisplay("Could not make the sample.", waitCursor=True):
            sample = qt_choices.load_spine_sample_into_views(modality="ct", view="lumbar")
            self.ui.inputSelector.setCurrentNode(sample["volume"])
            self.ui.statusLabel.text = "Sample loaded; its reference points are in 'Sample spine CT body centres'."


class SpineLabelLogic(SceneLogic, ScriptedLoadableModuleLogic):
    """The module logic on Slicer's scene (see SpineLabelLib.logic for every method; the order of the bases:
    qt_module.init_module_logic)."""

    def __init__(self, scene=None):
        init_module_logic(self, SceneLogic, scene)


class SpineLabelTest(ModuleSelfTest):
    """Self-test: label a generated lumbar phantom with the bundled model, then correct it."""

    def runTest(self):
        self.setUp()
        self.test_label_and_correct_a_phantom()
        self.setUp()
        self.test_background_run_and_cancel()

    def test_label_and_correct_a_phantom(self):
        from spinebrain_slicer.samples import load_spine_sample

        if self.skipped_without_core():
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

    def test_background_run_and_cancel(self):
        """Apply's path: the command runs in the background; a cancelled run leaves the scene as it was."""
        from spinebrain.errors import CancelledError
        from spinebrain_slicer.samples import load_spine_sample

        if self.skipped_without_core():
            return
        sample = load_spine_sample(slicer.mrmlScene, seed=2, modality="ct", view="lumbar")
        logic = SpineLabelLogic()
        count = slicer.mrmlScene.GetNumberOfNodes()
        run = logic.start_labelling(sample["volume"], region="lumbar")
        run.cancel()
        with self.assertRaises(CancelledError):
            run.wait()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        node = logic.start_labelling(sample["volume"], region="lumbar").wait()
        self.assertGreaterEqual(node.GetNumberOfControlPoints(), 3)
        self.assertEqual(node.GetAttribute("SpineLabel.Region"), "lumbar")
        self.delayDisplay("SpineLabel background run passed")
