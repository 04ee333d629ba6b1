"""The module widgets (Qt, not runnable here) call only what their headless Logic, run and panel offer.

Each ``self.logic.X`` / ``self.run.X`` / ``self.panel.X`` a widget uses is read from its source and
looked up on the class that provides it, so a renamed Logic method breaks a test here instead of a
button in Slicer. (The training widget's check moved here from ``test_static_slicer.py``.) Each module file
still defines the four classes Slicer discovers and takes the shared parts from ``spinebrain_slicer/qt_module.py``;
the widgets named there by the shared widget classes are in every .ui that uses them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_static_slicer import module_folders, ui_object_names, ui_references

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / "spinebrain_slicer" / "qt_module.py"


def logic_calls(source: str, owner: str) -> set[str]:
    """Attribute names used as ``self.<owner>.<name>`` in the source (``owner`` e.g. ``logic`` or ``run``)."""
    return {
        node.attr for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == owner
        and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
    }


def test_the_training_widget_uses_only_what_the_logic_and_the_run_offer():
    """The Qt layer cannot run here: every self.logic.X / self.run.X it uses must exist on the headless classes."""
    pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    from spinebrain_slicer.training_logic import TrainingLogic, TrainingRun

    source = (REPO / "SpineBrainTraining" / "SpineBrainTraining.py").read_text(encoding="utf-8")
    missing = sorted(f"logic.{name}" for name in logic_calls(source, "logic") if not hasattr(TrainingLogic, name))
    missing += sorted(f"run.{name}" for name in logic_calls(source, "run") if not hasattr(TrainingRun, name)
                      and name not in ("state", "epochs", "status", "error", "model", "settings", "exported"))
    assert missing == []
    assert logic_calls(source, "logic") >= {"start", "cases", "set_reference", "apply_model", "models_to_fine_tune",
                                            "release"}


def class_methods(path: Path, class_name: str) -> set[str]:
    """Names defined in a class of a file that cannot be imported here (it imports qt)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    owner = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name)
    return {n.name for n in owner.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_the_spine_label_widget_uses_only_what_its_logic_and_the_panel_offer(monkeypatch):
    pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    monkeypatch.syspath_prepend(str(REPO / "SpineLabel"))  # as Slicer does for a module folder
    from SpineLabelLib.logic import SpineLabelLogic

    # the widget's code: its own file and the shared TaskModuleWidget it is built on
    source = (REPO / "SpineLabel" / "SpineLabel.py").read_text(encoding="utf-8") + "\n" + shared_class_source(
        "ModuleWidget", "TaskModuleWidget")
    slicer_logic = {"getParameterNode"}  # from ScriptedLoadableModuleLogic, which the widget's Logic also bases on
    missing = sorted(f"logic.{name}" for name in logic_calls(source, "logic")
                     if not hasattr(SpineLabelLogic, name) and name not in slicer_logic)
    panel = class_methods(REPO / "spinebrain_slicer" / "qt_task.py", "TaskRunPanel")
    missing += sorted(f"panel.{name}" for name in logic_calls(source, "panel") if name not in panel)
    assert missing == []
    assert {"start_labelling", "relabel", "undo"} <= logic_calls(source, "logic")
    assert {"start", "stop", "refresh"} <= logic_calls(source, "panel")


def shared_class_source(*class_names: str) -> str:
    """The source of classes of qt_module.py (the shared widget code)."""
    text = SHARED.read_text(encoding="utf-8")
    return "\n".join(ast.get_source_segment(text, node) for node in ast.parse(text).body
                     if isinstance(node, ast.ClassDef) and node.name in class_names)


def shared_bases(class_name: str) -> list[str]:
    """qt_module's class and the classes of qt_module it builds on (TaskModuleWidget -> it and ModuleWidget)."""
    classes = {n.name: n for n in ast.parse(SHARED.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef)}
    chain = []
    while class_name in classes:
        chain.append(class_name)
        class_name = next((ast.unparse(b) for b in classes[class_name].bases if ast.unparse(b) in classes), "")
    return chain


# The classes Slicer finds by name in <Name>/<Name>.py, with the base each must have (the shared ones from qt_module).
SLICER_CLASSES = {"": ("ScriptedLoadableModule",), "Widget": ("ModuleWidget", "TaskModuleWidget"),
                  "Logic": ("ScriptedLoadableModuleLogic",), "Test": ("ModuleSelfTest",)}
# What each class must call from qt_module (the one copy of the module description and the Logic's two inits).
SHARED_CALLS = {"": "describe_module", "Logic": "init_module_logic"}


def module_class_problems(source: str, name: str) -> list[str]:
    """Problems of a module file: a class Slicer looks for missing, not on its base, or not using qt_module."""
    tree = ast.parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    problems = []
    for suffix, bases in SLICER_CLASSES.items():
        node = classes.get(name + suffix)
        if node is None:
            problems.append(f"{name}: no class {name + suffix}")
            continue
        if not {ast.unparse(base) for base in node.bases} & set(bases):
            problems.append(f"{name}: {name + suffix} is not based on {' or '.join(bases)}")
        calls = {ast.unparse(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
        if suffix in SHARED_CALLS and SHARED_CALLS[suffix] not in calls:
            problems.append(f"{name}: {name + suffix} does not call qt_module.{SHARED_CALLS[suffix]}")
    shared = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
              and node.module == "spinebrain_slicer.qt_module" for alias in node.names}
    problems += [f"{name}: does not import {used} from spinebrain_slicer.qt_module"
                 for used in ("describe_module", "init_module_logic") if used not in shared]
    return problems


def widget_base(source: str, name: str) -> str:
    widget = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == f"{name}Widget")
    return ast.unparse(widget.bases[0])


@pytest.mark.parametrize("name", module_folders(REPO))
def test_each_module_defines_its_slicer_classes_on_the_shared_helper(name):
    source = (REPO / name / f"{name}.py").read_text(encoding="utf-8")
    assert module_class_problems(source, name) == []
    # the widgets the shared widget classes use (Apply, Cancel, Install...) are in this module's .ui
    shared_ui = ui_references(shared_class_source(*shared_bases(widget_base(source, name))))
    assert "installButton" in shared_ui
    assert sorted(shared_ui - ui_object_names(REPO / name / "Resources" / "UI" / f"{name}.ui")) == []


def test_the_shared_task_widget_calls_only_what_the_panel_and_the_parameters_offer():
    source = shared_class_source("ModuleWidget", "TaskModuleWidget")
    panel = class_methods(REPO / "spinebrain_slicer" / "qt_task.py", "TaskRunPanel")
    parameters = class_methods(REPO / "spinebrain_slicer" / "qt_parameters.py", "ParameterNodeGui")
    assert logic_calls(source, "panel") == {"start", "stop"} and logic_calls(source, "panel") <= panel
    assert logic_calls(source, "parameters") == {"set", "release"} and logic_calls(source, "parameters") <= parameters
    assert shared_bases("TaskModuleWidget") == ["TaskModuleWidget", "ModuleWidget"]


GOOD_MODULE = """
from spinebrain_slicer.qt_module import TaskModuleWidget, describe_module, init_module_logic
class Fake(ScriptedLoadableModule):
    def __init__(self, parent):
        describe_module(parent, "Fake", [], [], "", "")
class FakeWidget(TaskModuleWidget):
    pass
class FakeLogic(SceneLogic, ScriptedLoadableModuleLogic):
    def __init__(self, scene=None):
        init_module_logic(self, SceneLogic, scene)
class FakeTest(ModuleSelfTest):
    pass
"""


@pytest.mark.parametrize("old, new, expected", [
    ("class FakeTest(", "class FakeTests(", "no class FakeTest"),
    ("FakeTest(ModuleSelfTest)", "FakeTest(ScriptedLoadableModuleTest)", "FakeTest is not based on"),
    ("FakeWidget(TaskModuleWidget)", "FakeWidget(ScriptedLoadableModuleWidget)", "FakeWidget is not based on"),
    ('describe_module(parent, "Fake", [], [], "", "")', "parent.title = 'Fake'", "Fake does not call"),
    ("init_module_logic(self, SceneLogic, scene)", "SceneLogic.__init__(self, scene)", "FakeLogic does not call"),
    ("TaskModuleWidget, describe_module,", "TaskModuleWidget,", "does not import describe_module"),
])
def test_the_module_class_checker_catches_a_broken_module(old, new, expected):
    assert module_class_problems(GOOD_MODULE, "Fake") == []
    assert old in GOOD_MODULE
    problems = module_class_problems(GOOD_MODULE.replace(old, new), "Fake")
    assert any(expected in problem for problem in problems), problems
