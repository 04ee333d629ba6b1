"""BrainSeg: brain tissue (GM, WM, CSF) and MS / white-matter lesions of MR scans, with volumes.

Thin Slicer layer: the widget reads the UI and calls the logic (BrainSegLib, which runs without
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
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic

from BrainSegLib.logic import BrainSegLogic as SceneLogic
from spinebrain.brainseg.case import TASK_CHOICES
from spinebrain.brainseg.preprocess import NORMALISATIONS
from spinebrain_slicer import qt_choices
from spinebrain_slicer.qt_module import ModuleSelfTest, TaskModuleWidget, describe_module, init_module_logic
from spinebrain_slicer.qt_parameters import ParameterNodeGui

SEQUENCES = ("T1", "FLAIR", "T2", "T1C")


@parameterNodeWrapper
class BrainSegParameterNode:
    """The module's choices, saved with the scene; task, models, device and preprocessing also kept between sessions."""

    t1Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    t1cVolume: vtkMRMLScalarVolumeNode
    maskVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    volumesTable: vtkMRMLTableNode
    lesionsTable: vtkMRMLTableNode
    task: Annotated[str, Choice(list(TASK_CHOICES))] = "tissue"
    model: str = qt_choices.DEFAULT_MODEL
    lesionModel: str = qt_choices.DEFAULT_MODEL
    device: Annotated[str, Choice(list(qt_choices.DEVICE_CHOICES))] = "auto"
    n4: bool = False
    normalisation: Annotated[str, Choice(list(NORMALISATIONS))] = "zscore"
    register: bool = True
    minLesionSize: float = 10.0


class BrainSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(
            self.parent, "BrainSeg", categories=["Segmentation"], dependencies=["Segmentations"],
            help_text=(
                "Segments grey matter, white matter and CSF of an MR scan of any contrast, and MS / white-matter "
                "lesions on FLAIR (with T1 and T2 when given), and measures them: volume per class in mL and as a "
                "fraction of the intracranial volume, and per lesion its volume, centre and location (periventricular, "
                "juxtacortical, infratentorial, deep). Select a lesion row to centre the views on it. Sequences on "
                "another grid are registered to the reference (the T1, else the FLAIR) and the results lie on its "
                "grid."),
            acknowledgement=(
                "Methods after Akkus et al., Deep learning for brain MRI segmentation: state of the art and future "
                "directions, J Digit Imaging 2017, and Billot et al., SynthSeg (training on synthesised images). Built "
                "on PyTorch, MONAI, SimpleITK and 3D Slicer."))


class BrainSegWidget(TaskModuleWidget):
    """Reads the UI, calls the Logic. Apply runs in the background (TaskRunPanel); life cycle in TaskModuleWidget."""

    parameterNodeClass = BrainSegParameterNode
    firstVolumeParameter = "t1Volume"

    def setup(self):
        self.load_ui()
        self.logic = BrainSegLogic()

        self.refresh_models()
        qt_choices.setup_install_button(self.ui.installButton, self.refresh_models)
        self.add_task_panel(on_finished=self.onSegmented, can_apply=self.inputsChosen)
        self.parameters = ParameterNodeGui(
            "BrainSeg", self.ui, remembered=("task", "model", "lesionModel", "device", "n4", "normalisation", "register",
                                             "minLesionSize"),
            free_choices={"model": self.ui.modelComboBox, "lesionModel": self.ui.lesionModelComboBox},
            on_modified=self.updateRequirements)

        self.ui.lesionTableView.connect("clicked(QModelIndex)", self.onLesionClicked)
        self.follow_the_scene()

    # ------------------------------------------------------------------ UI state

    def refresh_models(self):  # also on enter: models trained since (Training module) appear
        qt_choices.fill_model_selector(self.ui.modelComboBox, "brain-tissue")
        qt_choices.fill_model_selector(self.ui.lesionModelComboBox, "brain-lesion")

    def sequences(self) -> dict:
        return {"T1": self.ui.t1Selector.currentNode(), "FLAIR": self.ui.flairSelector.currentNode(),
                "T2": self.ui.t2Selector.currentNode(), "T1C": self.ui.t1cSelector.currentNode()}

    def inputsChosen(self) -> bool:
        return any(node is not None for node in self.sequences().values())

    def updateRequirements(self):
        """Show the chosen models' required inputs and whether they are there (the card says which)."""
        task = self.ui.taskComboBox.currentText or "tissue"
        try:
            needs = self.logic.input_requirements(task, qt_choices.chosen_model(self.ui.lesionModelComboBox))
            self.logic.check_inputs(self.sequences(), task, qt_choices.chosen_model(self.ui.lesionModelComboBox))
            missing = ""
        except Exception as error:  # noqa: BLE001 -- no model installed, a missing input: shown, not raised
            needs, missing = None, str(error)
        text = ""
        if needs is not None:
            text = f"Needs: {', '.join(needs['required'])}" + (
                f"; uses when given: {', '.join(needs['optional'])}." if needs["optional"] else ".")
        self.ui.requirementsLabel.text = f"{text} {missing}".strip()
        self.ui.lesionModelComboBox.enabled = task != "tissue"
        self.panel.refresh()

    # ------------------------------------------------------------------ actions

    def onApply(self):
        options = {"n4": self.ui.n4CheckBox.checked, "normalisation": self.ui.normalisationComboBox.currentText,
                   "register": self.ui.registerCheckBox.checked,
                   "minimum_lesion_mm3": float(self.ui.minLesionSpinBox.value)}
        self.start_task(lambda **callbacks: self.logic.start_segmentation(
            {k: v for k, v in self.sequences().items() if v is not None}, self.ui.maskSelector.currentNode(),
            task=self.ui.taskComboBox.currentText, options=options,
            model=qt_choices.chosen_model(self.ui.modelComboBox),
            lesion_model=qt_choices.chosen_model(self.ui.lesionModelComboBox),
            device=qt_choices.chosen_device(self.ui.deviceComboBox),
            segmentation=self.ui.segmentationSelector.currentNode(),
            volumes_table=self.ui.volumesTableSelector.currentNode(),
            lesions_table=self.ui.lesionsTableSelector.currentNode(), **callbacks))

    def onSegmented(self, run):
        """The background run ended: on success the nodes are in the scene; otherwise nothing changed."""
        if self.run_succeeded(run, "BrainSeg could not segment these scans"):
            output = run.output
            self.ui.segmentationSelector.setCurrentNode(output.segmentation)
            self.ui.volumesTableSelector.setCurrentNode(output.volumes)
            if output.lesions is not None:
                self.ui.lesionsTableSelector.setCurrentNode(output.lesions)
                self.ui.lesionTableView.setMRMLTableNode(output.lesions)
            self.ui.statusLabel.text = "Done: segments and tables are in the scene; see the log for warnings."

    def onLesionClicked(self, index):
        with slicer.util.tryWithErrorDisplay("Could not find that lesion.", waitCursor=False):
            r, a, s = self.logic.lesion_centroid(self.ui.lesionTableView.mrmlTableNode(), index.row())
            slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)

    def onLoadSample(self):
        from spinebrain_slicer.samples import load_brain_sample

        with slicer.util.tryWithErrorDisplay("Could not make the sample.", waitCursor=True):
            sample = load_brain_sample(slicer.mrmlScene, seed=0, contrasts=("t1", "flair"), lesions="ms")
            self.ui.t1Selector.setCurrentNode(sample["volumes"]["t1"])
            self.ui.flairSelector.setCurrentNode(sample["volumes"]["flair"])
            slicer.util.setSliceViewerLayers(background=sample["volumes"]["flair"], fit=True)
            self.ui.statusLabel.text = "Sample loaded; its reference labels are in 'Sample brain tissue' and '... lesions'."


