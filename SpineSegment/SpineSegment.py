"""SpineSegment: one segment per vertebra (2D MR vertebral-body mode now), with a review table.

Thin Slicer layer: the widget reads the UI and calls the logic (SpineSegmentLib, which runs without
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
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic

from SpineSegmentLib.logic import DIRECTION_CHOICES, MODE_CHOICES
from SpineSegmentLib.logic import SpineSegmentLogic as SceneLogic
from spinebrain.tasks import SPINE_SEGMENT
from spinebrain_slicer import qt_choices
from spinebrain_slicer.qt_module import ModuleSelfTest, TaskModuleWidget, describe_module, init_module_logic
from spinebrain_slicer.qt_parameters import ParameterNodeGui

TASK = SPINE_SEGMENT.name


@parameterNodeWrapper
class SpineSegmentParameterNode:
    """The module's choices, saved with the scene; mode, direction, model and device also kept between sessions."""

    inputVolume: vtkMRMLScalarVolumeNode
    labelsPoints: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode
    mode: Annotated[str, Choice(list(MODE_CHOICES))] = MODE_CHOICES[0]
    direction: Annotated[str, Choice(list(DIRECTION_CHOICES))] = "down"
    model: str = qt_choices.DEFAULT_MODEL  # the installed models change: bound by ParameterNodeGui, not the .ui
    device: Annotated[str, Choice(list(qt_choices.DEVICE_CHOICES))] = "auto"


class SpineSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(
            self.parent, "SpineSegment", categories=["Spine"], dependencies=["Segmentations", "Markups"],
            help_text=(
                "Segments each vertebra of a spine scan as its own segment (2D mode: the vertebral bodies of an MR "
                "scan, slice by slice). SpineLabel's points, when given, name the vertebrae; otherwise they are "
                "Vertebra 1..n from the top.<br>The <b>Review</b> table lists each vertebra with its volume and "
                "centroid: click a row to centre the views on it, tick or untick <b>complete</b> (incomplete vertebrae "
                "are drawn semi-transparent), <b>Remove incomplete</b> deletes those; <b>Undo</b> reverts."),
            acknowledgement=(
                "Methods after Lessmann et al., Iterative fully convolutional neural networks for automatic vertebra "
                "segmentation and identification, Medical Image Analysis 2019, and slice-wise 2D vertebral-body "
                "segmentation of MR. Built on PyTorch, MONAI, SimpleITK and 3D Slicer."))


class SpineSegmentWidget(TaskModuleWidget):
    """Reads the UI, calls the Logic. Apply runs in the background (TaskRunPanel); review edits are instant."""

    parameterNodeClass = SpineSegmentParameterNode

    def __init__(self, parent=None):
        TaskModuleWidget.__init__(self, parent)
        self._table = None

    def setup(self):
        self.load_ui()
        self.logic = SpineSegmentLogic()

        self.refresh_models()
        qt_choices.setup_install_button(self.ui.installButton, self.refresh_models)
        self.add_task_panel(on_finished=self.onSegmented,
                            can_apply=lambda: self.ui.inputSelector.currentNode() is not None)
        self.parameters = ParameterNodeGui("SpineSegment", self.ui, remembered=("mode", "direction", "model", "device"),
                                           free_choices={"model": self.ui.modelComboBox},
                                           on_modified=self.showReview)

        self.ui.removeIncompleteButton.connect("clicked()", lambda: self.edit(self.logic.remove_incomplete))
        self.ui.refreshTableButton.connect("clicked()", lambda: self.edit(self.logic.update_review_table))
        self.ui.undoButton.connect("clicked()", lambda: self.edit(self.logic.undo))
        self.ui.reviewTableView.connect("clicked(QModelIndex)", lambda index: self.onRowChosen(index.row()))
        self.follow_the_scene()

    def refresh_models(self):  # also on enter: models trained since (Training module) appear
        qt_choices.fill_model_selector(self.ui.modelComboBox, TASK)

    def let_go_of_the_scene(self):  # on cleanup and before the scene closes
        self.watchTable(None)

    # ------------------------------------------------------------------ review table

    def showReview(self):
        """Show the chosen segmentation's review table (and follow the user's ticks in it)."""
        segmentation = self.ui.outputSelector.currentNode()
        table = self.logic.review_table(segmentation)
        self.ui.reviewTableView.setMRMLTableNode(table)
        self.watchTable(table)
        for button in (self.ui.removeIncompleteButton, self.ui.refreshTableButton):
            button.enabled = table is not None
        self.ui.undoButton.enabled = segmentation is not None and self.logic.can_undo(segmentation)
        self.panel.refresh()

    def watchTable(self, table):
        if self._table is not None:
            self.removeObserver(self._table, vtk.vtkCommand.ModifiedEvent, self.onTableModified)
        self._table = table
        if table is not None:
            self.addObserver(table, vtk.vtkCommand.ModifiedEvent, self.onTableModified)

    def onTableModified(self, caller, event):
        with slicer.util.tryWithErrorDisplay("SpineSegment could not take over the table edit.", waitCursor=False):
            self.logic.apply_table_edits(caller)

    def onRowChosen(self, row):
        with slicer.util.tryWithErrorDisplay("SpineSegment could not show this vertebra.", waitCursor=False):
            self.logic.centre_views(self.ui.outputSelector.currentNode(), row)

    # ------------------------------------------------------------------ actions

    def onApply(self):
        self.start_task(lambda **callbacks: self.logic.start_segmenting(
            self.ui.inputSelector.currentNode(), self.ui.labelsSelector.currentNode(),
            self.ui.outputSelector.currentNode(), mode=self.ui.modeComboBox.currentText,
            direction=self.ui.directionComboBox.currentText, model=qt_choices.chosen_model(self.ui.modelComboBox),
            device=qt_choices.chosen_device(self.ui.deviceComboBox), **callbacks))

    def onSegmented(self, run):
        """The background run ended: on success the segments are in the scene; otherwise nothing changed."""
        if self.run_succeeded(run, "SpineSegment could not segment this volume"):
            node = run.output
            self.ui.outputSelector.setCurrentNode(node)
            records = self.logic.review_records(node)
            self.ui.statusLabel.text = (f"{len(records)} vertebrae, {sum(not r['complete'] for r in records)} "
                                        "incomplete; review them below.")
        self.showReview()

    def edit(self, operation):
        with slicer.util.tryWithErrorDisplay("SpineSegment could not change the segmentation.", waitCursor=True):
            operation(self.ui.outputSelector.currentNode())
            self.ui.statusLabel.text = "Segmentation updated."
        self.showReview()

    def onLoadSample(self):
        with slicer.util.tryWithErrorDisplay("Could not make the sample.", waitCursor=True):
            sample = qt_choices.load_spine_sample_into_views(modality="t2", view="lumbar")
            self.ui.inputSelector.setCurrentNode(sample["volume"])
            self.ui.statusLabel.text = "Sample T2 MR loaded."


