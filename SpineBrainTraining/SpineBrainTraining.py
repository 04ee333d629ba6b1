"""SpineBrainTraining: train or fine-tune a model on the cases loaded in Slicer, with live curves, and use it at once.

Thin Slicer layer: the widget reads the UI and calls the Logic
(:class:`spinebrain_slicer.training_logic.TrainingLogic`, no Qt, tested on slicer-core); the trainer
is the ``spinebrain train`` command in a background process. A QTimer drains its events, so Slicer
stays responsive; the loss and metric curves are a table + plot chart node shown in the plot view.
"""

import os
import sys

# From a source checkout the core packages sit one folder up; in the built extension they are beside this file.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_CHECKOUT, "spinebrain_slicer")) and _CHECKOUT not in sys.path:
    sys.path.append(_CHECKOUT)

import qt
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic

from spinebrain.tasks import SPINE_LABEL
from spinebrain_slicer import qt_choices
from spinebrain_slicer.qt_module import ModuleSelfTest, ModuleWidget, describe_module, init_module_logic
from spinebrain_slicer.training_logic import TrainingLogic, TrainingSettings, training_tasks

POLL_INTERVAL_MS = 200
FROM_SCRATCH = "from scratch"
CASE_COLUMNS = ("case", "volume", "reference", "matched by", "status")


class SpineBrainTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(
            self.parent, "SpineBrain Training", categories=["Spine", "Segmentation"], dependencies=[],
            help_text=(
                "Train or fine-tune a SpineLabel, SpineSegment or BrainSeg model on the cases loaded in Slicer: every "
                "volume with its reference (point list for labelling; segmentation or label map for segmentation), "
                "matched by the segmentation's reference volume, the subject hierarchy folder or the name. "
                "<b>Start</b> exports the cases and trains in the background with live loss and metric curves; "
                "<b>Stop</b> keeps the best model so far, <b>Cancel</b> keeps nothing. The new model is installed in "
                "your model folder and listed at once by every module."),
            acknowledgement="Built on PyTorch, MONAI, SimpleITK and 3D Slicer.")


