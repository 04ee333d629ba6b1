"""Imports go one way: no import cycle among the modules of ``spinebrain``, ``spinebrain_slicer`` and the
Slicer module folders (``<Name>/<Name>.py`` with its ``<Name>Lib``), and every core module imports on its
own in a fresh interpreter.

The graph is read from the source, every import statement included (also those deferred into
functions). ``from package import name`` counts as an import of ``package.name`` when that is a
module, else of the package.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("spinebrain", "spinebrain_slicer")


def module_folders(root: Path = REPO) -> list[Path]:
    """Slicer module folders: ``<Name>/<Name>.py``; Slicer puts the folder itself on the path."""
    return sorted(f for f in root.iterdir() if f.is_dir() and (f / f"{f.name}.py").is_file())


def module_files(root: Path = REPO) -> dict[str, Path]:
    """Dotted module name -> file: the two packages (from the repository root) and each module folder's
    files, named as Slicer imports them (``SpineLabel``, ``SpineLabelLib.logic``)."""
    modules = {}
    trees = [(root / package, root) for package in PACKAGES] + [(folder, folder) for folder in module_folders(root)]
    for tree, base in trees:
        for path in sorted(tree.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if "Testing" in parts or "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(tree: ast.Module):
    """Every import statement, also those inside functions: a deferred import still ties two modules together
    (``models/package.py`` importing ``registry`` inside a function while ``registry`` imports ``package``
    was such a cycle)."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
                continue
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                edges.add(target if target in modules else base)
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_relative_imports_are_resolved():
    graph = import_graph(module_files())
    assert "spinebrain.models.package" in graph["spinebrain.models.registry"]
    assert "spinebrain.synth.realism.common" in graph["spinebrain.synth.realism.spine"]
    assert "spinebrain.tasks" in graph["spinebrain.models.card"]
    assert "SpineLabelLib.logic" in graph["SpineLabelLib"] and "SpineLabelLib.logic" in graph["SpineLabel"]
    assert "spinebrain_slicer.task_logic" in graph["SpineLabelLib.logic"]


def test_a_cycle_inside_a_module_folder_is_found(tmp_path):
    folder = tmp_path / "FakeMod"
    (folder / "FakeModLib").mkdir(parents=True)
    (folder / "FakeMod.py").write_text("from FakeModLib.logic import Logic\n")
    (folder / "FakeModLib" / "__init__.py").write_text("from .logic import Logic\n")
    (folder / "FakeModLib" / "logic.py").write_text("def later():\n    import FakeMod\n")
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    assert find_cycle(import_graph(module_files(tmp_path))) == ["FakeMod", "FakeModLib.logic", "FakeMod"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph(module_files()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    """Each module imports on its own (in one fresh process, each from a clean module table)."""
    names = [name for name in module_files()  # the core (the Slicer side needs the slicer-core wheel's modules)
             if name.split(".")[0] == "spinebrain" and not name.endswith("__main__")]
    script = (
        "import importlib, sys\n"
        "base = set(sys.modules)\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('spinebrain') and m not in base]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_deferred_import_cycle_is_found(tmp_path):
    """The models cycle as it was: package imports registry inside a function, registry imports package."""
    folder = tmp_path / "spinebrain" / "models"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "package.py").write_text("def resolve():\n    from .registry import ModelRegistry\n")
    (folder / "registry.py").write_text("from .package import resolve\n")
    modules = {"spinebrain.models": folder / "__init__.py", "spinebrain.models.package": folder / "package.py",
               "spinebrain.models.registry": folder / "registry.py"}
    assert find_cycle(import_graph(modules)) == ["spinebrain.models.package", "spinebrain.models.registry",
                                                 "spinebrain.models.package"]