class BrainSegLogic(SceneLogic, ScriptedLoadableModuleLogic):
    """The module logic on Slicer's scene (see BrainSegLib.logic for every method; the order of the bases:
    qt_module.init_module_logic)."""

    def __init__(self, scene=None):
        init_module_logic(self, SceneLogic, scene)


class BrainSegTest(ModuleSelfTest):
    """Self-test: segment a generated brain with the bundled models, then a cancelled background run."""

    def runTest(self):
        self.setUp()
        self.test_segment_a_generated_brain()
        self.setUp()
        self.test_background_run_and_cancel()

    def _task(self, logic) -> str:
        """both when a lesion model is installed, else tissue."""
        try:
            logic.input_requirements("lesion")
            return "both"
        except Exception:  # noqa: BLE001 -- no lesion model installed
            return "tissue"

    def test_segment_a_generated_brain(self):
        from spinebrain_slicer.samples import load_brain_sample

        if self.skipped_without_core():
            return
        sample = load_brain_sample(slicer.mrmlScene, seed=1, contrasts=("t1", "flair"), lesions="ms", spacing=1.5)
        logic = BrainSegLogic()
        task = self._task(logic)
        volumes = {"T1": sample["volumes"]["t1"], "FLAIR": sample["volumes"]["flair"]}
        output = logic.run(volumes, task=task)
        segmentation = output.segmentation.GetSegmentation()
        names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
        self.assertTrue({"Grey matter", "White matter", "Cerebrospinal fluid"} <= names)
        self.assertEqual(output.volumes.GetNumberOfRows(), len(names) + 1)
        if output.lesions is not None and output.lesions.GetNumberOfRows():
            self.assertEqual(len(logic.lesion_centroid(output.lesions, 0)), 3)
        logging.info("BrainSeg self-test: segments %s", sorted(names))
        self.delayDisplay("BrainSeg self-test passed")

    def test_background_run_and_cancel(self):
        """Apply's path: the command runs in the background; a cancelled run leaves the scene as it was."""
        from spinebrain.errors import CancelledError
        from spinebrain_slicer.samples import load_brain_sample

        if self.skipped_without_core():
            return
        sample = load_brain_sample(slicer.mrmlScene, seed=2, contrasts=("t1",), lesions=None, spacing=2.0)
        logic = BrainSegLogic()
        count = slicer.mrmlScene.GetNumberOfNodes()
        run = logic.start_segmentation({"T1": sample["volumes"]["t1"]}, task="tissue")
        run.cancel()
        with self.assertRaises(CancelledError):
            run.wait()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        output = logic.start_segmentation({"T1": sample["volumes"]["t1"]}, task="tissue").wait()
        self.assertIsNotNone(output.segmentation)
        self.delayDisplay("BrainSeg background run passed")
