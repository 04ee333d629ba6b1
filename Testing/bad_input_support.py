"""Helpers of the bad-input suite (``test_bad_input*.py``): hostile inputs built on the fly, and the checks.

Every case checks three things: the exit code (2 for bad input, 3 for a cancel), the message (one
line, names the problem, says what to do, no traceback or raw ITK text), and that the folder the
run was pointed at is byte-for-byte as before (:func:`snapshot` hashes every file under it).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spinebrain.cli import main
from spinebrain.errors import EXIT_BAD_INPUT

ACTIONS = re.compile(
    r"\b(run again|load|use|check|replace|resample|extract|fix|choose|give|point|re-export|export|pass|place|"
    r"name|delete|remove|write|save|rename|wrap|read|set)\b", re.IGNORECASE
)


def assert_clear_message(message: str, *problem_words: str) -> None:
    """One line, at most two short sentences, names the problem, says what to do."""
    assert "\n" not in message.strip(), message
    assert len(message) < 420, message
    sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", message) if s]
    assert len(sentences) <= 2, message
    for word in problem_words:
        assert word.lower() in message.lower(), (word, message)
    assert ACTIONS.search(message), f"no advice in: {message}"
    for raw in ("Traceback", "sitk::ERROR", "itk::", "Exception thrown", "KeyError", "[nrrd]"):
        assert raw not in message, message


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (and the folders themselves, hidden ones included)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    state = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        state[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return state


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run the command line in-process; return (exit code, the last line of stderr without 'spinebrain: ')."""
    code, message, _ = run_cli_with_stderr(argv, capsys)
    return code, message


def run_cli_with_stderr(argv: list[str], capsys) -> tuple[int, str, str]:
    """:func:`run_cli` plus the whole stderr text."""
    capsys.readouterr()  # drop earlier output
    code = main(["--quiet", *[str(a) for a in argv]])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if ": error: " in last:  # argparse's usage error: "spinebrain demo: error: argument --seed: ..."
        last = last.split(": error: ", 1)[1]
    return code, last.removeprefix("spinebrain: "), err


def assert_refused(argv, capsys, watched: Path, *words: str) -> str:
    """The command exits 2 with a clear message naming ``words`` and ``watched`` is unchanged."""
    before = snapshot(watched)
    code, message, err = run_cli_with_stderr(argv, capsys)
    assert code == EXIT_BAD_INPUT, (code, message)
    for raw in ("Traceback", "WARNING: In ", "sitk::ERROR", "itk::"):  # nothing raw reaches the user's terminal
        assert raw not in err, err
    assert_clear_message(message, *words)
    assert snapshot(watched) == before, "the run changed files it must not touch"
    return message


# ----------------------------------------------------------------------------------- images

def volume(array: np.ndarray, spacing=(0.8, 0.8, 2.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing(spacing[: image.GetDimension()])
    if direction is not None:
        image.SetDirection(direction)
    return image


def noise(shape=(6, 10, 12), dtype=np.float32, mean=100.0, spread=20.0) -> np.ndarray:
    return np.random.default_rng(0).normal(mean, spread, shape).astype(dtype)


def ct_like(shape=(16, 24, 24)) -> np.ndarray:
    """A small CT-like int16 block: air around a soft-tissue body with a brighter bone column."""
    array = np.full(shape, -1000, dtype=np.int16)
    array[:, 4:-4, 4:-4] = 20  # soft tissue, 0-60 HU with the noise
    array[:, 10:14, 10:14] = 700
    return (array + np.random.default_rng(1).normal(0, 20, shape)).astype(np.int16)


# ----------------------------------------------------------------------------------- point files

def markups_document(*control_points: dict, system: str = "LPS") -> dict:
    return {"markups": [{"type": "Fiducial", "coordinateSystem": system, "controlPoints": list(control_points)}]}


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path
