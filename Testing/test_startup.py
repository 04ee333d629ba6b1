"""The inference commands' lean MONAI import (spinebrain.startup): what it hides, and that every command still runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from spinebrain.startup import INFERENCE_COMMANDS, UNUSED_AT_INFERENCE, _HiddenFromThread, command_of

REPO = Path(__file__).resolve().parents[1]


def test_the_command_is_the_first_word_that_is_not_an_option():
    assert command_of(["--quiet", "spine-label", "scan.nii.gz"]) == "spine-label"
    assert command_of(["train", "spine-label", "--data", "x"]) == "train"
    assert command_of(["--version"]) is None
    assert {"spine-label", "spine-segment", "brain-seg", "demo"} <= INFERENCE_COMMANDS
    assert not {"train", "evaluate"} & INFERENCE_COMMANDS  # they train or score with MONAI's whole toolbox


def test_a_hidden_module_is_hidden_from_the_importing_thread_only():
    sys.modules.pop("wave", None)  # a standard module nothing here imports
    seen = {}

    def import_wave():
        try:
            import wave  # noqa: F401
            seen["thread"] = "imported"
        except ModuleNotFoundError as error:
            seen["thread"] = f"hidden: {error}"

    thread = threading.Thread(target=import_wave)
    hider = _HiddenFromThread(["wave"], thread)
    sys.meta_path.insert(0, hider)
    try:
        thread.start()
        thread.join()
        assert seen["thread"].startswith("hidden") and "wave" not in sys.modules
        import wave  # noqa: F401 -- the main thread imports it as usual, while the finder is still in place
        assert "wave" in sys.modules
    finally:
        sys.meta_path.remove(hider)
        sys.modules.pop("wave", None)


# The read-ahead's premise: once the parser is built, reading a scan imports no module, so the reading thread never
# imports beside the main thread's MONAI import (two threads importing one package's modules can fail half-way).
_READ_SCRIPT = r"""
import sys, json
from spinebrain.cli import build_parser
build_parser()
before = set(sys.modules)
from spinebrain.io import load_volume
load_volume(sys.argv[1])
heavy = sorted(m for m in ("torch", "monai") if m in sys.modules)
print(json.dumps({"new": sorted(set(sys.modules) - before), "heavy": heavy}))
"""


def test_the_parser_imports_no_torch_and_reading_a_scan_after_it_imports_nothing(tmp_path):
    import SimpleITK as sitk

    import numpy as np

    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 1500, (20, 30, 40)).astype(np.int16))
    image.SetSpacing([1.0, 1.0, 2.0])
    sitk.WriteImage(image, str(tmp_path / "scan.nii.gz"))
    done = subprocess.run([sys.executable, "-c", _READ_SCRIPT, str(tmp_path / "scan.nii.gz")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"new": [], "heavy": []}


def test_a_scan_read_ahead_is_what_reading_it_gives_errors_included(tmp_path):
    import SimpleITK as sitk

    from spinebrain.errors import InputError
    from spinebrain.io import _prefetched, prefetch_image, read_image
    from spinebrain.startup import parse_command, prefetch_input

    image = sitk.Image([30, 20, 10], sitk.sitkInt16) + 7
    image.SetSpacing([0.75, 0.75, 3.0])
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(image, str(path))
    prefetch_input(parse_command(["--quiet", "spine-label", str(path), "--region", "lumbar", "--out",
                                 str(tmp_path / "x.mrk.json")]))
    assert path.resolve() in _prefetched
    again = read_image(path)
    assert path.resolve() not in _prefetched  # taken once: a second read reads the file again
    assert again.GetSpacing() == image.GetSpacing() and sitk.GetArrayFromImage(again).sum() == 7 * 30 * 20 * 10
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(InputError) as direct:
        read_image(broken)
    prefetch_image(broken)
    with pytest.raises(InputError) as ahead:
        read_image(broken)
    assert str(ahead.value) == str(direct.value)
    prefetch_input(parse_command(["spine-label", str(tmp_path), "--out", str(tmp_path / "out")]))  # a folder: read when asked
    prefetch_input(parse_command(["spine-label", "--help"]))  # prints nothing, reads nothing
    assert not _prefetched


# In a fresh interpreter: the lean import, then each task's command in the same process on small generated
# scans with the bundled models; the hidden back-ends must never have been imported by MONAI, yet stay
# importable for the project's own use (the PNG's matplotlib, the 2D engine's ignite).
_SCRIPT = r"""
import json, sys
from pathlib import Path
import SimpleITK as sitk
from spinebrain.startup import prepare_command, UNUSED_AT_INFERENCE
prepare_command(["spine-label"])  # the lean import, as python -m spinebrain does it (no input file to read ahead)
assert "monai.networks.nets" in sys.modules
loaded_with_monai = sorted(n for n in UNUSED_AT_INFERENCE if n in sys.modules)
from spinebrain.cli import main
from spinebrain.synth.brain import generate_brain
from spinebrain.synth.spine import generate_spine
out = Path(sys.argv[1])
ct = generate_spine(5, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0)).image
mr = generate_spine(6, modality="t2", view="lumbar", spacing=(1.0, 1.0, 1.0)).image
brain = generate_brain(3, ("t1", "flair"), spacing=3.0)
sitk.WriteImage(ct, str(out / "ct.nii.gz"))
sitk.WriteImage(mr[:, :, mr.GetSize()[2] // 2 - 8: mr.GetSize()[2] // 2 + 8], str(out / "mr.nii.gz"))
sitk.WriteImage(brain.images["t1"], str(out / "t1.nii.gz"))
sitk.WriteImage(brain.images["flair"], str(out / "flair.nii.gz"))
sitk.WriteImage(brain.brain_mask, str(out / "mask.nii.gz"))
codes = {
    "spine-label": main(["--quiet", "spine-label", str(out / "ct.nii.gz"), "--region", "lumbar", "--out",
                         str(out / "ct.mrk.json"), "--png"]),
    "spine-segment": main(["--quiet", "spine-segment", str(out / "mr.nii.gz"), "--mode", "2d", "--out",
                           str(out / "mr.seg.nrrd")]),
    "brain-seg": main(["--quiet", "brain-seg", "--t1", str(out / "t1.nii.gz"), "--flair", str(out / "flair.nii.gz"),
                       "--mask", str(out / "mask.nii.gz"), "--task", "tissue", "--out", str(out / "brain")]),
}
import matplotlib.pyplot, ignite.engine  # importable again after MONAI
print(json.dumps({"loaded_with_monai": loaded_with_monai, "codes": codes}))
"""


@pytest.mark.slow
def test_every_inference_command_runs_after_the_lean_monai_import(tmp_path):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded_with_monai"] == []
    assert report["codes"] == {"spine-label": 0, "spine-segment": 0, "brain-seg": 0}
    assert (tmp_path / "ct.png").stat().st_size > 0 and (tmp_path / "mr.seg.nrrd").exists()
    assert any(p.name.endswith(".seg.nrrd") for p in (tmp_path / "brain").iterdir())
    assert UNUSED_AT_INFERENCE  # (the list the script checked)


def test_a_real_command_line_run_reads_ahead_exits_quickly_and_loses_no_output(tmp_path):
    """python -m spinebrain spine-label: the scan read ahead, MONAI lean, the exit without teardown; every event
    reaches stdout (the last is done, code 0) and the points are written."""
    import SimpleITK as sitk

    from spinebrain.synth.spine import generate_spine

    scan = tmp_path / "ct.nii.gz"
    sitk.WriteImage(generate_spine(5, modality="ct", view="lumbar", spacing=(1.5, 1.5, 2.0)).image, str(scan))
    out = tmp_path / "ct.mrk.json"
    done = subprocess.run([sys.executable, "-m", "spinebrain", "--progress-json", "spine-label", str(scan), "--region",
                           "lumbar", "--device", "cpu", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert events[-1] == {"event": "done", "code": 0}
    assert any(e["event"] == "result" and e["path"] == str(out) for e in events)
    points = json.loads(out.read_text())["markups"][0]["controlPoints"]
    assert [p["label"] for p in points][-2:] == ["L5", "S1"]
