"""Rules of the source tree the next modules copy: no Python file over 500 lines, and no NumPy view of a
SimpleITK image that is gone before the view is read.

``sitk.GetArrayViewFromImage`` returns a view of the image's buffer without keeping the image alive
(SimpleITK's documentation: the image must be kept around while the view is used). Called on a
temporary (``GetArrayViewFromImage(sitk.Threshold(...))``) the buffer is freed as soon as the call
returns, so the view reads freed memory: wrong numbers now and then, or a segmentation fault
(seen in the brain generator's template volume).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 500
SKIP = {".git", ".venv", "build", "__pycache__", "node_modules"}


def python_sources(root: Path = REPO) -> list[Path]:
    return sorted(path for path in root.rglob("*.py") if not SKIP & set(path.relative_to(root).parts))


def long_files(paths, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in paths:
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > limit:
            found.append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {count} lines")
    return found


def views_of_temporaries(source: str) -> list[int]:
    """Lines where ``GetArrayViewFromImage`` is given an expression that makes a new image (a call)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "GetArrayViewFromImage" and isinstance(node.args[0], (ast.Call, ast.BinOp, ast.Compare)):
            lines.append(node.lineno)
    return lines


def test_no_python_file_is_over_500_lines():
    paths = python_sources()
    assert any(path.name == "tasks.py" for path in paths)  # the walk does see the packages
    too_long = long_files(paths)
    assert not too_long, "split these by responsibility: " + "; ".join(too_long)


def test_the_length_rule_catches_a_long_file(tmp_path):
    (tmp_path / "long.py").write_text("x = 1\n" * 501)
    (tmp_path / "short.py").write_text("x = 1\n" * 500)
    assert [line.split(":")[0] for line in long_files(python_sources(tmp_path))] == [str(tmp_path / "long.py")]


def test_no_array_view_of_a_temporary_image():
    problems = [f"{path.relative_to(REPO)}:{line}" for path in python_sources()
                for line in views_of_temporaries(path.read_text(encoding="utf-8"))]
    assert not problems, "use sitk.GetArrayFromImage (a copy) or keep the image in a variable: " + ", ".join(problems)


def test_the_view_rule_tells_a_temporary_from_a_kept_image():
    source = ("a = sitk.GetArrayViewFromImage(sitk.OtsuThreshold(image))\n"
              "mask = image > 0\n"
              "b = sitk.GetArrayViewFromImage(mask)\n"
              "c = GetArrayViewFromImage(image > 0)\n"
              "d = sitk.GetArrayFromImage(sitk.OtsuThreshold(image))\n")
    assert views_of_temporaries(source) == [1, 4]
