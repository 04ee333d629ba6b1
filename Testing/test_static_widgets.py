"""The module widgets (Qt, not runnable here) call only what their headless Logic, run and panel offer.

Each ``self.logic.X`` / ``self.run.X`` / ``self.panel.X`` a widget uses is read from its source and
looked up on the class that provides it, so a renamed Logic method breaks a test here instead of a
button in Slicer. (The training widget's check moved here from ``test_static_slicer.py``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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

    source = (REPO / "SpineLabel" / "SpineLabel.py").read_text(encoding="utf-8")
    slicer_logic = {"getParameterNode"}  # from ScriptedLoadableModuleLogic, which the widget's Logic also bases on
    missing = sorted(f"logic.{name}" for name in logic_calls(source, "logic")
                     if not hasattr(SpineLabelLogic, name) and name not in slicer_logic)
    panel = class_methods(REPO / "spinebrain_slicer" / "qt_task.py", "TaskRunPanel")
    missing += sorted(f"panel.{name}" for name in logic_calls(source, "panel") if name not in panel)
    assert missing == []
    assert {"start_labelling", "relabel", "undo"} <= logic_calls(source, "logic")
    assert {"start", "stop", "refresh"} <= logic_calls(source, "panel")
