"""The inference commands' lean MONAI import (spinebrain.startup): what it hides, and that every command still runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spinebrain.startup import INFERENCE_COMMANDS, UNUSED_AT_INFERENCE, command_of

REPO = Path(__file__).resolve().parents[1]


def test_the_command_is_the_first_word_that_is_not_an_option():
    assert command_of(["--quiet", "spine-label", "scan.nii.gz"]) == "spine-label"
    assert command_of(["train", "spine-label", "--data", "x"]) == "train"
    assert command_of(["--version"]) is None
    assert {"spine-label", "spine-segment", "brain-seg", "demo"} <= INFERENCE_COMMANDS
    assert not {"train", "evaluate"} & INFERENCE_COMMANDS  # they train or score with MONAI's whole toolbox


# In a fresh interpreter: the lean import, then each task's command in the same process on small generated
# scans with the bundled models; the hidden back-ends must never have been imported by MONAI, yet stay
# importable for the project's own use (the PNG's matplotlib, the 2D engine's ignite).
_SCRIPT = r"""
import json, sys
from pathlib import Path
import SimpleITK as sitk
from spinebrain.startup import import_monai_for_inference, UNUSED_AT_INFERENCE
import_monai_for_inference()
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
