"""Static checks of the Slicer layer, which only runs inside the Slicer application.

The extension's CMakeLists, its icon, the import rules between the layers and, for every module
folder (``<Name>/<Name>.py`` + ``<Name>/CMakeLists.txt``), its .ui file, the widget names its code
uses, its CMakeLists and its imports (the CMake run against a stub Slicer: ``test_extension_configure.py``).
The checkers return lists of problems, so a fake module in a temporary folder shows that they catch
what they should before the real modules exist.
"""

from __future__ import annotations

import ast
import re
import shutil
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTENSION_NAME = "SlicerSpineBrain"

METADATA_KEYS = (
    "EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
    "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS",
)
# What the core must never import: Slicer, Qt, CTK, VTK, or the Slicer-side package above it.
CORE_FORBIDDEN = {"slicer", "qt", "ctk", "PythonQt", "mrml", "spinebrain_slicer"}
# Qt-only imports that spinebrain_slicer may do at module level only in files named qt_*.py.
QT_ONLY = {"qt", "ctk", "PythonQt", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper"}
# What a module's own files may import besides the standard library, the two packages and its <Name>Lib.
MODULE_ALLOWED = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "SampleData", "numpy", "spinebrain", "spinebrain_slicer"}


# --------------------------------------------------------------------------- CMake parsing

def strip_cmake_comments(text: str) -> str:
    """Drop `# ...` line comments (outside quoted strings)."""
    lines = []
    for line in text.splitlines():
        in_string = False
        for index, char in enumerate(line):
            if char == '"' and (index == 0 or line[index - 1] != "\\"):
                in_string = not in_string
            elif char == "#" and not in_string:
                line = line[:index]
                break
        lines.append(line)
    return "\n".join(lines)


_COMMAND = re.compile(r"\b([A-Za-z_]\w*)\s*\(((?:[^()]|\([^()]*\))*)\)", re.S)
_ARGUMENT = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s"]+)')


def cmake_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command name in lower case, arguments) for every command call, comments removed."""
    commands = []
    for match in _COMMAND.finditer(strip_cmake_comments(text)):
        arguments = [a.group(1) if a.group(1) is not None else a.group(2) for a in _ARGUMENT.finditer(match.group(2))]
        commands.append((match.group(1).lower(), arguments))
    return commands


def cmake_variables(text: str) -> dict[str, list[str]]:
    return {args[0]: args[1:] for name, args in cmake_commands(text) if name == "set" and args}


def listed_subdirectories(text: str) -> list[str]:
    return [args[0] for name, args in cmake_commands(text) if name == "add_subdirectory" and args]


def module_folders(root: Path) -> list[str]:
    """Folders holding a Slicer module: <Name>/<Name>.py and <Name>/CMakeLists.txt."""
    return sorted(
        folder.name for folder in root.iterdir()
        if folder.is_dir() and (folder / f"{folder.name}.py").is_file() and (folder / "CMakeLists.txt").is_file()
    )


# --------------------------------------------------------------------------- Python parsing

def imports(tree: ast.AST, module_level_only: bool = False) -> list[tuple[str, int]]:
    """(dotted module name, line) of every import, relative ones with their leading dots
    (``from .qt_runner import X`` gives ".qt_runner" and ".qt_runner.X"); optionally skipping function bodies.
    """
    found = []

    def visit(node: ast.AST) -> None:
        if module_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.append((module, node.lineno))
            separator = "" if module.endswith(".") else "."
            found.extend((f"{module}{separator}{alias.name}", node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def matches(dotted: str, names: set[str]) -> bool:
    """True when `dotted` is one of `names` or inside one of them (qt.QTimer inside qt)."""
    return any(dotted == name or dotted.startswith(name + ".") for name in names)


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def ui_references(source: str) -> set[str]:
    """Names used as self.ui.<name> in the source."""
    return {
        node.attr for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
    }


def ui_object_names(ui_path: Path) -> set[str]:
    """Object names slicer.util.childWidgetVariables exposes from a Qt Designer file (raises on bad XML)."""
    root = ET.parse(ui_path).getroot()
    tags = ("widget", "layout", "action", "actiongroup", "buttongroup")
    return {element.get("name") for tag in tags for element in root.iter(tag) if element.get("name")}


# --------------------------------------------------------------------------- the per-module checker

def check_module(folder: Path) -> list[str]:
    """Problems of one module folder; empty when it passes every static check."""
    name = folder.name
    problems: list[str] = []
    problems += _check_ui(folder, name)
    problems += _check_module_cmake(folder, name)
    problems += _check_module_imports(folder, name)
    problems += _check_parameter_names(folder, name)
    return problems


def ui_parameter_names(ui_path: Path) -> dict[str, tuple[str, str]]:
    """Widget name -> (widget class, its ``SlicerParameterName`` dynamic property) in a Qt Designer file."""
    names = {}
    for widget in ET.parse(ui_path).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName" and prop.find("string") is not None:
                names[widget.get("name")] = (widget.get("class"), prop.find("string").text or "")
    return names


def wrapped_parameters(source: str) -> dict[str, str]:
    """Field -> annotation (source text) of the classes decorated with ``parameterNodeWrapper``."""
    fields = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and any(
                (d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")) == "parameterNodeWrapper"
                for d in node.decorator_list):
            fields |= {item.target.id: ast.unparse(item.annotation) for item in node.body
                       if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    return fields


def _check_parameter_names(folder: Path, name: str) -> list[str]:
    """Every SlicerParameterName in the .ui is a parameterNodeWrapper field the widget can show.

    A plain value in a QComboBox needs a ``Choice`` annotation, else ``connectGui`` raises in Slicer.
    """
    ui_path = folder / "Resources" / "UI" / f"{name}.ui"
    if not ui_path.is_file():
        return []
    fields = {}
    for source in _module_sources(folder, name):
        fields |= wrapped_parameters(source.read_text(encoding="utf-8"))
    try:
        used = ui_parameter_names(ui_path)
    except ET.ParseError:
        return []  # reported by _check_ui
    problems = []
    for widget, (widget_class, parameter) in sorted(used.items()):
        if parameter not in fields:
            problems.append(f"{name}: widget {widget} has SlicerParameterName {parameter!r}, which no "
                            "parameterNodeWrapper field has")
        elif widget_class == "QComboBox" and "Choice(" not in fields[parameter]:
            problems.append(f"{name}: {parameter!r} is shown in the QComboBox {widget} but has no Choice annotation")
    return problems


def _module_sources(folder: Path, name: str) -> list[Path]:
    """The module's own code: <Name>.py and everything under <Name>Lib/ (not its Testing/ files)."""
    library = folder / f"{name}Lib"
    return [folder / f"{name}.py"] + (python_files(library) if library.is_dir() else [])


