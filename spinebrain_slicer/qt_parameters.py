"""A module's parameter node in its GUI, and the user's choices kept between Slicer sessions.

Runs in Slicer only (Qt); checked statically in CI. Each module declares its parameters once with
``slicer.parameterNodeWrapper`` (typed fields) and names the widgets in its ``.ui`` with the
``SlicerParameterName`` dynamic property; ``connectGui`` then keeps widgets and parameter node in
sync with no glue code (a ``str`` shown in a QComboBox needs a ``Choice`` annotation: the
connector fills the box with those choices). A box whose items are only known at run time -- the
installed models -- cannot have a fixed ``Choice``; :class:`ParameterNodeGui` binds such boxes
itself (``free_choices``), and a remembered value that is no longer offered leaves the box as it is.

The parameter node is saved with the scene; :class:`ParameterNodeGui` also copies the listed
choices (model, device, region...) to QSettings, so a new scene or a new session starts from the
user's last choices.
"""

from __future__ import annotations

import qt
import slicer
import vtk

from .choices import RememberedChoices


class ParameterNodeGui:
    """Connects a module's parameter node (a parameterNodeWrapper instance) to its ``ui``.

    ``remembered``: names of plain-value parameters (str, bool, int, float) kept in QSettings (the
name of the parameter in the node, i.e. the wrapper is used without a prefix).
    ``free_choices``: ``{parameter name: QComboBox}`` bound here (no SlicerParameterName on them).
    ``on_modified()`` runs after any parameter change (e.g. to enable Apply).
    """

    def __init__(self, module_name: str, ui, remembered=(), free_choices=None, on_modified=None):
        self.module_name, self.ui, self.remembered = module_name, ui, tuple(remembered)
        self.free_choices = dict(free_choices or {})
        self.on_modified = on_modified
        self.node = None
        self.remembered_choices = RememberedChoices(qt.QSettings(), module_name, self.remembered)
        self._gui_tag = None
        self._observer = None
        for name, combo_box in self.free_choices.items():
            combo_box.connect("currentTextChanged(QString)", lambda text, name=name: self._chosen(name, text))

    def set(self, scripted_module_node, wrapper_class):
        """Show the module's parameter node (or none) in the GUI; returns the wrapper (or None).

        Choices the node does not hold yet (a new scene) start from the remembered ones. The check
        is made on the plain node: wrapping it writes every default into it.
        """
        self.release()
        if scripted_module_node is None:
            return None
        missing = [name for name in self.remembered if not scripted_module_node.GetParameter(name)]
        self.node = wrapper_class(scripted_module_node)
        self.remembered_choices.restore(self.node, missing)
        self._gui_tag = self.node.connectGui(self.ui)
        self._observer = self.node.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, self._modified)
        self._modified()
        return self.node

    def release(self) -> None:
        if self.node is not None:
            if self._gui_tag is not None:
                self.node.disconnectGui(self._gui_tag)
            if self._observer is not None:
                self.node.parameterNode.RemoveObserver(self._observer)
        self.node, self._gui_tag, self._observer = None, None, None

    def _chosen(self, name: str, text: str) -> None:
        if self.node is not None and text and getattr(self.node, name) != text:
            setattr(self.node, name, text)

    def _modified(self, *_):
        self.remembered_choices.remember(self.node)
        for name, combo_box in self.free_choices.items():
            index = combo_box.findText(str(getattr(self.node, name)))
            if index >= 0 and index != combo_box.currentIndex:
                combo_box.setCurrentIndex(index)
        if self.on_modified:
            self.on_modified()


def first_volume_node():
    """The first scalar volume of the scene: a sensible input for a new parameter node."""
    return slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