class SpineSegmentLogic(SceneLogic, ScriptedLoadableModuleLogic):
    """The module logic on Slicer's scene (see SpineSegmentLib.logic for every method; the order of the bases:
    qt_module.init_module_logic)."""

    def __init__(self, scene=None):
        init_module_logic(self, SceneLogic, scene)


class SpineSegmentTest(ModuleSelfTest):
    """Self-test: segment a generated lumbar T2 phantom with the bundled model, review it, cancel a run."""

    def runTest(self):
        self.setUp()
        self.test_segment_and_review_a_phantom()
        self.setUp()
        self.test_background_run_and_cancel()

    def _phantom(self, seed):
        from spinebrain_slicer.samples import load_spine_sample

        return load_spine_sample(slicer.mrmlScene, seed=seed, modality="t2", view="lumbar", spacing=(1.5, 1.5, 1.5))

    def test_segment_and_review_a_phantom(self):
        if self.skipped_without_core():
            return
        sample = self._phantom(7001)
        logic = SpineSegmentLogic()
        node = logic.run(sample["volume"], mode="2d")
        records = logic.review_records(node)
        self.assertGreaterEqual(len(records), 3)
        table = logic.review_table(node)
        self.assertEqual(table.GetNumberOfRows(), len(records))
        logic.set_complete(node, 0, False)
        self.assertFalse(logic.review_records(node)[0]["complete"])
        removed = logic.remove_incomplete(node)
        self.assertIn(records[0]["name"], removed)
        self.assertTrue(logic.undo(node))
        self.assertEqual(len(logic.review_records(node)), len(records))
        logic.centre_views(node, 0)
        logging.info("SpineSegment self-test: %d vertebrae", len(records))
        self.delayDisplay("SpineSegment self-test passed")

    def test_background_run_and_cancel(self):
        """Apply's path: the command runs in the background; a cancelled run leaves the scene as it was."""
        from spinebrain.errors import CancelledError

        if self.skipped_without_core():
            return
        sample = self._phantom(7002)
        logic = SpineSegmentLogic()
        count = slicer.mrmlScene.GetNumberOfNodes()
        run = logic.start_segmenting(sample["volume"])
        run.cancel()
        with self.assertRaises(CancelledError):
            run.wait()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        node = logic.start_segmenting(sample["volume"]).wait()
        self.assertGreaterEqual(len(logic.review_records(node)), 3)
        self.delayDisplay("SpineSegment background run passed")