def _check_ui(folder: Path, name: str) -> list[str]:
    ui_path = folder / "Resources" / "UI" / f"{name}.ui"
    if not ui_path.is_file():
        return [f"{name}: missing {ui_path.relative_to(folder.parent)}"]
    try:
        available = ui_object_names(ui_path)
    except ET.ParseError as error:
        return [f"{name}: {ui_path.name} is not valid XML ({error})"]
    problems = []
    for source in _module_sources(folder, name):
        for missing in sorted(ui_references(source.read_text(encoding="utf-8")) - available):
            problems.append(f"{name}: {source.name} uses self.ui.{missing}, which {ui_path.name} does not define")
    return problems


def _check_module_cmake(folder: Path, name: str) -> list[str]:
    text = strip_cmake_comments((folder / "CMakeLists.txt").read_text(encoding="utf-8"))
    module_name = cmake_variables(text).get("MODULE_NAME", [name])[0]
    text = text.replace("${MODULE_NAME}", module_name)
    commands = {command for command, _ in cmake_commands(text)}
    problems = [f"{name}: CMakeLists.txt does not call {required}()"
                for required in ("slicermacrobuildscriptedmodule", "slicer_add_python_unittest")
                if required not in commands]
    if module_name != name:
        problems.append(f"{name}: CMakeLists.txt sets MODULE_NAME to {module_name}")
    listed = set(re.findall(r"[\w./-]+\.(?:py|ui|png|svg|jpg|json)\b", text))
    resources = [p for p in (folder / "Resources").rglob("*") if p.is_file()] if (folder / "Resources").is_dir() else []
    for path in _module_sources(folder, name) + resources:
        relative = path.relative_to(folder).as_posix()
        if relative not in listed:
            problems.append(f"{name}: CMakeLists.txt does not list {relative}, so Slicer would not get it")
    for relative in sorted(listed):
        if not (folder / relative).is_file():
            problems.append(f"{name}: CMakeLists.txt lists {relative}, which does not exist")
    return problems