class SpineBrainTrainingWidget(ModuleWidget):
    """Reads the UI, calls the Logic; a timer polls the run and refreshes progress, curves and log."""

    def __init__(self, parent=None):
        ModuleWidget.__init__(self, parent)
        self.run = None
        self.curves = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)

    def setup(self):
        self.load_ui()
        self.logic = SpineBrainTrainingLogic()
        self.tasks = training_tasks()
        self.ui.taskComboBox.addItems([task.title for task in self.tasks])
        self.ui.regionComboBox.addItems(["lumbar", "cervical"])
        self.ui.deviceComboBox.addItems(list(qt_choices.DEVICE_CHOICES))
        self.ui.caseTable.setColumnCount(len(CASE_COLUMNS))
        self.ui.caseTable.setHorizontalHeaderLabels(list(CASE_COLUMNS))
        qt_choices.setup_install_button(self.ui.installButton, self.refreshModels)

        self.ui.taskComboBox.connect("currentIndexChanged(int)", self.onTaskChanged)
        self.ui.resampleCheckBox.connect("toggled(bool)", lambda checked: self.refreshCases())
        self.ui.setReferenceButton.connect("clicked()", self.onSetReference)
        self.ui.startButton.connect("clicked()", self.onStart)
        self.ui.stopButton.connect("clicked()", self.onStop)
        self.ui.cancelButton.connect("clicked()", self.onCancel)
        self.ui.applyModelButton.connect("clicked()", self.onApplyModel)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, lambda caller, event: self.refreshCases())
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda caller, event: self.refreshCases())
        self.onTaskChanged()

    def cleanup(self):
        self.removeObservers()
        self._timer.stop()
        if self.logic is not None:
            self.logic.release()  # a running trainer is cancelled: nothing half-written is registered

    # ------------------------------------------------------------------ lists

    @property
    def task(self):
        return self.tasks[max(self.ui.taskComboBox.currentIndex, 0)]

    def onTaskChanged(self, index=None):
        self.ui.regionComboBox.enabled = self.task.key == SPINE_LABEL.name
        self.ui.stopButton.toolTip = "" if self.task.can_stop else "This trainer cannot stop early; use Cancel."
        self.refreshModels()
        self.refreshCases()

    def refreshModels(self):
        if not qt_choices.core_dependencies_installed():
            return
        ids = self.logic.models_to_fine_tune(self.task.key)
        for combo_box, first in ((self.ui.startFromComboBox, [FROM_SCRATCH]), (self.ui.useModelComboBox, [])):
            combo_box.clear()
            combo_box.addItems(first + ids)

    def refreshCases(self):
        if self.logic is None:
            return
        cases = self.logic.cases(self.task.key, resample=self.ui.resampleCheckBox.checked)
        self.ui.caseTable.setRowCount(len(cases))
        for row, case in enumerate(cases):
            for column, key in enumerate(CASE_COLUMNS):
                self.ui.caseTable.setItem(row, column, qt.QTableWidgetItem(case.row()[key]))
        self.ui.caseTable.resizeColumnsToContents()
        self.updateButtons()

    def onSetReference(self):
        with slicer.util.tryWithErrorDisplay("Could not set the reference.", waitCursor=True):
            self.logic.set_reference(self.ui.caseVolumeSelector.currentNode(), self.ui.caseReferenceSelector.currentNode())
            self.refreshCases()

    # ------------------------------------------------------------------ run

    def settings(self) -> TrainingSettings:
        start_from = self.ui.startFromComboBox.currentText
        return TrainingSettings(
            task=self.task.key, model_id=self.ui.modelIdLineEdit.text.strip(),
            work_folder=self.ui.workFolderLineEdit.currentPath or None, epochs=self.ui.epochsSpinBox.value,
            learning_rate=self.ui.learningRateSpinBox.value, batch_size=self.ui.batchSpinBox.value,
            patch=self.ui.patchSpinBox.value or None, device=self.ui.deviceComboBox.currentText,
            amp=self.ui.ampCheckBox.checked, init_from=None if start_from in ("", FROM_SCRATCH) else start_from,
            synthetic_ratio=self.ui.syntheticSpinBox.value, validation_fraction=self.ui.validationSpinBox.value,
            resample=self.ui.resampleCheckBox.checked, region=self.ui.regionComboBox.currentText)

    def onStart(self):
        if not self.core_ready():
            return
        with slicer.util.tryWithErrorDisplay("Training could not start.", waitCursor=True):
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self.run = self.logic.start(self.settings(), on_log=self.ui.logTextEdit.appendPlainText,
                                        on_progress=self.onProgress, on_epoch=self.onEpoch)
            self.curves = None
            self.ui.statusLabel.text = f"Training in {self.run.work_folder}"
            self._timer.start()
        self.updateButtons()

    def onProgress(self, stage, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def onEpoch(self, event):
        self.ui.statusLabel.text = self.run.status
        first = self.curves is None
        self.curves = self.run.curves(self.curves)
        if first:
            chart = self.curves.GetNodeReference("SpineBrain.CurveChart")
            slicer.modules.plots.logic().ShowChartInLayout(chart)

    def onPoll(self):
        if self.run is None:
            return
        self.run.poll()
        if self.run.finished:
            self._timer.stop()
            self.ui.statusLabel.text = self.run.status
            self.refreshModels()
            self.updateButtons()

    def onStop(self):
        with slicer.util.tryWithErrorDisplay("Could not stop the training."):
            self.run.stop()
            self.ui.statusLabel.text = self.run.status

    def onCancel(self):
        self.run.cancel()
        self.ui.statusLabel.text = self.run.status

    def updateButtons(self):
        running = self.run is not None and self.run.running
        self.ui.startButton.enabled = not running
        self.ui.stopButton.enabled = running and self.task.can_stop
        self.ui.cancelButton.enabled = running

    # ------------------------------------------------------------------ use

    def onApplyModel(self):
        with slicer.util.tryWithErrorDisplay("Could not apply the model.", waitCursor=True):
            node = self.logic.apply_model(self.ui.useModelComboBox.currentText, self.ui.useVolumeSelector.currentNode())
            self.ui.statusLabel.text = f"Segmentation '{node.GetName()}' added."


class SpineBrainTrainingLogic(TrainingLogic, ScriptedLoadableModuleLogic):
    """The module logic on Slicer's scene (see spinebrain_slicer.training_logic for every method)."""

    def __init__(self, scene=None):
        init_module_logic(self, TrainingLogic, scene)


class SpineBrainTrainingTest(ModuleSelfTest):
    """Self-test: a brain-tissue-like task on two generated cases, cancelled after start; nothing is registered."""

    def runTest(self):
        self.setUp()
        self.test_cases_and_cancel()

    def test_cases_and_cancel(self):
        import tempfile

        import numpy as np

        from spinebrain.errors import CancelledError

        if self.skipped_without_core():
            return
        for number in range(2):  # a bright box in noise; its label map is found by name (selftestN-label)
            label = np.zeros((24, 24, 24), np.uint8)
            label[6:18, 6:18, 6:18] = 1
            noise = np.random.default_rng(number).normal(0, 20, label.shape)
            slicer.util.addVolumeFromArray((100.0 * label + noise).astype(np.float32), name=f"selftest{number}")
            slicer.util.addVolumeFromArray(label, name=f"selftest{number}-label",
                                           nodeClassName="vtkMRMLLabelMapVolumeNode")
        logic = SpineBrainTrainingLogic()
        self.assertEqual(sum(case.usable for case in logic.cases("spine-segment")), 2)
        run = logic.start(TrainingSettings("spine-segment", "selftest-model", work_folder=tempfile.mkdtemp(),
                                           epochs=50, patch=16, device="cpu"))
        run.cancel()
        with self.assertRaises(CancelledError):
            run.wait()
        self.assertNotIn("selftest-model", logic.models_to_fine_tune("spine-segment"))
        logic.release()
        self.delayDisplay("SpineBrainTraining self-test passed")