def _check_module_imports(folder: Path, name: str) -> list[str]:
    allowed = MODULE_ALLOWED | {f"{name}Lib", "__future__"} | set(sys.stdlib_module_names)
    problems = []
    for source in _module_sources(folder, name):
        for dotted, line in imports(ast.parse(source.read_text(encoding="utf-8"))):
            if not dotted.startswith(".") and dotted.split(".")[0] not in allowed:
                problems.append(f"{name}: {source.name}:{line} imports {dotted}; call the core through spinebrain_slicer")
    return problems


# --------------------------------------------------------------------------- extension-level tests

@pytest.fixture(scope="module")
def top_cmake() -> str:
    return (REPO / "CMakeLists.txt").read_text(encoding="utf-8")


def test_extension_metadata(top_cmake):
    commands = cmake_commands(top_cmake)
    variables = cmake_variables(top_cmake)
    assert ("project", [EXTENSION_NAME]) in commands
    for key in METADATA_KEYS:
        assert variables.get(key) and all(value.strip() for value in variables[key]), f"{key} is missing or empty"
    assert variables["EXTENSION_CATEGORY"] == ["Segmentation"]
    assert "research use only" in variables["EXTENSION_DESCRIPTION"][0].lower()
    assert variables["EXTENSION_ICONURL"][0].endswith("/Resources/Icons/SlicerSpineBrain.png")
    assert all(url.startswith("https://") for key in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL",
                                                      "EXTENSION_SCREENSHOTURLS") for url in variables[key])
    depends = " ".join(variables["EXTENSION_DEPENDS"]).split()
    assert depends == ["NA"] or "NA" not in depends


def test_extension_build_steps_in_order(top_cmake):
    calls = [(name, args[0] if args else "") for name, args in cmake_commands(top_cmake)]
    expected = [
        ("find_package", "Slicer"), ("include", "${Slicer_USE_FILE}"),
        ("include", "${Slicer_EXTENSION_GENERATE_CONFIG}"), ("include", "${Slicer_EXTENSION_CPACK}"),
    ]
    positions = [calls.index(call) for call in expected]
    assert positions == sorted(positions)
    assert ["Slicer", "REQUIRED"] in [args for name, args in cmake_commands(top_cmake) if name == "find_package"]
    # Every module is added after Slicer is set up and before the package is configured.
    for index, (name, _) in enumerate(calls):
        if name == "add_subdirectory":
            assert positions[1] < index < positions[2]


def test_cmake_lists_exactly_the_module_folders(top_cmake):
    listed = listed_subdirectories(top_cmake)
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == module_folders(REPO)


def test_cmake_ships_both_packages_and_the_models(top_cmake):
    text = strip_cmake_comments(top_cmake)
    for pattern in ("spinebrain/*.py", "spinebrain_slicer/*.py", "Resources/Models/*"):
        assert pattern in text
    assert "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in text


def test_extension_icon_is_a_128px_png():
    data = (REPO / "Resources" / "Icons" / f"{EXTENSION_NAME}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def test_core_never_imports_slicer_qt_ctk_or_vtk():
    problems = []
    for path in python_files(REPO / "spinebrain"):
        for dotted, line in imports(ast.parse(path.read_text(encoding="utf-8"))):
            if matches(dotted, CORE_FORBIDDEN) or dotted.startswith("vtk"):
                problems.append(f"{path.relative_to(REPO)}:{line} imports {dotted}")
    assert problems == []


def test_slicer_side_imports_qt_only_in_qt_files():
    package = REPO / "spinebrain_slicer"
    qt_files = {p.stem for p in package.glob("qt_*.py")}
    # A qt_ file is Qt too: importing it at module level (absolutely or relatively) counts as importing Qt.
    qt_names = QT_ONLY | {f"spinebrain_slicer.{stem}" for stem in qt_files} | {f".{stem}" for stem in qt_files}
    problems = []
    for path in python_files(package):
        if path.name.startswith("qt_"):
            continue
        for dotted, line in imports(ast.parse(path.read_text(encoding="utf-8")), module_level_only=True):
            if matches(dotted, qt_names):
                problems.append(f"{path.relative_to(REPO)}:{line} imports {dotted} at module level")
    assert problems == []


# What the shared Qt pieces (spinebrain_slicer/qt_*.py) may import at module level; the core only lazily.
QT_FILE_ALLOWED = {"qt", "ctk", "slicer", "vtk", "spinebrain_slicer", "__future__"}


def qt_file_problems(path: Path) -> list[str]:
    """Module-level imports of a qt_*.py file outside the standard library, Qt/CTK/Slicer/VTK and this package."""
    allowed = QT_FILE_ALLOWED | set(sys.stdlib_module_names)
    return [f"{path.name}:{line} imports {dotted} at module level"
            for dotted, line in imports(ast.parse(path.read_text(encoding="utf-8")), module_level_only=True)
            if not dotted.startswith(".") and dotted.split(".")[0] not in allowed]


def test_shared_qt_pieces_import_only_qt_slicer_and_this_package():
    files = sorted((REPO / "spinebrain_slicer").glob("qt_*.py"))
    assert {"qt_task.py", "qt_choices.py", "qt_parameters.py", "qt_module.py"} <= {p.name for p in files}
    assert [problem for path in files for problem in qt_file_problems(path)] == []
    assert qt_file_problems_of("import torch\nfrom spinebrain.models import ModelRegistry\nimport qt\n") == [
        "x.py:1 imports torch at module level", "x.py:2 imports spinebrain.models at module level",
        "x.py:2 imports spinebrain.models.ModelRegistry at module level"]


def qt_file_problems_of(text: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.py"
        path.write_text(text)
        return qt_file_problems(path)


def test_nothing_on_the_slicer_side_spins_the_event_loop():
    """Long work runs in the background (task Logic + QTimer), never behind a processEvents loop."""
    sources = python_files(REPO / "spinebrain_slicer") + [p for f in module_folders(REPO) for p in python_files(REPO / f)]
    assert [str(p.relative_to(REPO)) for p in sources if "processEvents(" in p.read_text(encoding="utf-8")] == []


@pytest.mark.parametrize("name", module_folders(REPO))
def test_module_static_checks(name):
    assert check_module(REPO / name) == []


# --------------------------------------------------------------------------- the checkers themselves

FAKE_UI = """<?xml version="1.0" encoding="UTF-8"?>
<ui version="4.0">
 <class>FakeMod</class>
 <widget class="qMRMLWidget" name="FakeMod">
  <layout class="QVBoxLayout" name="verticalLayout">
   <item><widget class="qMRMLNodeComboBox" name="inputSelector">
    <property name="SlicerParameterName" stdset="0"><string>inputVolume</string></property>
   </widget></item>
   <item><widget class="QComboBox" name="regionBox">
    <property name="SlicerParameterName" stdset="0"><string>region</string></property>
   </widget></item>
   <item><widget class="QPushButton" name="applyButton"/></item>
  </layout>
 </widget>
</ui>
"""
FAKE_MODULE = """import logging
from typing import Annotated

import qt
import slicer
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from spinebrain_slicer import runner
from FakeModLib.logic import FakeModLogic


@parameterNodeWrapper
class FakeModParameterNode:
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    region: Annotated[str, Choice(["a", "b"])] = "a"


class FakeModWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        self.ui = slicer.util.childWidgetVariables(slicer.util.loadUI(self.resourcePath("UI/FakeMod.ui")))
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.verticalLayout.setSpacing(2)

    def onApply(self):
        FakeModLogic().run(self.ui.inputSelector.currentNode())
"""
FAKE_CMAKE = """set(MODULE_NAME FakeMod)
set(MODULE_PYTHON_SCRIPTS
  ${MODULE_NAME}.py
  ${MODULE_NAME}Lib/__init__.py
  ${MODULE_NAME}Lib/logic.py
  )
set(MODULE_PYTHON_RESOURCES
  Resources/Icons/${MODULE_NAME}.png
  Resources/UI/${MODULE_NAME}.ui
  )
slicerMacroBuildScriptedModule(NAME ${MODULE_NAME} SCRIPTS ${MODULE_PYTHON_SCRIPTS} RESOURCES ${MODULE_PYTHON_RESOURCES})
if(BUILD_TESTING)
  slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)  # the module's self-test, run by Slicer's ctest
endif()
"""


def write_fake_module(root: Path) -> Path:
    folder = root / "FakeMod"
    (folder / "FakeModLib").mkdir(parents=True)
    (folder / "Resources" / "UI").mkdir(parents=True)
    (folder / "Resources" / "Icons").mkdir(parents=True)
    (folder / "FakeMod.py").write_text(FAKE_MODULE)
    (folder / "FakeModLib" / "__init__.py").write_text("")
    (folder / "FakeModLib" / "logic.py").write_text("import numpy as np\nfrom spinebrain_slicer import bridge\n")
    (folder / "Resources" / "UI" / "FakeMod.ui").write_text(FAKE_UI)
    shutil.copy(REPO / "Resources" / "Icons" / f"{EXTENSION_NAME}.png", folder / "Resources" / "Icons" / "FakeMod.png")
    (folder / "CMakeLists.txt").write_text(FAKE_CMAKE)
    return folder


def test_checker_passes_a_good_module(tmp_path):
    folder = write_fake_module(tmp_path)
    assert module_folders(tmp_path) == ["FakeMod"]
    assert check_module(folder) == []


@pytest.mark.parametrize(
    "break_it, expected",
    [
        (lambda f: _edit(f / "Resources/UI/FakeMod.ui", 'name="inputSelector"', 'name="inputCombo"'), "self.ui.inputSelector"),
        (lambda f: _edit(f / "Resources/UI/FakeMod.ui", "</ui>", ""), "not valid XML"),
        (lambda f: (f / "Resources/UI/FakeMod.ui").unlink(), "missing"),
        (lambda f: _edit(f / "CMakeLists.txt", "${MODULE_NAME}Lib/logic.py", ""), "does not list FakeModLib/logic.py"),
        (lambda f: _edit(f / "CMakeLists.txt", "Resources/UI/${MODULE_NAME}.ui", ""), "does not list Resources/UI/FakeMod.ui"),
        (lambda f: _edit(f / "CMakeLists.txt", "${MODULE_NAME}.py\n", "${MODULE_NAME}.py\n  Gone.py\n"), "lists Gone.py"),
        (lambda f: _edit(f / "CMakeLists.txt", "slicer_add_python_unittest(", "message("), "slicer_add_python_unittest"),
        (lambda f: _edit(f / "FakeModLib/logic.py", "import numpy", "import torch"), "imports torch"),
        (lambda f: _edit(f / "FakeMod.py", "import logging", "from OtherModLib import helpers"), "imports OtherModLib"),
        (lambda f: _edit(f / "FakeMod.py", "    inputVolume:", "    volume:"), "SlicerParameterName 'inputVolume'"),
        (lambda f: _edit(f / "FakeMod.py", 'Annotated[str, Choice(["a", "b"])]', "str"), "no Choice annotation"),
    ],
    ids=["widget-missing", "bad-xml", "no-ui", "script-unlisted", "ui-unlisted", "listed-missing",
         "no-unittest", "imports-torch", "imports-other-module", "parameter-unknown",
         "combo-without-choice"],
)
def test_checker_catches_a_broken_module(tmp_path, break_it, expected):
    folder = write_fake_module(tmp_path)
    break_it(folder)
    problems = check_module(folder)
    assert any(expected in problem for problem in problems), problems


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_cmake_parsing_ignores_comments_and_finds_modules(tmp_path):
    text = 'add_subdirectory(SpineLabel)\n# add_subdirectory(Old)\nadd_subdirectory(BrainSeg) # "x"\n## NEXT_MODULE\n'
    assert listed_subdirectories(text) == ["SpineLabel", "BrainSeg"]
    assert cmake_variables('set(A "x # y" b)  # c')["A"] == ["x # y", "b"]
    write_fake_module(tmp_path)
    (tmp_path / "NotAModule").mkdir()
    (tmp_path / "NotAModule" / "NotAModule.py").write_text("")
    assert module_folders(tmp_path) == ["FakeMod"]


def test_import_rule_checkers_catch_violations():
    source = "import os\nimport qt\n\ndef later():\n    import ctk\n    from slicer import util\n"
    module_level = [name for name, _ in imports(ast.parse(source), module_level_only=True)]
    everywhere = [name for name, _ in imports(ast.parse(source))]
    assert module_level == ["os", "qt"]
    assert {"ctk", "slicer", "slicer.util"} <= set(everywhere)
    relative = [name for name, _ in imports(ast.parse("from .qt_runner import Q\nfrom . import bridge\n"))]
    assert relative == [".qt_runner", ".qt_runner.Q", ".", ".bridge"]
    assert matches("qt.QTimer", QT_ONLY) and not matches("qtpy", QT_ONLY)
    assert matches("spinebrain_slicer.runner", CORE_FORBIDDEN) and not matches("spinebrain.io", CORE_FORBIDDEN)
